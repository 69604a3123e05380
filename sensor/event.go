package sensor

import (
	"fmt"
	"time"
)

// EventType names what happened. The alert types are part of the external
// schema: syslog CEF signature ids and SIEM rules key on them.
type EventType string

// Event types. Alerts first, then informational records kept for history.
const (
	EventStatusChanged     EventType = "status_changed"     // an endpoint's status changed
	EventHeartbeatMissing  EventType = "heartbeat_missing"  // heartbeats stopped while its MACs send
	EventHeartbeatRestored EventType = "heartbeat_restored" // a missing endpoint heartbeats again
	EventNoHeartbeat       EventType = "no_heartbeat"       // a station sends and is not enrolled
	EventMACConflict       EventType = "mac_conflict"       // two endpoints declared one MAC
	EventPolicyViolation   EventType = "policy_violation"   // a flow the firewall would have blocked
	EventLateralMovement   EventType = "lateral_movement"   // a flow to or from a red or missing endpoint
	EventCaptureDegraded   EventType = "capture_degraded"   // capture down, dropping or quiet
	EventCaptureRestored   EventType = "capture_restored"   // capture healthy again
	EventAuthFailed        EventType = "auth_failed"        // a refused LAN-zone peer
	EventAlertsLost        EventType = "alerts_lost"        // an alert destination dropped undelivered alerts
	EventStorageLow        EventType = "storage_low"        // history dropped old days to keep disk free
	EventClockStepped      EventType = "clock_stepped"      // the sensor's wall clock jumped
	// EventDuplicateIdentity: one endpoint certificate used from two places at once.
	EventDuplicateIdentity EventType = "duplicate_identity"
	// EventLimitExceeded: an enrolled endpoint went past a per-endpoint budget (hellos).
	EventLimitExceeded EventType = "limit_exceeded"
	// EventDescriptorsLow: the sensor ran out of (or refused to hand out more) file descriptors.
	EventDescriptorsLow EventType = "descriptors_exhausted"
	EventSensorStalled  EventType = "sensor_stalled" // the sensor itself did not run for a while

	EventEndpointHello        EventType = "endpoint_hello"        // an endpoint (re)declared itself
	EventEndpointDisconnected EventType = "endpoint_disconnected" // its LAN-zone connection closed
	EventEndpointRemoved      EventType = "endpoint_removed"      // its certificate was revoked
	EventAgentStopped         EventType = "agent_stopped"         // its agent said goodbye: stopped on purpose
	EventAgentRestarted       EventType = "agent_restarted"       // a new agent process came back after a dropped connection
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
	Seq            uint64         `json:"seq"`
	Time           time.Time      `json:"time"`
	Type           EventType      `json:"type"`
	Severity       Severity       `json:"severity"`
	EndpointID     string         `json:"endpoint_id,omitempty"`
	EndpointName   string         `json:"endpoint_name,omitempty"`
	Org            string         `json:"org,omitempty"`
	MACs           []string       `json:"macs,omitempty"`
	IPs            []string       `json:"ips,omitempty"`
	Status         Status         `json:"status,omitempty"`
	PreviousStatus Status         `json:"previous_status,omitempty"`
	Reason         string         `json:"reason,omitempty"`
	Details        map[string]any `json:"details,omitempty"`
}

// IsAlert reports whether the event is meant for people (severity notice or
// more severe: a problem, or the end of one) rather than only for the
// history (info: hellos, disconnects, endpoints going offline).
func (e *Event) IsAlert() bool { return e.Severity.AtLeast(SeverityNotice) }
