package schema

import "fmt"

// Health is what an endpoint reports about itself.
type Health uint8

// Reported health levels. The zero value is not a valid report.
const (
	HealthGreen Health = iota + 1
	HealthYellow
	HealthRed
)

// ParseHealth parses "green", "yellow" or "red".
func ParseHealth(s string) (Health, error) {
	switch s {
	case "green":
		return HealthGreen, nil
	case "yellow":
		return HealthYellow, nil
	case "red":
		return HealthRed, nil
	}
	return 0, fmt.Errorf("health %q: want green, yellow or red", s)
}

// String returns the health's name.
func (h Health) String() string {
	switch h {
	case HealthGreen:
		return "green"
	case HealthYellow:
		return "yellow"
	case HealthRed:
		return "red"
	}
	return fmt.Sprintf("health(%d)", uint8(h))
}

// Valid reports whether h is green, yellow or red.
func (h Health) Valid() bool { return h >= HealthGreen && h <= HealthRed }

// MarshalText implements encoding.TextMarshaler. The zero value (no
// report yet) is written as "".
func (h Health) MarshalText() ([]byte, error) {
	if h == 0 {
		return []byte{}, nil
	}
	if !h.Valid() {
		return nil, fmt.Errorf("marshal health: invalid value %d", uint8(h))
	}
	return []byte(h.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler; "" is the zero value.
func (h *Health) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*h = 0
		return nil
	}
	v, err := ParseHealth(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Status is the sensor's verdict on an endpoint or a station: its reported
// health while it heartbeats, or what the sensor concluded when it stopped.
type Status string

// Statuses an endpoint or station can be in.
const (
	StatusGreen  Status = "green"  // heartbeating, reports green
	StatusYellow Status = "yellow" // heartbeating, reports yellow
	StatusRed    Status = "red"    // heartbeating, reports red
	// StatusMissing: heartbeats stopped while the endpoint's MACs keep sending.
	StatusMissing Status = "missing"
	// StatusOffline: heartbeats stopped and the endpoint is silent. Not an alarm.
	StatusOffline Status = "offline"
	// StatusUnknown: heartbeats stopped while the capture was blind, so the
	// sensor cannot tell missing from offline.
	StatusUnknown Status = "unknown"
	// StatusStopped: the agent said goodbye (stopped on purpose) and has not
	// come back. Not an alarm by itself; the missing rule still applies.
	StatusStopped Status = "stopped"
	// StatusNoHeartbeat: a station that sends traffic and belongs to no
	// enrolled endpoint.
	StatusNoHeartbeat Status = "no_heartbeat"
)

// StatusOf is the status of an endpoint that heartbeats and reports h.
func StatusOf(h Health) Status {
	switch h {
	case HealthGreen:
		return StatusGreen
	case HealthYellow:
		return StatusYellow
	case HealthRed:
		return StatusRed
	}
	return StatusUnknown
}

// Rank orders statuses for heartbeat policies: green 3 > yellow 2 > red 1 >
// missing = no heartbeat 0. Offline and unknown endpoints rank with missing:
// nothing vouches for them.
func (s Status) Rank() int {
	switch s {
	case StatusGreen:
		return 3
	case StatusYellow:
		return 2
	case StatusRed:
		return 1
	}
	return 0
}

// Health is the health an endpoint reports to be in status s, or 0 for the
// statuses the sensor concluded on its own (missing, offline, unknown, no
// heartbeat): the inverse of StatusOf.
func (s Status) Health() Health {
	switch s {
	case StatusGreen:
		return HealthGreen
	case StatusYellow:
		return HealthYellow
	case StatusRed:
		return HealthRed
	}
	return 0
}
