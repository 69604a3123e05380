package alert

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/alert/syslog"
)

// SDID is the structured-data ID of tapbeat's event fields, under the
// private enterprise number 32473 that RFC 5612 reserves for documentation.
const SDID = "tapbeat@32473"

// AppName is the RFC 5424 APP-NAME of every message.
const AppName = "tapbeat"

type signature struct {
	id   string
	name string
}

// signatureIDs gives each event type its stable CEF signature id and name.
// The ids are part of the external schema: SIEM rules key on them, so an id
// is never reused or renumbered.
var signatureIDs = map[sensor.EventType]signature{
	sensor.EventStatusChanged:        {"1001", "Endpoint status changed"},
	sensor.EventHeartbeatMissing:     {"1002", "Heartbeat missing"},
	sensor.EventHeartbeatRestored:    {"1003", "Heartbeat restored"},
	sensor.EventNoHeartbeat:          {"1004", "Station without heartbeat"},
	sensor.EventMACConflict:          {"1005", "MAC address conflict"},
	sensor.EventPolicyViolation:      {"1006", "Heartbeat policy violation"},
	sensor.EventLateralMovement:      {"1007", "Lateral movement"},
	sensor.EventCaptureDegraded:      {"1008", "Capture degraded"},
	sensor.EventCaptureRestored:      {"1009", "Capture restored"},
	sensor.EventAuthFailed:           {"1010", "LAN zone authentication failed"},
	sensor.EventAlertsLost:           {"1011", "Alerts lost"},
	sensor.EventStorageLow:           {"1012", "Storage low"},
	sensor.EventEndpointHello:        {"1101", "Endpoint hello"},
	sensor.EventEndpointDisconnected: {"1102", "Endpoint disconnected"},
	sensor.EventEndpointRemoved:      {"1103", "Endpoint removed"},
}

// SignatureID returns the CEF signature id of an event type; unknown types
// get "tapbeat:" followed by the type.
func SignatureID(t sensor.EventType) string {
	if s, ok := signatureIDs[t]; ok {
		return s.id
	}
	return "tapbeat:" + string(t)
}

func knownTypes() []string {
	var ts []string
	for t := range signatureIDs {
		ts = append(ts, string(t))
	}
	sort.Strings(ts)
	return ts
}

// cefSeverity maps RFC 5424 severities to CEF's 0-10 scale.
var cefSeverity = [...]int{10, 9, 8, 7, 6, 4, 2, 0}

// Formatter turns events into RFC 5424 messages with a chosen body format.
// It is not safe for concurrent use.
type Formatter struct {
	Format   Format
	Facility syslog.Facility
	Hostname string
	ProcID   string
	Version  string // product version in CEF headers

	msg    syslog.Message
	params []syslog.Param
	body   []byte
}

// Append appends ev as one RFC 5424 message (unframed) to dst.
func (f *Formatter) Append(dst []byte, ev *sensor.Event) ([]byte, error) {
	seq := strconv.FormatUint(ev.Seq, 10)
	p := f.params[:0]
	add := func(name, value string) {
		if value != "" {
			p = append(p, syslog.Param{Name: name, Value: value})
		}
	}
	add("seq", seq)
	add("type", string(ev.Type))
	add("severity", ev.Severity.String())
	add("endpoint_id", ev.EndpointID)
	add("endpoint_name", ev.EndpointName)
	add("org", ev.Org)
	add("macs", strings.Join(ev.MACs, ","))
	add("ips", strings.Join(ev.IPs, ","))
	add("status", string(ev.Status))
	add("previous_status", string(ev.PreviousStatus))
	add("reason", ev.Reason)
	for _, k := range sortedKeys(ev.Details) {
		add("d."+k, detailString(ev.Details[k]))
	}
	f.params = p

	var err error
	f.body = f.body[:0]
	switch f.Format {
	case FormatCEF:
		f.body = f.appendCEF(f.body, ev)
	case FormatJSON:
		var b []byte
		if b, err = json.Marshal(ev); err != nil {
			return dst, fmt.Errorf("event %d: json body: %w", ev.Seq, err)
		}
		f.body = append(f.body, b...)
	default:
		f.body = appendSummary(f.body, ev)
	}
	f.msg = syslog.Message{
		Facility:  f.Facility,
		Severity:  uint8(min(ev.Severity, sensor.SeverityDebug)),
		Timestamp: ev.Time,
		Hostname:  f.Hostname,
		AppName:   AppName,
		ProcID:    f.ProcID,
		MsgID:     string(ev.Type),
		Data: []syslog.Element{
			{ID: SDID, Params: p},
			{ID: "meta", Params: []syslog.Param{{Name: "sequenceId", Value: seq}}},
		},
		Msg: f.body,
	}
	return syslog.Append(dst, &f.msg)
}

