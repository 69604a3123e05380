package syslog

import (
	"github.com/tapbeat/tapbeat/sensor/safetext"

	"strings"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"
	"pgregory.net/rapid"
)

func parse(t testing.TB, b []byte) *rfc5424.SyslogMessage {
	t.Helper()
	m, err := rfc5424.NewParser().Parse(b)
	if err != nil {
		t.Fatalf("parse %q: %v", b, err)
	}
	return m.(*rfc5424.SyslogMessage)
}

func TestAppendParses(t *testing.T) {
	ts := time.Date(2026, 11, 26, 8, 1, 2, 123456789, time.FixedZone("x", 3600))
	m := &Message{
		Facility: FacilityLocal0, Severity: 4, Timestamp: ts,
		Hostname: "sensor-1", AppName: "tapbeat", ProcID: "42", MsgID: "heartbeat_missing",
		Data: []Element{
			{ID: "tapbeat@32473", Params: []Param{{"reason", "a \"quoted\" \\ back]slash\nnew line"}, {"bad name=x", "v"}}},
			{ID: "meta", Params: []Param{{"sequenceId", "17"}}},
		},
		Msg: []byte("endpoint laptop-7 stopped heartbeating"),
	}
	b, err := Append(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	want := `<132>1 2026-11-26T07:01:02.123456Z sensor-1 tapbeat 42 heartbeat_missing [tapbeat@32473 reason="a \"quoted\" \\ back\]slash` + "\n" + `new line" bad_name_x="v"][meta sequenceId="17"] endpoint laptop-7 stopped heartbeating`
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	p := parse(t, b)
	if *p.Severity != 4 || *p.Facility != 16 || *p.MsgID != "heartbeat_missing" || *p.Hostname != "sensor-1" {
		t.Errorf("header fields lost: %+v", p)
	}
	if !p.Timestamp.Equal(ts.Truncate(time.Microsecond)) {
		t.Errorf("timestamp %v, want %v", p.Timestamp, ts.Truncate(time.Microsecond))
	}
	sd := *p.StructuredData
	if got := sd["tapbeat@32473"]["reason"]; got != "a \"quoted\" \\ back]slash\nnew line" {
		t.Errorf("reason = %q", got)
	}
	if sd["meta"]["sequenceId"] != "17" {
		t.Errorf("meta = %v", sd["meta"])
	}
	if *p.Message != "endpoint laptop-7 stopped heartbeating" {
		t.Errorf("msg = %q", *p.Message)
	}
}

func TestNilValues(t *testing.T) {
	b, err := Append(nil, &Message{Severity: 3})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "<3>1 - - - - - -" {
		t.Fatalf("got %q", b)
	}
	parse(t, b)
}

func TestErrors(t *testing.T) {
	if _, err := Append(nil, &Message{Severity: 8}); err == nil || !strings.Contains(err.Error(), "severity 8") {
		t.Errorf("severity 8: %v", err)
	}
	if _, err := Append(nil, &Message{Facility: 24}); err == nil || !strings.Contains(err.Error(), "facility 24") {
		t.Errorf("facility 24: %v", err)
	}
	if _, err := Append(nil, &Message{Data: []Element{{ID: "a b"}}}); err == nil || !strings.Contains(err.Error(), "SD-ID") {
		t.Errorf("bad SD-ID: %v", err)
	}
}

func TestFacility(t *testing.T) {
	for _, s := range []string{"local0", "16"} {
		f, err := ParseFacility(s)
		if err != nil || f != FacilityLocal0 || f.String() != "local0" {
			t.Errorf("ParseFacility(%q) = %v, %v", s, f, err)
		}
	}
	if _, err := ParseFacility("local9"); err == nil || !strings.Contains(err.Error(), "local7") {
		t.Errorf("local9: %v", err)
	}
}

func TestOctetCounted(t *testing.T) {
	if got := string(AppendOctetCounted([]byte("x"), []byte("<1>1 - - - - - - a\nb"))); got != "x20 <1>1 - - - - - - a\nb" {
		t.Fatalf("got %q", got)
	}
}

// Any header and SD value survives a round trip through an independent
// RFC 5424 parser.
func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := &Message{
			Facility:  Facility(rapid.IntRange(0, 23).Draw(t, "fac")),
			Severity:  uint8(rapid.IntRange(0, 7).Draw(t, "sev")),
			Timestamp: time.Unix(rapid.Int64Range(0, 4e9).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "ns")),
			Hostname:  rapid.StringMatching(`[!-~]{2,40}`).Draw(t, "host"), // "-" alone is the NILVALUE
			AppName:   "tapbeat",
			MsgID:     rapid.StringMatching(`[a-z_]{1,32}`).Draw(t, "msgid"),
		}
		vals := rapid.SliceOfN(rapid.String(), 1, 5).Draw(t, "vals")
		var params []Param
		for i, v := range vals {
			params = append(params, Param{Name: "p" + string(rune('a'+i)), Value: v})
		}
		m.Data = []Element{{ID: "tapbeat@32473", Params: params}}
		m.Msg = []byte(rapid.StringMatching(`[ -~]{1,40}`).Draw(t, "msg"))
		b, err := Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		p, err := rfc5424.NewParser().Parse(b)
		if err != nil {
			t.Fatalf("parse %q: %v", b, err)
		}
		sm := p.(*rfc5424.SyslogMessage)
		if *sm.Hostname != m.Hostname || *sm.Severity != m.Severity || *sm.Facility != uint8(m.Facility) {
			t.Fatalf("header mismatch in %q", b)
		}
		if !sm.Timestamp.Equal(m.Timestamp.Truncate(time.Microsecond)) {
			t.Fatalf("timestamp %v want %v", sm.Timestamp, m.Timestamp.Truncate(time.Microsecond))
		}
		got := (*sm.StructuredData)["tapbeat@32473"]
		for _, p := range params {
			// Controls but newline and tab, bidirectional controls and
			// invalid UTF-8 arrive as text escapes.
			want := string(safetext.Append(nil, p.Value, true))
			if got[p.Name] != want {
				t.Fatalf("param %s = %q, want %q (wire %q)", p.Name, got[p.Name], want, b)
			}
		}
	})
}

func FuzzAppend(f *testing.F) {
	f.Add("host", "id", "val\"]\\", "name")
	f.Fuzz(func(t *testing.T, host, msgid, val, name string) {
		m := &Message{Severity: 5, Hostname: host, MsgID: msgid, AppName: "tapbeat",
			Data: []Element{{ID: "tapbeat@32473", Params: []Param{{Name: name, Value: val}}}}}
		b, err := Append(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		parse(t, b)
	})
}
