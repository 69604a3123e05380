package schema

import (
	"encoding/json"
	"net/netip"
	"time"
)

// Details is an event's own record, one Go type per event type (the table
// in types.go says which). Its JSON is the event's "details" object: field
// names are part of the external schema, like the type names.
type Details interface {
	isDetails()
}

// HeartbeatMissingDetails: heartbeat_missing.
type HeartbeatMissingDetails struct {
	// AgentConnectionSeen: one of the endpoint's MACs carried a connection
	// to the LAN zone during the last interval (agent present but silent).
	AgentConnectionSeen bool `json:"agent_connection_seen,omitempty"`
	// Disconnect is how the agent's connection ended when it dropped
	// without goodbye (Left "dropped").
	Disconnect string `json:"disconnect,omitempty"`
	// Escalation counts the alerts of this silence: 1 for the verdict, then
	// one more per step of the re-alert ladder.
	Escalation int `json:"escalation"`
	// Goodbye is the reason the agent gave when it said goodbye (Left
	// "goodbye").
	Goodbye string `json:"goodbye,omitempty"`
	// Left: how the agent left, "goodbye" or "dropped", when it did.
	Left                  string  `json:"left,omitempty"`
	ReconnectGraceSeconds float64 `json:"reconnect_grace_seconds,omitempty"`
	SilentForSeconds      float64 `json:"silent_for_seconds"`
	SinceDropSeconds      float64 `json:"since_drop_seconds,omitempty"`
	// SuspiciousGoodbye: the agent said goodbye for a shutdown, yet the
	// host kept sending.
	SuspiciousGoodbye bool `json:"suspicious_goodbye,omitempty"`
}

// HeartbeatRestoredDetails: heartbeat_restored.
type HeartbeatRestoredDetails struct {
	Health            Health  `json:"health"`
	MissingForSeconds float64 `json:"missing_for_seconds"`
	SilentForSeconds  float64 `json:"silent_for_seconds"`
}

// NoHeartbeatDetails: no_heartbeat, the station's traffic until the verdict.
type NoHeartbeatDetails struct {
	Bytes     uint64    `json:"bytes"`
	FirstSeen time.Time `json:"first_seen"`
	Packets   uint64    `json:"packets"`
}

// MACConflictDetails: mac_conflict. The event names the endpoint that now
// declares the MAC; these fields the one that declared it before.
type MACConflictDetails struct {
	// Contested lists what the endpoint declared and another holds (kept
	// with HeldBy); Moved what moved to it because the wire showed its
	// heartbeat connection coming from there.
	Contested         []string   `json:"contested,omitempty"`
	HeldBy            []string   `json:"held_by,omitempty"`
	MAC               MAC        `json:"mac,omitzero"`
	Moved             []string   `json:"moved,omitempty"`
	OtherEndpointID   string     `json:"other_endpoint_id,omitempty"`
	OtherEndpointName string     `json:"other_endpoint_name,omitempty"`
	Remote            netip.Addr `json:"remote,omitzero"`
	WireMAC           MAC        `json:"wire_mac,omitzero"`
}

// FlowDetails: policy_violation (Policy set) and lateral_movement (Peer,
// PeerStatus and Direction set), the flow and what the sensor knew of its
// two ends when it started.
type FlowDetails struct {
	DestinationStatus Status     `json:"destination_status,omitempty"`
	Direction         string     `json:"direction,omitempty"` // "outbound" or "inbound", seen from the endpoint at risk
	DstIP             netip.Addr `json:"dst_ip,omitzero"`
	DstMAC            MAC        `json:"dst_mac"`
	DstPort           uint16     `json:"dst_port,omitempty"`
	Peer              string     `json:"peer,omitempty"`
	PeerStatus        Status     `json:"peer_status,omitempty"`
	Policy            string     `json:"policy,omitempty"`
	Proto             string     `json:"proto"` // "tcp", "udp", "icmp", "icmpv6" or "ip-proto-N"
	SourceStatus      Status     `json:"source_status"`
	SrcIP             netip.Addr `json:"src_ip,omitzero"`
	SrcMAC            MAC        `json:"src_mac"`
}

// CaptureDegradedDetails: capture_degraded.
type CaptureDegradedDetails struct {
	Blind bool `json:"blind"` // missing verdicts are withheld
}

// AuthFailedDetails: auth_failed.
type AuthFailedDetails struct {
	CertificateID   string `json:"certificate_id,omitempty"`
	CertificateName string `json:"certificate_name,omitempty"`
	Listener        string `json:"listener,omitempty"` // "lanzone" (when empty), "local" or "admin"
	Peer            string `json:"peer"`               // the peer's address, as its listener reports it
	Reason          string `json:"reason"`
	// Refusals of the same peer for the same reason, and of any peer,
	// held back by the rate limit since the last one reported.
	SuppressedSamePeer int `json:"suppressed_same_peer,omitempty"`
	SuppressedTotal    int `json:"suppressed_total,omitempty"`
}

// AlertsLostDetails: alerts_lost.
type AlertsLostDetails struct {
	Destination string `json:"destination"`
	FirstSeq    uint64 `json:"first_seq"`
	LastSeq     uint64 `json:"last_seq"`
	Lost        uint64 `json:"lost"`
	LostTotal   uint64 `json:"lost_total"` // since the destination was configured
}

// StorageLowDetails: storage_low, for a day dropped early (DroppedDay), a
// disk with no day left to drop, or events lost before history stored them
// (LostEvents).
type StorageLowDetails struct {
	DroppedDay     string `json:"dropped_day,omitempty"` // YYYY-MM-DD
	FreeBytes      uint64 `json:"free_bytes,omitempty"`
	LostEvents     uint64 `json:"lost_events,omitempty"`
	ThresholdBytes uint64 `json:"threshold_bytes,omitempty"`
}

