// Package wire owns the LAN-zone protocol between the agent and the sensor:
// frames (a length, a version and a type in front of a JSON payload), the
// messages they carry, and the limits both sides enforce. PROTOCOL.md at the
// repository root is the specification; this package is its reference
// implementation.
package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Protocol version spoken by this package. A peer with another major
// version gets an error message and a close; minor versions only add
// optional fields.
// DefaultPort is the LAN zone's TCP port: where agents heartbeat unless the
// sensor's configuration names another. Every other mention of the port in
// the code refers to this one.
const DefaultPort = 8347

const (
	Major = 1
	Minor = 1
)

// Limits.
const (
	HeaderLen     = 7        // length (4) + major (1) + minor (1) + type (1)
	MaxFrame      = 64 << 10 // a whole frame, header included
	MaxPayload    = MaxFrame - HeaderLen
	MaxInterfaces = 64  // interfaces in a hello
	MaxIPs        = 64  // addresses per interface
	MaxUsers      = 64  // users in a hello
	MaxReasons    = 64  // reasons in a hello or heartbeat
	MaxString     = 256 // bytes in any string
	MaxAddresses  = 16  // LAN-zone addresses in a config message
)

// Type is a message type.
type Type uint8

// Message types.
const (
	TypeHello     Type = 1 // agent -> sensor, first message, and again on change
	TypeHeartbeat Type = 2 // agent -> sensor, every interval
	TypeConfig    Type = 3 // sensor -> agent, after hello and on change
	TypeAtRisk    Type = 4 // sensor -> agent, every second heartbeat and on change
	TypeError     Type = 5 // either way, before a close
	TypeGoodbye   Type = 6 // agent -> sensor, last message of an agent stopping on purpose (1.1)
)

// String returns the type's name.
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeHeartbeat:
		return "heartbeat"
	case TypeConfig:
		return "config"
	case TypeAtRisk:
		return "at_risk"
	case TypeError:
		return "error"
	case TypeGoodbye:
		return "goodbye"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Errors the reader returns.
var (
	ErrFrameTooLarge = errors.New("frame larger than 64 KiB")
	ErrShortFrame    = errors.New("frame shorter than its header")
)

// VersionError is returned for a frame with an unknown major version.
type VersionError struct{ Major, Minor uint8 }

// Error names the version and the one this side speaks.
func (e *VersionError) Error() string {
	return fmt.Sprintf("protocol version %d.%d not supported (this side speaks %d.x)", e.Major, e.Minor, Major)
}

// Frame is one decoded frame.
type Frame struct {
	Major, Minor uint8
	Type         Type
	Payload      []byte
}

// ReadFrame reads one frame. It checks the length and the major version
// before reading the payload, so an oversized or foreign frame costs nothing.
func ReadFrame(r io.Reader) (Frame, error) {
	var h [HeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(h[:4])
	if n < HeaderLen-4 {
		return Frame{}, ErrShortFrame
	}
	if n > MaxFrame-4 {
		return Frame{}, fmt.Errorf("%w (length field %d)", ErrFrameTooLarge, n)
	}
	f := Frame{Major: h[4], Minor: h[5], Type: Type(h[6])}
	if f.Major != Major {
		return f, &VersionError{Major: f.Major, Minor: f.Minor}
	}
	f.Payload = make([]byte, int(n)-(HeaderLen-4))
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return f, nil
}

// AppendFrame appends a frame with payload to buf.
func AppendFrame(buf []byte, t Type, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return buf, fmt.Errorf("%s message of %d bytes: %w", t, len(payload), ErrFrameTooLarge)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(HeaderLen-4+len(payload)))
	buf = append(buf, Major, Minor, byte(t))
	return append(buf, payload...), nil
}

// Marshal encodes a message as one frame.
func Marshal(t Type, msg any) ([]byte, error) {
	p, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return AppendFrame(make([]byte, 0, HeaderLen+len(p)), t, p)
}

// Interface is one network interface in a hello.
type Interface struct {
	Name string       `json:"name"`
	MAC  schema.MAC   `json:"mac"`
	IPs  []netip.Addr `json:"ips,omitempty"`
}

// Hello is the agent's declaration: its health, interfaces and signed-in
// users. Identity comes from the certificate, never from the message.
type Hello struct {
	Health     schema.Health `json:"health"`
	Reasons    []string      `json:"reasons,omitempty"`
	Interfaces []Interface   `json:"interfaces,omitempty"`
	Users      []string      `json:"users,omitempty"`
	Agent      string        `json:"agent,omitempty"` // software name and version
	// Instance is random per agent process (1.1, optional): a reconnect of
	// the same process keeps it, a restarted agent has a new one.
	Instance string `json:"instance,omitempty"`
}

// Heartbeat is the agent's periodic proof of life.
type Heartbeat struct {
	Health  schema.Health `json:"health"`
	Reasons []string      `json:"reasons,omitempty"`
	Seq     uint64        `json:"seq,omitempty"`
	// SentAt is the agent's clock at sending, Unix nanoseconds (optional;
	// load tools use it to measure latency).
	SentAt int64 `json:"sent_at,omitempty"`
}

