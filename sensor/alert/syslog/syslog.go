// Package syslog writes syslog messages as RFC 5424 specifies them, with
// structured data, and frames them for stream transports by octet counting
// (RFC 6587 section 3.4.1, as RFC 5425 requires for TLS).
//
// The writer never drops a field silently: names that RFC 5424 forbids are
// rewritten to allowed characters, values are escaped, and a field that cannot
// be written is reported as an error.
package syslog

import (
	"github.com/tapbeat/tapbeat/sensor/safetext"

	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Facility is a syslog facility code (RFC 5424 section 6.2.1).
type Facility uint8

var facilityNames = [...]string{
	"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

// Facilities that tapbeat's configuration commonly names.
const (
	FacilityUser     Facility = 1
	FacilityDaemon   Facility = 3
	FacilityAuth     Facility = 4
	FacilityAuthPriv Facility = 10
	FacilityLocal0   Facility = 16
)

// String returns the facility's conventional name ("local0").
func (f Facility) String() string {
	if int(f) < len(facilityNames) {
		return facilityNames[f]
	}
	return fmt.Sprintf("facility(%d)", uint8(f))
}

// ParseFacility parses a facility name as String writes it, or its number.
func ParseFacility(s string) (Facility, error) {
	for i, n := range facilityNames {
		if n == s {
			return Facility(i), nil
		}
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(facilityNames) {
		return Facility(n), nil
	}
	return 0, fmt.Errorf("facility %q: want a number 0-23 or one of %s", s, strings.Join(facilityNames[:], ", "))
}

// Param is one SD-PARAM: a name and its value. Values may hold any UTF-8
// text, newlines included; the writer escapes '"', '\' and ']'.
type Param struct {
	Name  string
	Value string
}

// Element is one SD-ELEMENT: an SD-ID such as "tapbeat@32473" or the
// registered "meta", and its parameters.
type Element struct {
	ID     string
	Params []Param
}

// Message is one RFC 5424 message. Empty header fields are written as the
// NILVALUE "-"; a zero Timestamp too.
type Message struct {
	Facility  Facility
	Severity  uint8 // 0 (emergency) to 7 (debug)
	Timestamp time.Time
	Hostname  string // at most 255 printable ASCII characters
	AppName   string // at most 48
	ProcID    string // at most 128
	MsgID     string // at most 32
	Data      []Element
	Msg       []byte // free-form body, normally UTF-8 text
}

// Header field limits from RFC 5424 section 6.
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
	maxMsgID    = 32
	maxSDName   = 32
)

// TimestampLayout is the timestamp form written: UTC with microseconds, the
// finest precision RFC 5424 allows.
const TimestampLayout = "2006-01-02T15:04:05.000000Z07:00"

// Append appends m in RFC 5424 form to dst. It fails only on a severity or
// facility out of range or an SD-ID that cannot be written; header fields are
// truncated to their limits and any character RFC 5424 forbids in them (or in
// SD names) becomes '_'.
func Append(dst []byte, m *Message) ([]byte, error) {
	if m.Severity > 7 {
		return dst, fmt.Errorf("syslog: severity %d out of range 0-7", m.Severity)
	}
	if int(m.Facility) >= len(facilityNames) {
		return dst, fmt.Errorf("syslog: facility %d out of range 0-23", m.Facility)
	}
	dst = append(dst, '<')
	dst = strconv.AppendUint(dst, uint64(m.Facility)*8+uint64(m.Severity), 10)
	dst = append(dst, ">1 "...)
	if m.Timestamp.IsZero() {
		dst = append(dst, '-')
	} else {
		dst = m.Timestamp.UTC().Truncate(time.Microsecond).AppendFormat(dst, TimestampLayout)
	}
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, m.Hostname, maxHostname)
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, m.AppName, maxAppName)
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, m.ProcID, maxProcID)
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, m.MsgID, maxMsgID)
	dst = append(dst, ' ')
	if len(m.Data) == 0 {
		dst = append(dst, '-')
	}
	for i := range m.Data {
		var err error
		if dst, err = appendElement(dst, &m.Data[i]); err != nil {
			return dst, err
		}
	}
	if len(m.Msg) > 0 {
		dst = append(dst, ' ')
		dst = append(dst, m.Msg...)
	}
	return dst, nil
}

// appendHeaderField writes a PRINTUSASCII field (codes 33-126), "-" when
// empty.
func appendHeaderField(dst []byte, s string, max int) []byte {
	if s == "" {
		return append(dst, '-')
	}
	if len(s) > max {
		s = s[:max]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// ErrBadSDID reports an SD-ID that is empty, too long or holds a character
// RFC 5424 forbids.
var ErrBadSDID = errors.New("syslog: invalid SD-ID")

func appendElement(dst []byte, e *Element) ([]byte, error) {
	if e.ID == "" || len(e.ID) > maxSDName || strings.IndexFunc(e.ID, badSDNameRune) >= 0 {
		return dst, fmt.Errorf("%w %q: want 1-32 printable ASCII characters other than '=', ' ', ']' and '\"'", ErrBadSDID, e.ID)
	}
	dst = append(dst, '[')
	dst = append(dst, e.ID...)
	for _, p := range e.Params {
		dst = append(dst, ' ')
		dst = AppendSDName(dst, p.Name)
		dst = append(dst, '=', '"')
		dst = AppendSDValue(dst, p.Value)
		dst = append(dst, '"')
	}
	return append(dst, ']'), nil
}

func badSDNameRune(r rune) bool {
	return r < 33 || r > 126 || r == '=' || r == ']' || r == '"'
}

// AppendSDName appends name as a valid PARAM-NAME: at most 32 characters,
// each printable ASCII other than '=', ' ', ']' and '"'; anything else
// becomes '_'. An empty name becomes "_".
func AppendSDName(dst []byte, name string) []byte {
	if name == "" {
		return append(dst, '_')
	}
	if len(name) > maxSDName {
		name = name[:maxSDName]
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// AppendSDValue appends v escaped as a PARAM-VALUE: '"', '\' and ']' get a
// backslash; NUL and the other control characters but newline and tab, the
// bidirectional controls and invalid UTF-8 are written as text escapes
// (\x00, \u202e; see safetext), so no collector or terminal acts on them.
func AppendSDValue(dst []byte, v string) []byte {
	for i := 0; i < len(v); {
		c := v[i]
		if c >= 0x20 && c < 0x7f || c == '\n' || c == '\t' {
			if c == '"' || c == '\\' || c == ']' {
				dst = append(dst, '\\')
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(v[i:])
		if (r == utf8.RuneError && n == 1) || safetext.Unsafe(r) {
			// The escape's backslash is itself escaped, so a parser
			// reads the text "\x00" back.
			dst = append(dst, '\\')
			dst = safetext.Append(dst, v[i:i+n], false)
		} else {
			dst = append(dst, v[i:i+n]...)
		}
		i += n
	}
	return dst
}

// AppendOctetCounted appends msg framed by octet counting: its length in
// decimal, a space, then the message (RFC 6587 section 3.4.1).
func AppendOctetCounted(dst, msg []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}
