package sensor

import "fmt"

// MinHealth is a heartbeat policy's minimum: none, yellow or green.
type MinHealth uint8

// Policy minimums.
const (
	MinNone MinHealth = iota
	MinYellow
	MinGreen
)

// ParseMinHealth parses "none", "yellow" or "green" ("" means none).
func ParseMinHealth(s string) (MinHealth, error) {
	switch s {
	case "", "none":
		return MinNone, nil
	case "yellow":
		return MinYellow, nil
	case "green":
		return MinGreen, nil
	}
	return 0, fmt.Errorf("minimum health %q: want none, yellow or green", s)
}

// String returns the minimum's name.
func (m MinHealth) String() string {
	switch m {
	case MinYellow:
		return "yellow"
	case MinGreen:
		return "green"
	}
	return "none"
}

// rank is the Status.Rank a status must reach to satisfy the minimum.
func (m MinHealth) rank() int {
	switch m {
	case MinYellow:
		return 2
	case MinGreen:
		return 3
	}
	return 0
}

// MarshalText implements encoding.TextMarshaler.
func (m MinHealth) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MinHealth) UnmarshalText(b []byte) error {
	v, err := ParseMinHealth(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}