// ClockSteppedDetails: clock_stepped.
type ClockSteppedDetails struct {
	StepSeconds float64 `json:"step_seconds"`
}

// FleetDetails: fleet_degraded, fleet_restored.
type FleetDetails struct {
	Sensor string `json:"sensor"`
}

// HelloDetails: endpoint_hello, what the endpoint declared.
type HelloDetails struct {
	// Contested lists the MACs and IPs the endpoint declared that another
	// holds: kept with the holder and bound to nothing.
	Contested  []string       `json:"contested,omitempty"`
	Interfaces []Interface    `json:"interfaces"`
	Remote     netip.AddrPort `json:"remote,omitzero"`
	Users      []string       `json:"users,omitempty"`
}

// DuplicateIdentityDetails: duplicate_identity, the connection that keeps
// its place and the one refused.
type DuplicateIdentityDetails struct {
	ConnectedFrom netip.AddrPort `json:"connected_from"`
	RefusedFrom   netip.AddrPort `json:"refused_from"`
}

// LimitExceededDetails: limit_exceeded.
type LimitExceededDetails struct {
	Limit string         `json:"limit"` // which budget: "hello"
	Peer  netip.AddrPort `json:"peer"`
}

// DescriptorsExhaustedDetails: descriptors_exhausted.
type DescriptorsExhaustedDetails struct {
	Addr     string `json:"addr"`
	Listener string `json:"listener"` // "lanzone", "local" or "admin"
	MaxConns int    `json:"max_conns,omitempty"`
}

// EndpointDisconnectedDetails: endpoint_disconnected, how the connection ended.
type EndpointDisconnectedDetails struct {
	Disconnect string `json:"disconnect"`
	Goodbye    string `json:"goodbye,omitempty"`
	Message    string `json:"message,omitempty"`
}

// AgentStoppedDetails: agent_stopped.
type AgentStoppedDetails struct {
	Goodbye string `json:"goodbye"`
}

// AgentRestartedDetails: agent_restarted.
type AgentRestartedDetails struct {
	Disconnect     string  `json:"disconnect"`
	DownForSeconds float64 `json:"down_for_seconds"`
	Instance       string  `json:"instance,omitempty"`
}

// SensorStalledDetails: sensor_stalled.
type SensorStalledDetails struct {
	StalledSeconds float64 `json:"stalled_seconds"`
}

// NewStationDetails: new_station.
type NewStationDetails struct {
	MAC       MAC        `json:"mac"`
	Vendor    string     `json:"vendor,omitempty"`
	IP        netip.Addr `json:"ip,omitzero"`
	Hostname  string     `json:"hostname,omitempty"`
	FirstSeen time.Time  `json:"first_seen"`
}

// IPMACChangedDetails: ip_mac_changed, the IP and the MACs that claimed it
// before and now, with their vendors and endpoints (empty for a station
// without heartbeat).
type IPMACChangedDetails struct {
	IP              netip.Addr `json:"ip"`
	OldMAC          MAC        `json:"old_mac"`
	OldVendor       string     `json:"old_vendor,omitempty"`
	OldEndpointID   string     `json:"old_endpoint_id,omitempty"`
	OldEndpointName string     `json:"old_endpoint_name,omitempty"`
	OldLastSeen     time.Time  `json:"old_last_seen"`
	NewMAC          MAC        `json:"new_mac"`
	NewVendor       string     `json:"new_vendor,omitempty"`
	NewEndpointID   string     `json:"new_endpoint_id,omitempty"`
	NewEndpointName string     `json:"new_endpoint_name,omitempty"`
	Source          string     `json:"source"` // the new claim's evidence: arp, dhcp, ndp or hello
}

// OperatorDetails: operator_change, who changed what.
type OperatorDetails struct {
	Actor  string `json:"actor"`  // account, token or certificate name
	Via    string `json:"via"`    // "session", "token", "certificate" or "socket"
	Remote string `json:"remote"` // the client's address
	Action string `json:"action"` // "enroll", "revoke", "triage", ...
	Target string `json:"target"` // the endpoint name or MAC acted on
	Note   string `json:"note,omitempty"`
}

// RawDetails are details kept as JSON: those of a type this build does not
// know (history written by a newer build) or does not type.
type RawDetails json.RawMessage

// MarshalJSON returns the details as they were decoded.
func (r RawDetails) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

func (*HeartbeatMissingDetails) isDetails()     {}
func (*HeartbeatRestoredDetails) isDetails()    {}
func (*NoHeartbeatDetails) isDetails()          {}
func (*MACConflictDetails) isDetails()          {}
func (*FlowDetails) isDetails()                 {}
func (*CaptureDegradedDetails) isDetails()      {}
func (*AuthFailedDetails) isDetails()           {}
func (*AlertsLostDetails) isDetails()           {}
func (*StorageLowDetails) isDetails()           {}
func (*ClockSteppedDetails) isDetails()         {}
func (*EndpointDisconnectedDetails) isDetails() {}
func (*AgentStoppedDetails) isDetails()         {}
func (*AgentRestartedDetails) isDetails()       {}
func (*SensorStalledDetails) isDetails()        {}
func (*HelloDetails) isDetails()                {}
func (*DuplicateIdentityDetails) isDetails()    {}
func (*LimitExceededDetails) isDetails()        {}
func (*DescriptorsExhaustedDetails) isDetails() {}
func (*FleetDetails) isDetails()                {}
func (RawDetails) isDetails()                   {}
func (*NewStationDetails) isDetails()           {}
func (*IPMACChangedDetails) isDetails()         {}
func (*OperatorDetails) isDetails()             {}
