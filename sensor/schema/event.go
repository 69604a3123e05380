package schema

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// Severity follows RFC 5424's severity levels; lower numbers are more severe.
type Severity uint8

// Severities, numbered as in RFC 5424.
const (
	SeverityEmergency Severity = iota
	SeverityAlert
	SeverityCritical
	SeverityError
	SeverityWarning
	SeverityNotice
	SeverityInfo
	SeverityDebug
)

var severityNames = [...]string{"emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"}

// String returns the severity's RFC 5424 keyword in full ("warning").
func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// ParseSeverity parses a severity name as String writes it.
func ParseSeverity(name string) (Severity, error) {
	for i, n := range severityNames {
		if n == name {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("severity %q: want one of emergency, alert, critical, error, warning, notice, info, debug", name)
}

// AtLeast reports whether s is as severe as min or more.
func (s Severity) AtLeast(min Severity) bool { return s <= min }

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Event is tapbeat's one event schema. Its JSON form is used everywhere:
// history, syslog bodies, the local API and the CLI's --format json.
//
// Seq is assigned by the correlator and strictly increases over the life of a
// sensor's history, so consumers can drop duplicates of an at-least-once
// delivery. Time is written in RFC 3339 with nanoseconds when present.
type Event struct {
	Seq            uint64       `json:"seq"`
	Time           time.Time    `json:"time"`
	Type           EventType    `json:"type"`
	Severity       Severity     `json:"severity"`
	EndpointID     string       `json:"endpoint_id,omitempty"`
	EndpointName   string       `json:"endpoint_name,omitempty"`
	Org            string       `json:"org,omitempty"`
	MACs           []MAC        `json:"macs,omitempty"`
	IPs            []netip.Addr `json:"ips,omitempty"`
	Status         Status       `json:"status,omitempty"`
	PreviousStatus Status       `json:"previous_status,omitempty"`
	Reason         string       `json:"reason,omitempty"`
	// Details is the type's own record (Types names its Go type), nil for
	// a type that has none.
	Details Details `json:"details,omitempty"`
	// Transition is set by the correlator on an endpoint event that changed
	// the endpoint's status. It is not part of the JSON form; history keeps
	// it with the event.
	Transition bool `json:"-"`
}

// UnmarshalJSON decodes an event and its details into the details type the
// table gives for its event type (RawDetails for a type this build does not
// know).
func (e *Event) UnmarshalJSON(b []byte) error {
	type plain Event
	w := struct {
		*plain
		Details json.RawMessage `json:"details,omitempty"`
	}{plain: (*plain)(e)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	d, err := DecodeDetails(e.Type, w.Details)
	if err != nil {
		return fmt.Errorf("event %d (%s): %w", e.Seq, e.Type, err)
	}
	e.Details = d
	return nil
}

// IsAlert reports whether the event is meant for people rather than only for
// the history: its type is an alert type (see Types) and this one is of
// severity notice or more severe (a problem, or the end of one; an endpoint
// going offline is a status change of severity info).
func (e *Event) IsAlert() bool {
	if t, ok := e.Type.Info(); ok && !t.Alert {
		return false
	}
	return e.Severity.AtLeast(SeverityNotice)
}
