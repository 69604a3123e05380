package alert

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tapbeat/tapbeat/sensor/alert/syslog"
	"github.com/tapbeat/tapbeat/sensor/safetext"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// SDID is the structured-data ID of tapbeat's event fields, under the
// private enterprise number 32473 that RFC 5612 reserves for documentation.
const SDID = "tapbeat@32473"

// AppName is the RFC 5424 APP-NAME of every message.
const AppName = "tapbeat"

// SignatureID returns the CEF signature id of an event type from the table
// of event types; unknown types get "tapbeat:" followed by the type.
func SignatureID(t schema.EventType) string {
	if ti, ok := t.Info(); ok {
		return ti.SignatureID
	}
	return "tapbeat:" + string(t)
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

// MaxSequenceID is the largest RFC 5424 sequenceId (section 7.3.1); the
// next one after it is 1.
const MaxSequenceID = 2147483647

// NextSequenceID returns the sequenceId after id: 1 after 0 (none yet) and
// after MaxSequenceID.
func NextSequenceID(id uint32) uint32 {
	if id >= MaxSequenceID {
		return 1
	}
	return id + 1
}

// Append appends ev as one RFC 5424 message (unframed) to dst, numbered
// sequenceID in [meta sequenceId] (RFC 5424 7.3.1: the count of messages
// submitted to this destination, from 1). The event's own number is in the
// tapbeat@32473 element's seq.
func (f *Formatter) Append(dst []byte, ev *schema.Event, sequenceID uint32) ([]byte, error) {
	return f.append(dst, ev, "", sequenceID)
}

// append is Append with the details already in JSON when the caller has
// them (outbox entries keep them so, and then leave ev.Details nil): the
// delivery path never decodes them into a map.
func (f *Formatter) append(dst []byte, ev *schema.Event, details string, sequenceID uint32) ([]byte, error) {
	if details == "" && ev.Details != nil {
		b, err := json.Marshal(ev.Details)
		if err != nil {
			return dst, fmt.Errorf("event %d: details: %w", ev.Seq, err)
		}
		details = string(b)
	}
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
	add("macs", joinMACs(ev.MACs))
	add("ips", joinIPs(ev.IPs))
	add("status", string(ev.Status))
	add("previous_status", string(ev.PreviousStatus))
	add("reason", ev.Reason)
	var err error
	if p, err = appendDetailParams(p, details); err != nil {
		return dst, fmt.Errorf("event %d: details: %w", ev.Seq, err)
	}
	f.params = p

	f.body = f.body[:0]
	switch f.Format {
	case FormatCEF:
		f.body = f.appendCEF(f.body, ev, details)
	case FormatJSON:
		f.body = jsonSafe(appendEventJSON(f.body, ev, details))
	default:
		f.body = appendSummary(f.body, ev)
	}
	f.msg = syslog.Message{
		Facility:  f.Facility,
		Severity:  uint8(min(ev.Severity, schema.SeverityDebug)),
		Timestamp: ev.Time,
		Hostname:  f.Hostname,
		AppName:   AppName,
		ProcID:    f.ProcID,
		MsgID:     string(ev.Type),
		Data: []syslog.Element{
			{ID: SDID, Params: p},
			{ID: "meta", Params: []syslog.Param{{Name: "sequenceId", Value: strconv.FormatUint(uint64(sequenceID), 10)}}},
		},
		Msg: f.body,
	}
	return syslog.Append(dst, &f.msg)
}

// appendSummary writes a one-line summary: "TYPE ENDPOINT: REASON".
func appendSummary(dst []byte, ev *schema.Event) []byte {
	dst = append(dst, ev.Type...)
	switch {
	case ev.EndpointName != "":
		dst = append(dst, " endpoint "...)
		dst = safetext.Append(dst, ev.EndpointName, false)
	case ev.EndpointID != "":
		dst = append(dst, " endpoint "...)
		dst = append(dst, ev.EndpointID...)
	case len(ev.MACs) > 0:
		dst = append(dst, " mac "...)
		dst = appendMACs(dst, ev.MACs)
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
		dst = safetext.Append(dst, ev.Reason, true)
	}
	return dst
}

// appendCEF writes a CEF:0 record. Header fields escape '\' and '|';
// extension values escape '\' and '=' and write CR and LF as \r and \n.
func (f *Formatter) appendCEF(dst []byte, ev *schema.Event, details string) []byte {
	sigID, sigName := SignatureID(ev.Type), string(ev.Type)
	if ti, ok := ev.Type.Info(); ok {
		sigName = ti.Name
	}
	version := f.Version
	if version == "" {
		version = "dev"
	}
	dst = append(dst, "CEF:0|tapbeat|tapbeat|"...)
	dst = cefHeader(dst, version)
	dst = append(dst, '|')
	dst = cefHeader(dst, sigID)
	dst = append(dst, '|')
	dst = cefHeader(dst, sigName)
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, int64(cefSeverity[min(ev.Severity, schema.SeverityDebug)]), 10)
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
		ext("smac", ev.MACs[0].String())
	}
	for _, ip := range ev.IPs {
		if ip.Is4() || ip.Is4In6() {
			ext("src", ip.Unmap().String())
			break
		}
	}
	ext("reason", ev.Reason)
	labelled := func(key, label, v string) {
		if v != "" {
			ext(key+"Label", label)
			ext(key, v)
		}
	}
	labelled("cs1", "endpointId", ev.EndpointID)
	labelled("cs2", "endpointName", ev.EndpointName)
	labelled("cs3", "org", ev.Org)
	labelled("cs4", "status", string(ev.Status))
	labelled("cs5", "previousStatus", string(ev.PreviousStatus))
	labelled("flexString1", "macs", joinMACs(ev.MACs))
	labelled("flexString2", "ips", joinIPs(ev.IPs))
	labelled("cs6", "details", details)
	return dst
}

