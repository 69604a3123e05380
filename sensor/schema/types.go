package schema

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// EventType names what happened. The alert types are part of the external
// schema: syslog CEF signature ids and SIEM rules key on them.
type EventType string

// Event types. Alerts first, then informational records kept for history.
// Every type has its row in the table below.
const (
	EventStatusChanged     EventType = "status_changed"
	EventHeartbeatMissing  EventType = "heartbeat_missing"
	EventHeartbeatRestored EventType = "heartbeat_restored"
	EventNoHeartbeat       EventType = "no_heartbeat"
	EventMACConflict       EventType = "mac_conflict"
	EventPolicyViolation   EventType = "policy_violation"
	EventLateralMovement   EventType = "lateral_movement"
	EventCaptureDegraded   EventType = "capture_degraded"
	EventCaptureRestored   EventType = "capture_restored"
	EventAuthFailed        EventType = "auth_failed"
	EventAlertsLost        EventType = "alerts_lost"
	EventStorageLow        EventType = "storage_low"
	EventClockStepped      EventType = "clock_stepped"
	EventDuplicateIdentity EventType = "duplicate_identity"
	EventLimitExceeded     EventType = "limit_exceeded"
	EventDescriptorsLow    EventType = "descriptors_exhausted"
	EventSensorStalled     EventType = "sensor_stalled"
	EventFleetDegraded     EventType = "fleet_degraded"
	EventFleetRestored     EventType = "fleet_restored"

	EventEndpointHello        EventType = "endpoint_hello"
	EventEndpointDisconnected EventType = "endpoint_disconnected"
	EventEndpointRemoved      EventType = "endpoint_removed"
	EventAgentStopped         EventType = "agent_stopped"
	EventAgentRestarted       EventType = "agent_restarted"

	EventNewStation    EventType = "new_station"
	EventIPMACChanged  EventType = "ip_mac_changed"
	EventOperatorAudit EventType = "operator_change"
)

// TypeInfo is everything the rest of tapbeat knows about an event type:
// the syslog and CEF formatters, destination filters, history and the CLI
// read it from Types rather than keeping their own lists.
type TypeInfo struct {
	Type EventType
	// Severity is the type's usual severity. A rule may choose another for
	// one event (a status change to red is an error, to offline info).
	Severity Severity
	// Alert: a problem or the end of one, meant for people and sent to
	// alert destinations. Other types are kept for history only.
	Alert bool
	// SignatureID is the CEF signature id. It is part of the external
	// schema: never reused or renumbered.
	SignatureID string
	// Name is the CEF name and the title people see ("Heartbeat missing").
	Name string
	// Text says in one sentence what the event means.
	Text string
	// NewDetails returns a new, empty details record of the type's own Go
	// type; nil for a type that carries no details.
	NewDetails func() Details
	// Owner says which sensor of a fleet raises events of the type.
	Owner Owner
}

// Owner says which sensor of a fleet raises an event type, so each fact is
// alerted once fleet-wide (see sensor/fleet).
type Owner uint8

const (
	// OwnedByHolder: the sensor holding the endpoint's LAN-zone connection
	// raises it (hello, health, disconnects); for an event about the sensor
	// itself, that sensor.
	OwnedByHolder Owner = iota
	// OwnedByObserver: a sensor that sees the traffic raises it, judged
	// against the fleet's heartbeat state. When several sensors see the
	// same traffic, the first to claim the verdict in the fleet raises it.
	OwnedByObserver
)

func details[T any, P interface {
	*T
	Details
}]() func() Details {
	return func() Details { return P(new(T)) }
}