// Config tells the agent how to behave; the sensor sends it after the hello
// and whenever its configuration changes.
type Config struct {
	// HeartbeatIntervalMS is the interval between heartbeats in milliseconds.
	HeartbeatIntervalMS int64 `json:"heartbeat_interval_ms"`
	// Addresses are the sensor's LAN-zone addresses (host:port), in the
	// order to try them.
	Addresses []string `json:"addresses"`
}

// Interval returns the heartbeat interval.
func (c Config) Interval() time.Duration {
	return time.Duration(c.HeartbeatIntervalMS) * time.Millisecond
}

// AtRiskEndpoint is one endpoint of the at-risk list.
type AtRiskEndpoint struct {
	EndpointID string        `json:"endpoint_id"`
	Name       string        `json:"name"`
	Status     schema.Status `json:"status"`
	MACs       []schema.MAC  `json:"macs,omitempty"`
	IPs        []netip.Addr  `json:"ips,omitempty"`
}

// AtRisk is one part of the at-risk list: the red, yellow and missing
// endpoints. A list too long for one frame is sent as Parts frames sharing
// a Generation, Part counting from 1.
type AtRisk struct {
	Generation uint64           `json:"generation"`
	Part       int              `json:"part"`
	Parts      int              `json:"parts"`
	Generated  time.Time        `json:"generated"`
	Endpoints  []AtRiskEndpoint `json:"endpoints"`
}

// Error is sent before closing a connection.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes.
const (
	CodeUnsupportedVersion = "unsupported_version"
	CodeProtocol           = "protocol_error"
	CodeLimit              = "limit_exceeded"
	CodeRevoked            = "revoked"
	CodeReplaced           = "replaced" // a newer connection of the same endpoint took over
	CodeShutdown           = "shutdown"
	CodeDuplicate          = "duplicate_identity" // the certificate is connected from another address
)

// Goodbye is the last message of an agent that stops on purpose; a TLS
// close_notify follows it. A connection that ends without one (the agent
// was killed or crashed) is what the sensor treats as suspect.
type Goodbye struct {
	Reason  GoodbyeReason `json:"reason"`
	Message string        `json:"message,omitempty"`
}

// GoodbyeReason says why an agent stops. A reason this side does not know
// is kept as sent and treated like GoodbyeStop.
type GoodbyeReason = schema.GoodbyeReason

// Goodbye reasons.
const (
	GoodbyeStop     = schema.GoodbyeStop
	GoodbyeUpgrade  = schema.GoodbyeUpgrade
	GoodbyeShutdown = schema.GoodbyeShutdown
)

// DecodeGoodbye decodes and checks a goodbye payload.
func DecodeGoodbye(p []byte) (Goodbye, error) {
	var g Goodbye
	if err := json.Unmarshal(p, &g); err != nil {
		return Goodbye{}, fmt.Errorf("goodbye: %w", err)
	}
	if g.Reason == "" {
		return Goodbye{}, errors.New("goodbye: reason missing (want stop, upgrade or shutdown)")
	}
	if err := checkString("goodbye reason", string(g.Reason)); err != nil {
		return Goodbye{}, err
	}
	if err := checkString("goodbye message", g.Message); err != nil {
		return Goodbye{}, err
	}
	return g, nil
}

// DecodeHello decodes and checks a hello payload.
func DecodeHello(p []byte) (Hello, error) {
	var h Hello
	if err := json.Unmarshal(p, &h); err != nil {
		return Hello{}, fmt.Errorf("hello: %w", err)
	}
	return h, h.Check()
}

// Check enforces the protocol's limits.
func (h *Hello) Check() error {
	if !h.Health.Valid() {
		return errors.New("hello: health missing (want green, yellow or red)")
	}
	if err := checkStrings("hello reasons", h.Reasons, MaxReasons); err != nil {
		return err
	}
	if len(h.Interfaces) > MaxInterfaces {
		return fmt.Errorf("hello: %d interfaces, limit %d", len(h.Interfaces), MaxInterfaces)
	}
	for _, itf := range h.Interfaces {
		if err := checkString("interface name", itf.Name); err != nil {
			return fmt.Errorf("hello: %w", err)
		}
		if len(itf.IPs) > MaxIPs {
			return fmt.Errorf("hello: interface %q has %d addresses, limit %d", itf.Name, len(itf.IPs), MaxIPs)
		}
	}
	if err := checkStrings("hello users", h.Users, MaxUsers); err != nil {
		return err
	}
	if err := checkString("agent", h.Agent); err != nil {
		return err
	}
	return checkString("instance", h.Instance)
}

// DecodeHeartbeat decodes and checks a heartbeat payload.
func DecodeHeartbeat(p []byte) (Heartbeat, error) {
	var h Heartbeat
	if err := json.Unmarshal(p, &h); err != nil {
		return Heartbeat{}, fmt.Errorf("heartbeat: %w", err)
	}
	if !h.Health.Valid() {
		return Heartbeat{}, errors.New("heartbeat: health missing (want green, yellow or red)")
	}
	return h, checkStrings("heartbeat reasons", h.Reasons, MaxReasons)
}