func cefHeader(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case '\\', '|':
			dst = append(dst, '\\', c)
		case '\r', '\n':
			dst = append(dst, ' ')
		default:
			n := 1
			dst, n = cefSafe(dst, s[i:])
			i += n
			continue
		}
		i++
	}
	return dst
}

func cefValue(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case '\\', '=':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		default:
			n := 1
			dst, n = cefSafe(dst, s[i:])
			i += n
			continue
		}
		i++
	}
	return dst
}

// cefSafe appends the first character of s, or its escape (see safetext)
// when it is a control, a bidirectional control or invalid UTF-8; the
// escape's backslash is doubled as CEF wants. It returns the bytes used.
func cefSafe(dst []byte, s string) ([]byte, int) {
	if c := s[0]; c >= 0x20 && c < 0x7f {
		return append(dst, c), 1
	}
	r, n := utf8.DecodeRuneInString(s)
	if (r == utf8.RuneError && n == 1) || safetext.Unsafe(r) {
		esc := safetext.Append(nil, s[:n], false)
		return append(append(dst, '\\'), esc...), n
	}
	return append(dst, s[:n]...), n
}

// appendEventJSON writes ev exactly as encoding/json marshals schema.Event
// (the one JSON schema), with details already encoded; it saves the
// reflection on the delivery path.
func appendEventJSON(dst []byte, ev *schema.Event, details string) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, ev.Seq, 10)
	dst = append(dst, `,"time":"`...)
	dst = ev.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","type":`...)
	dst = appendJSONString(dst, string(ev.Type))
	dst = append(dst, `,"severity":`...)
	dst = appendJSONString(dst, ev.Severity.String())
	field := func(name, v string) {
		if v != "" {
			dst = append(dst, `,"`...)
			dst = append(dst, name...)
			dst = append(dst, `":`...)
			dst = appendJSONString(dst, v)
		}
	}
	list := func(name string, n int, item func(dst []byte, i int) []byte) {
		if n == 0 {
			return
		}
		dst = append(dst, `,"`...)
		dst = append(dst, name...)
		dst = append(dst, `":[`...)
		for i := range n {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = item(dst, i)
		}
		dst = append(dst, ']')
	}
	field("endpoint_id", ev.EndpointID)
	field("endpoint_name", ev.EndpointName)
	field("org", ev.Org)
	list("macs", len(ev.MACs), func(dst []byte, i int) []byte { return append(ev.MACs[i].AppendTo(append(dst, '"')), '"') })
	list("ips", len(ev.IPs), func(dst []byte, i int) []byte { return appendJSONString(dst, ev.IPs[i].String()) })
	field("status", string(ev.Status))
	field("previous_status", string(ev.PreviousStatus))
	field("reason", ev.Reason)
	if details != "" && details != "{}" && details != "null" {
		dst = append(dst, `,"details":`...)
		dst = append(dst, details...)
	}
	return append(dst, '}')
}

