package schema

import (
	"fmt"
	"net/netip"
	"time"
)

// Interface is one network interface an endpoint declares.
type Interface struct {
	Name string       `json:"name"`
	MAC  MAC          `json:"mac"`
	IPs  []netip.Addr `json:"ips,omitempty"`
}

// Hello is what an endpoint declares when it connects, and again whenever
// its interfaces or users change.
type Hello struct {
	EndpointID string      `json:"endpoint_id"` // certificate CN: stable identity
	Name       string      `json:"name"`        // host name from the certificate
	Org        string      `json:"org"`         // organisation from the certificate
	Health     Health      `json:"health"`
	Reasons    []string    `json:"reasons,omitempty"`
	Interfaces []Interface `json:"interfaces,omitempty"`
	Users      []string    `json:"users,omitempty"`
	// Remote is the address the LAN-zone connection came from, if known.
	Remote netip.AddrPort `json:"remote,omitzero"`
	// Instance identifies the agent process, if it says: a new one after a
	// dropped connection means the agent was restarted.
	Instance string `json:"instance,omitempty"`
}

// Heartbeat is an endpoint's periodic proof of life.
type Heartbeat struct {
	EndpointID string   `json:"endpoint_id"`
	Health     Health   `json:"health"`
	Reasons    []string `json:"reasons,omitempty"`
}

// TrafficSummary is what capture saw one MAC send during a reporting period.
type TrafficSummary struct {
	MAC       MAC
	IPs       []netip.Addr // source addresses this MAC used, if any
	Packets   uint64
	Bytes     uint64 // wire length
	FirstSeen time.Time
	LastSeen  time.Time
}

// Flow is the start of a conversation seen on the mirror port: a TCP SYN, or
// the first UDP datagram of a 5-tuple after an idle period.
type Flow struct {
	SrcMAC  MAC
	DstMAC  MAC
	SrcIP   netip.Addr
	DstIP   netip.Addr
	Proto   uint8 // IP protocol number: 6 TCP, 17 UDP
	DstPort uint16
	Time    time.Time
}

// CaptureHealth is one capture interface's report for a period.
type CaptureHealth struct {
	Interface string
	Up        bool   // the link is up and the socket reads
	Packets   uint64 // frames the kernel handled in the period, drops included
	Drops     uint64 // frames the kernel dropped in the period
	// QueueFreezes counts the times the ring filled up in the period.
	QueueFreezes uint64
	Reason       string // why the interface is down, when it is
	Time         time.Time
}

// Binding is evidence that a MAC used an IP address at a time: from ARP
// (including gratuitous), DHCP, IPv6 neighbour discovery, an endpoint's hello
// or observed traffic. History keeps bindings with validity intervals so the
// forensic CLI can say who had an address when.
type Binding struct {
	MAC      MAC        `json:"mac"`
	IP       netip.Addr `json:"ip"`
	Hostname string     `json:"hostname,omitempty"`  // DHCP option 12, when seen
	ClientID string     `json:"client_id,omitempty"` // DHCP option 61 (hex), when seen
	Source   string     `json:"source"`              // "arp", "dhcp", "ndp", "hello", "traffic"
	Time     time.Time  `json:"time"`
}

// DisconnectCause says how an endpoint's LAN-zone connection ended.
type DisconnectCause uint8

// How connections end. The first three are the agent's own doing; a drop
// (EOF without close_notify, reset, TLS error) is what a killed or crashed
// agent leaves behind, since its kernel closes the socket without the TLS
// close_notify a stopping agent sends.
const (
	CauseGoodbye        DisconnectCause = iota + 1 // the agent said goodbye, then closed
	CauseCloseNotify                               // TLS close_notify without a goodbye (an older agent stopping)
	CauseAgentError                                // the agent sent an error message and closed
	CauseEOF                                       // TCP closed without TLS close_notify
	CauseReset                                     // TCP reset
	CauseTLSError                                  // a TLS record or alert error
	CauseIdleTimeout                               // no message for 3 intervals, or the agent stopped reading
	CauseProtocol                                  // the sensor closed it for a protocol violation
	CauseSensorShutdown                            // the sensor is stopping
	CauseRevoked                                   // the endpoint's certificate was revoked
	CauseReplaced                                  // a newer connection of the same endpoint took over
)

var causeNames = [...]string{
	CauseGoodbye:        "goodbye",
	CauseCloseNotify:    "close_notify",
	CauseAgentError:     "agent_error",
	CauseEOF:            "eof",
	CauseReset:          "reset",
	CauseTLSError:       "tls_error",
	CauseIdleTimeout:    "idle_timeout",
	CauseProtocol:       "protocol_error",
	CauseSensorShutdown: "sensor_shutdown",
	CauseRevoked:        "revoked",
	CauseReplaced:       "replaced",
}

var causeTexts = [...]string{
	CauseGoodbye:        "goodbye",
	CauseCloseNotify:    "TLS close_notify without goodbye",
	CauseAgentError:     "the agent reported an error",
	CauseEOF:            "EOF without close_notify",
	CauseReset:          "connection reset",
	CauseTLSError:       "TLS error",
	CauseIdleTimeout:    "idle timeout",
	CauseProtocol:       "protocol violation",
	CauseSensorShutdown: "sensor shutdown",
	CauseRevoked:        "certificate revoked",
	CauseReplaced:       "replaced by a newer connection",
}

// String returns the cause's stable name ("eof").
func (c DisconnectCause) String() string {
	if int(c) < len(causeNames) && causeNames[c] != "" {
		return causeNames[c]
	}
	return fmt.Sprintf("cause(%d)", uint8(c))
}

// Text says in words how the connection ended ("EOF without close_notify").
func (c DisconnectCause) Text() string {
	if int(c) < len(causeTexts) && causeTexts[c] != "" {
		return causeTexts[c]
	}
	return c.String()
}

// Dropped reports whether the connection ended the way a killed or crashed
// agent's does: without goodbye and without close_notify.
func (c DisconnectCause) Dropped() bool {
	return c == CauseEOF || c == CauseReset || c == CauseTLSError
}

// MarshalText implements encoding.TextMarshaler.
func (c DisconnectCause) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// GoodbyeReason is why an agent said it stops: "stop", "upgrade",
// "shutdown". Reasons a newer agent may add are kept as sent.
type GoodbyeReason string

// Goodbye reasons the reference agent sends.
const (
	GoodbyeStop     GoodbyeReason = "stop"     // the service was stopped or restarted
	GoodbyeUpgrade  GoodbyeReason = "upgrade"  // a new version replaces the agent
	GoodbyeShutdown GoodbyeReason = "shutdown" // the endpoint is shutting down or rebooting
)

// Disconnect is the end of an endpoint's authenticated LAN-zone connection.
type Disconnect struct {
	EndpointID string
	Cause      DisconnectCause
	// Goodbye is the agent's reason, with CauseGoodbye.
	Goodbye GoodbyeReason
	// Message is the goodbye's or the agent error's text, if any.
	Message string
}