func sortedKeys(m map[string]any) []string {
	if len(m) == 0 {
		return nil
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func detailString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case nil:
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// appendSummary writes a one-line summary: "TYPE ENDPOINT: REASON".
func appendSummary(dst []byte, ev *sensor.Event) []byte {
	dst = append(dst, ev.Type...)
	switch {
	case ev.EndpointName != "":
		dst = append(dst, " endpoint "...)
		dst = append(dst, ev.EndpointName...)
	case ev.EndpointID != "":
		dst = append(dst, " endpoint "...)
		dst = append(dst, ev.EndpointID...)
	case len(ev.MACs) > 0:
		dst = append(dst, " mac "...)
		dst = append(dst, strings.Join(ev.MACs, ",")...)
	}
	if ev.Status != "" {
		dst = append(dst, " status "...)
		dst = append(dst, ev.Status...)
		if ev.PreviousStatus != "" {
			dst = append(dst, " (was "...)
			dst = append(dst, ev.PreviousStatus...)
			dst = append(dst, ')')
		}
	}
	if ev.Reason != "" {
		dst = append(dst, ": "...)
		dst = append(dst, ev.Reason...)
	}
	return dst
}

// appendCEF writes a CEF:0 record. Header fields escape '\' and '|';
// extension values escape '\' and '=' and write CR and LF as \r and \n.
func (f *Formatter) appendCEF(dst []byte, ev *sensor.Event) []byte {
	sig, ok := signatureIDs[ev.Type]
	if !ok {
		sig = signature{SignatureID(ev.Type), string(ev.Type)}
	}
	version := f.Version
	if version == "" {
		version = "dev"
	}
	dst = append(dst, "CEF:0|tapbeat|tapbeat|"...)
	dst = cefHeader(dst, version)
	dst = append(dst, '|')
	dst = cefHeader(dst, sig.id)
	dst = append(dst, '|')
	dst = cefHeader(dst, sig.name)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, int64(cefSeverity[min(ev.Severity, sensor.SeverityDebug)]), 10)
	dst = append(dst, '|')
	first := true
	ext := func(k, v string) {
		if v == "" {
			return
		}
		if !first {
			dst = append(dst, ' ')
		}
		first = false
		dst = append(dst, k...)
		dst = append(dst, '=')
		dst = cefValue(dst, v)
	}
	if !ev.Time.IsZero() {
		ext("rt", strconv.FormatInt(ev.Time.UnixMilli(), 10))
	}
	ext("externalId", strconv.FormatUint(ev.Seq, 10))
	ext("cat", string(ev.Type))
	ext("dvchost", f.Hostname)
	if len(ev.MACs) > 0 {
		ext("smac", ev.MACs[0])
	}
	for _, ip := range ev.IPs {
		if !strings.Contains(ip, ":") {
			ext("src", ip)
			break
		}
	}
	ext("reason", ev.Reason)
	ext("cs1Label", "endpointId")
	ext("cs1", ev.EndpointID)
	ext("cs2Label", "endpointName")
	ext("cs2", ev.EndpointName)
	ext("cs3Label", "org")
	ext("cs3", ev.Org)
	ext("cs4Label", "status")
	ext("cs4", string(ev.Status))
	ext("cs5Label", "previousStatus")
	ext("cs5", string(ev.PreviousStatus))
	if len(ev.MACs)+len(ev.IPs)+len(ev.Details) > 0 {
		all := map[string]any{}
		for k, v := range ev.Details {
			all[k] = v
		}
		if len(ev.MACs) > 0 {
			all["macs"] = ev.MACs
		}
		if len(ev.IPs) > 0 {
			all["ips"] = ev.IPs
		}
		if b, err := json.Marshal(all); err == nil {
			ext("cs6Label", "details")
			ext("cs6", string(b))
		}
	}
	return dst
}

func cefHeader(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '|':
			dst = append(dst, '\\', c)
		case '\r', '\n':
			dst = append(dst, ' ')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func cefValue(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '=':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