// types is the one table of event types. Adding a type: its constant
// above, its row here (a new signature id), its details type in details.go
// if it has one, and the rule that raises it. TestTypesComplete checks the
// rows.
var types = []TypeInfo{
	{EventStatusChanged, SeverityInfo, true, "1001", "Endpoint status changed",
		"an endpoint's status changed: its reported health, or offline or unknown once heartbeats stop", nil, OwnedByHolder},
	{EventHeartbeatMissing, SeverityError, true, "1002", "Heartbeat missing",
		"an endpoint's heartbeats stopped while its MACs keep sending", details[HeartbeatMissingDetails](), OwnedByObserver},
	{EventHeartbeatRestored, SeverityNotice, true, "1003", "Heartbeat restored",
		"a missing endpoint heartbeats again", details[HeartbeatRestoredDetails](), OwnedByObserver},
	{EventNoHeartbeat, SeverityWarning, true, "1004", "Station without heartbeat",
		"a station sends traffic and belongs to no enrolled endpoint", details[NoHeartbeatDetails](), OwnedByObserver},
	{EventMACConflict, SeverityWarning, true, "1005", "MAC address conflict",
		"two endpoints declared the same MAC", details[MACConflictDetails](), OwnedByObserver},
	{EventPolicyViolation, SeverityWarning, true, "1006", "Heartbeat policy violation",
		"a flow started that a heartbeat policy forbids", details[FlowDetails](), OwnedByObserver},
	{EventLateralMovement, SeverityCritical, true, "1007", "Lateral movement",
		"a flow to or from a red or missing endpoint", details[FlowDetails](), OwnedByObserver},
	{EventCaptureDegraded, SeverityError, true, "1008", "Capture degraded",
		"the capture is down, dropping or quiet: missing verdicts are withheld", details[CaptureDegradedDetails](), OwnedByHolder},
	{EventCaptureRestored, SeverityNotice, true, "1009", "Capture restored",
		"the capture is healthy again", nil, OwnedByHolder},
	{EventAuthFailed, SeverityWarning, true, "1010", "LAN zone authentication failed",
		"the LAN zone refused a peer", details[AuthFailedDetails](), OwnedByHolder},
	{EventAlertsLost, SeverityError, true, "1011", "Alerts lost",
		"an alert destination dropped undelivered alerts", details[AlertsLostDetails](), OwnedByHolder},
	{EventStorageLow, SeverityWarning, true, "1012", "Storage low",
		"history dropped old days, or events, to keep disk free", details[StorageLowDetails](), OwnedByHolder},
	{EventClockStepped, SeverityWarning, true, "1013", "Sensor clock stepped",
		"the sensor's wall clock jumped", details[ClockSteppedDetails](), OwnedByHolder},
	{EventDuplicateIdentity, SeverityError, true, "1014", "Endpoint identity used twice",
		"one endpoint certificate was used from two places at once", details[DuplicateIdentityDetails](), OwnedByHolder},
	{EventLimitExceeded, SeverityWarning, true, "1015", "Endpoint limit exceeded",
		"an enrolled endpoint went past a per-endpoint budget (hellos)", details[LimitExceededDetails](), OwnedByHolder},
	{EventDescriptorsLow, SeverityError, true, "1016", "File descriptors exhausted",
		"the sensor ran out of, or refused to hand out more, file descriptors", details[DescriptorsExhaustedDetails](), OwnedByHolder},
	{EventSensorStalled, SeverityNotice, true, "1017", "Sensor stalled",
		"the sensor itself did not run for a while: no endpoint is judged on that silence", details[SensorStalledDetails](), OwnedByHolder},
	{EventFleetDegraded, SeverityError, true, "1030", "Sensor fleet degraded",
		"the sensor lost the fleet's shared state: verdicts on MACs it cannot vouch for are withheld", details[FleetDetails](), OwnedByHolder},
	{EventFleetRestored, SeverityNotice, true, "1031", "Sensor fleet restored",
		"the sensor has the fleet's shared state again", details[FleetDetails](), OwnedByHolder},
	{EventEndpointHello, SeverityInfo, false, "1101", "Endpoint hello",
		"an endpoint (re)declared its interfaces and users", details[HelloDetails](), OwnedByHolder},
	{EventEndpointDisconnected, SeverityInfo, false, "1102", "Endpoint disconnected",
		"an endpoint's LAN-zone connection closed, and how", details[EndpointDisconnectedDetails](), OwnedByHolder},
	{EventEndpointRemoved, SeverityNotice, true, "1103", "Endpoint removed",
		"an endpoint's certificate was revoked", nil, OwnedByHolder},
	{EventAgentStopped, SeverityInfo, false, "1104", "Agent stopped",
		"an endpoint's agent said goodbye: stopped on purpose", details[AgentStoppedDetails](), OwnedByHolder},
	{EventAgentRestarted, SeverityInfo, false, "1105", "Agent restarted",
		"a new agent process came back after a dropped connection", details[AgentRestartedDetails](), OwnedByHolder},
	{EventNewStation, SeverityNotice, true, "1050", "New station",
		"a MAC was seen for the first time after the learning period", details[NewStationDetails](), OwnedByObserver},
	{EventIPMACChanged, SeverityWarning, true, "1051", "IP address moved to another MAC",
		"an IP address claimed by one MAC is now claimed by another (flip flop; a spoofing hint)", details[IPMACChangedDetails](), OwnedByObserver},
	{EventOperatorAudit, SeverityNotice, true, "1150", "Operator change",
		"an operator changed something through the console or its API: who, what, from where", details[OperatorDetails](), OwnedByHolder},
}

var typeIndex = func() map[EventType]int {
	m := make(map[EventType]int, len(types))
	for i, t := range types {
		m[t.Type] = i
	}
	return m
}()

// Types returns the table of event types, alerts first.
func Types() []TypeInfo { return slices.Clone(types) }

// Info returns the type's row of the table, false for a type this build
// does not know.
func (t EventType) Info() (TypeInfo, bool) {
	i, ok := typeIndex[t]
	if !ok {
		return TypeInfo{}, false
	}
	return types[i], true
}

// TypeNames returns the name of every event type, in table order.
func TypeNames() []string {
	out := make([]string, len(types))
	for i, t := range types {
		out[i] = string(t.Type)
	}
	return out
}

// ParseEventType checks a type name against the table.
func ParseEventType(s string) (EventType, error) {
	t := EventType(s)
	if _, ok := t.Info(); !ok {
		return "", fmt.Errorf("unknown event type %q: known types are %s", s, strings.Join(TypeNames(), ", "))
	}
	return t, nil
}

// DecodeDetails decodes an event's details from JSON into the type's own
// details record. Details of a type this build does not know, or of a type
// that has none, are kept as RawDetails so they survive a round trip.
func DecodeDetails(t EventType, raw []byte) (Details, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	info, ok := t.Info()
	if !ok || info.NewDetails == nil {
		return RawDetails(slices.Clone(raw)), nil
	}
	d := info.NewDetails()
	if err := json.Unmarshal(raw, d); err != nil {
		return nil, fmt.Errorf("details: %w", err)
	}
	return d, nil
}