// DecodeConfig decodes and checks a config payload.
func DecodeConfig(p []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(p, &c); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if c.HeartbeatIntervalMS < 1000 || c.HeartbeatIntervalMS > 3600_000 {
		return Config{}, fmt.Errorf("config: heartbeat interval %d ms outside 1 s .. 1 h", c.HeartbeatIntervalMS)
	}
	if len(c.Addresses) > MaxAddresses {
		return Config{}, fmt.Errorf("config: %d addresses, limit %d", len(c.Addresses), MaxAddresses)
	}
	for _, a := range c.Addresses {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return Config{}, fmt.Errorf("config: address %q is not IP:port", a)
		}
	}
	return c, nil
}

// DecodeAtRisk decodes and checks one at-risk part.
func DecodeAtRisk(p []byte) (AtRisk, error) {
	var a AtRisk
	if err := json.Unmarshal(p, &a); err != nil {
		return AtRisk{}, fmt.Errorf("at_risk: %w", err)
	}
	if a.Parts < 1 || a.Part < 1 || a.Part > a.Parts {
		return AtRisk{}, fmt.Errorf("at_risk: part %d of %d", a.Part, a.Parts)
	}
	for _, e := range a.Endpoints {
		if err := checkString("endpoint id", e.EndpointID); err != nil {
			return AtRisk{}, fmt.Errorf("at_risk: %w", err)
		}
		if err := checkString("endpoint name", e.Name); err != nil {
			return AtRisk{}, fmt.Errorf("at_risk: %w", err)
		}
		if len(e.MACs) > MaxInterfaces || len(e.IPs) > MaxInterfaces*MaxIPs {
			return AtRisk{}, fmt.Errorf("at_risk: endpoint %s lists too many addresses", e.Name)
		}
	}
	return a, nil
}

// DecodeError decodes an error payload.
func DecodeError(p []byte) (Error, error) {
	var e Error
	if err := json.Unmarshal(p, &e); err != nil {
		return Error{}, fmt.Errorf("error message: %w", err)
	}
	if len(e.Message) > 4*MaxString {
		e.Message = e.Message[:4*MaxString]
	}
	return e, nil
}

func checkString(what, s string) error {
	if len(s) > MaxString {
		return fmt.Errorf("%s is %d bytes, limit %d", what, len(s), MaxString)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	return nil
}

func checkStrings(what string, list []string, max int) error {
	if len(list) > max {
		return fmt.Errorf("%s: %d entries, limit %d", what, len(list), max)
	}
	for _, s := range list {
		if err := checkString(what, s); err != nil {
			return err
		}
	}
	return nil
}

// EncodeAtRisk splits an at-risk list into as many frames as it needs, all
// with the given generation.
func EncodeAtRisk(list schema.AtRiskList, generation uint64) ([][]byte, error) {
	eps := make([]AtRiskEndpoint, len(list.Endpoints))
	for i, e := range list.Endpoints {
		eps[i] = AtRiskEndpoint{EndpointID: e.EndpointID, Name: e.Name, Status: e.Status, MACs: e.MACs, IPs: e.IPs}
	}
	// Split by encoded size: each part's payload stays under MaxPayload.
	var parts [][]AtRiskEndpoint
	var cur []AtRiskEndpoint
	size := 0
	const budget = MaxPayload - 256
	for _, e := range eps {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode at_risk: %w", err)
		}
		if len(b)+1 > budget {
			return nil, fmt.Errorf("encode at_risk: endpoint %s alone exceeds a frame", e.Name)
		}
		if size+len(b)+1 > budget && len(cur) > 0 {
			parts = append(parts, cur)
			cur, size = nil, 0
		}
		cur = append(cur, e)
		size += len(b) + 1
	}
	if len(cur) > 0 || len(parts) == 0 {
		if cur == nil {
			cur = []AtRiskEndpoint{}
		}
		parts = append(parts, cur)
	}
	out := make([][]byte, 0, len(parts))
	for i, p := range parts {
		f, err := Marshal(TypeAtRisk, AtRisk{Generation: generation, Part: i + 1, Parts: len(parts), Generated: list.Generated.UTC(), Endpoints: p})
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// AtRiskAssembler collects the parts of at-risk lists and returns a whole
// list when its last part arrives.
type AtRiskAssembler struct {
	gen   uint64
	parts map[int][]AtRiskEndpoint
}

// Add takes one part and returns the complete list once every part of its
// generation has arrived. A part of a newer generation discards an
// unfinished older one.
func (a *AtRiskAssembler) Add(p AtRisk) ([]AtRiskEndpoint, bool) {
	if a.parts == nil || p.Generation != a.gen {
		a.gen, a.parts = p.Generation, map[int][]AtRiskEndpoint{}
	}
	a.parts[p.Part] = p.Endpoints
	if len(a.parts) < p.Parts {
		return nil, false
	}
	out := []AtRiskEndpoint{}
	for i := 1; i <= p.Parts; i++ {
		eps, ok := a.parts[i]
		if !ok {
			return nil, false
		}
		out = append(out, eps...)
	}
	a.parts = nil
	return out, true
}