// jsonSafe rewrites, in place when it can, the characters encoding/json
// leaves raw that safetext calls unsafe (C1 controls, bidirectional
// controls, the byte-order mark) as \uXXXX escapes. In JSON text they can
// only sit inside strings, where the escape decodes to the same string.
func jsonSafe(b []byte) []byte {
	clean := true
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if safetext.Unsafe(r) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			out = append(out, b[i])
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if safetext.Unsafe(r) {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}

// appendJSONString writes s as encoding/json does: quoted, with '"', '\',
// control characters, '<', '>', '&', U+2028 and U+2029 escaped and invalid
// UTF-8 replaced by U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// appendDetailParams adds one "d.KEY" parameter per member of details, a
// JSON object as encoding/json writes a map (keys sorted, compact): string
// values unquoted, other values as their JSON text; null and "" are left out.
func appendDetailParams(p []syslog.Param, details string) ([]syslog.Param, error) {
	if details == "" || details == "null" {
		return p, nil
	}
	s := details
	if s[0] != '{' {
		return p, errors.New("not a JSON object")
	}
	s = s[1:]
	for len(s) > 0 && s[0] != '}' {
		if s[0] == ',' {
			s = s[1:]
		}
		key, rest, err := cutJSONString(s)
		if err != nil {
			return p, err
		}
		if len(rest) == 0 || rest[0] != ':' {
			return p, errors.New("missing ':' after a key")
		}
		rest = rest[1:]
		var val string
		if len(rest) > 0 && rest[0] == '"' {
			val, rest, err = cutJSONString(rest)
		} else {
			val, rest, err = cutJSONValue(rest)
			if val == "null" {
				val = ""
			}
		}
		if err != nil {
			return p, err
		}
		if val != "" {
			p = append(p, syslog.Param{Name: "d." + key, Value: val})
		}
		s = rest
	}
	if len(s) == 0 {
		return p, errors.New("unterminated object")
	}
	return p, nil
}

// cutJSONString decodes the JSON string at the start of s and returns it
// and the rest of s.
func cutJSONString(s string) (string, string, error) {
	if len(s) == 0 || s[0] != '"' {
		return "", s, errors.New("want a string")
	}
	escaped := false
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			if !escaped {
				return s[1:i], s[i+1:], nil
			}
			var v string
			if err := json.Unmarshal([]byte(s[:i+1]), &v); err != nil {
				return "", s, err
			}
			return v, s[i+1:], nil
		}
	}
	return "", s, errors.New("unterminated string")
}

// cutJSONValue returns the text of the non-string JSON value at the start
// of s (a number, literal, array or object) and the rest of s.
func cutJSONValue(s string) (string, string, error) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			_, rest, err := cutJSONString(s[i:])
			if err != nil {
				return "", s, err
			}
			i = len(s) - len(rest) - 1
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				return s[:i], s[i:], nil
			}
			depth--
		case ',':
			if depth == 0 {
				return s[:i], s[i:], nil
			}
		}
	}
	return "", s, errors.New("unterminated value")
}

// appendMACs writes macs separated by commas.
func appendMACs(dst []byte, macs []schema.MAC) []byte {
	for i, m := range macs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = m.AppendTo(dst)
	}
	return dst
}

func joinMACs(macs []schema.MAC) string { return string(appendMACs(nil, macs)) }

func joinIPs(ips []netip.Addr) string {
	var b []byte
	for i, ip := range ips {
		if i > 0 {
			b = append(b, ',')
		}
		b = ip.AppendTo(b)
	}
	return string(b)
}
