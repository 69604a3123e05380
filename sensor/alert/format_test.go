package alert

import (
	"reflect"

	"github.com/tapbeat/tapbeat/sensor/safetext"

	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"pgregory.net/rapid"
)

func TestFormatterBodies(t *testing.T) {
	ev := testEvents(7, 1)[0]
	ev.Details = schema.RawDetails(`{"big":18446744073709551615,"list":["a","b"],"port":445,"proto":"tcp","rule name":"no smb=yes"}`)
	for _, format := range []Format{FormatRFC5424, FormatCEF, FormatJSON} {
		f := Formatter{Format: format, Facility: 16, Hostname: "sensor-1", ProcID: "9", Version: "1.2|3"}
		b, err := f.Append(nil, &ev, 1)
		if err != nil {
			t.Fatal(err)
		}
		p := parseAll(t, []string{string(b)})[0]
		checkFields(t, p, &ev)
		if p.sd("d.big") != "18446744073709551615" || p.sd("d.list") != `["a","b"]` {
			t.Errorf("%s: details %q %q", format, p.sd("d.big"), p.sd("d.list"))
		}
		if *p.m.Priority != 16*8+uint8(ev.Severity) {
			t.Errorf("%s: priority %d", format, *p.m.Priority)
		}
		switch format {
		case FormatCEF:
			checkCEF(t, *p.m.Message, &ev)
		case FormatJSON:
			var got schema.Event
			if err := json.Unmarshal([]byte(*p.m.Message), &got); err != nil || got.Reason != ev.Reason {
				t.Errorf("json body %q: %v", *p.m.Message, err)
			}
		default:
			if *p.m.Message != string(ev.Type)+` endpoint laptop "7" status missing (was green): `+ev.Reason {
				t.Errorf("summary %q", *p.m.Message)
			}
		}
	}
}

func TestFormatterMinimalEvent(t *testing.T) {
	ev := schema.Event{Seq: 1, Type: "future_type", Severity: schema.SeverityNotice}
	for _, format := range []Format{FormatRFC5424, FormatCEF, FormatJSON} {
		f := Formatter{Format: format}
		b, err := f.Append(nil, &ev, 1)
		if err != nil {
			t.Fatal(err)
		}
		m, err := rfc5424.NewParser().Parse(b)
		if err != nil {
			t.Fatalf("%s: %v: %q", format, err, b)
		}
		if format == FormatCEF {
			hdr, ext, err := parseCEF(*m.(*rfc5424.SyslogMessage).Message)
			if err != nil || hdr[4] != "tapbeat:future_type" || hdr[3] != "dev" {
				t.Errorf("cef %q: %v", hdr, err)
			}
			if _, ok := ext["cs1Label"]; ok {
				t.Errorf("cef labels a field with no value: %q", ext)
			}
		}
		if !strings.Contains(string(b), `[meta sequenceId="1"]`) {
			t.Errorf("%s: no sequence id: %q", format, b)
		}
	}
}

func BenchmarkFormat(b *testing.B) {
	ev := testEvents(1, 1)[0]
	for _, format := range []Format{FormatRFC5424, FormatCEF, FormatJSON} {
		b.Run(string(format), func(b *testing.B) {
			f := Formatter{Format: format, Hostname: "sensor-1"}
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = f.Append(buf[:0], &ev, 1)
			}
		})
	}
}

// The delivery path's JSON writer produces exactly encoding/json's bytes
// for schema.Event.
func TestEventJSONMatchesEncodingJSON(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		str := rapid.OneOf(rapid.String(), rapid.StringMatching(`[<>&"\\\x00-\x1f\x{2028}\x{2029}a-z]{0,12}`),
			rapid.Custom(func(t *rapid.T) string { return string(rapid.SliceOf(rapid.Byte()).Draw(t, "bytes")) }))
		ev := schema.Event{
			Seq:            rapid.Uint64().Draw(t, "seq"),
			Time:           time.Unix(rapid.Int64Range(0, 4e9).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "ns")).UTC(),
			Type:           schema.EventType(str.Draw(t, "type")),
			Severity:       schema.Severity(rapid.IntRange(0, 7).Draw(t, "sev")),
			EndpointID:     str.Draw(t, "id"),
			EndpointName:   str.Draw(t, "name"),
			Org:            str.Draw(t, "org"),
			MACs:           genMACs(t, "macs"),
			IPs:            genIPs(t, "ips"),
			Status:         schema.Status(str.Draw(t, "status")),
			PreviousStatus: schema.Status(str.Draw(t, "prev")),
			Reason:         str.Draw(t, "reason"),
		}
		if rapid.Bool().Draw(t, "details") {
			b, _ := json.Marshal(map[string]any{str.Draw(t, "k"): str.Draw(t, "v"), "n": 7})
			ev.Details = schema.RawDetails(b)
		}
		want, err := json.Marshal(&ev)
		if err != nil {
			t.Fatal(err)
		}
		var details string
		if ev.Details != nil {
			b, _ := json.Marshal(ev.Details)
			details = string(b)
		}
		if got := appendEventJSON(nil, &ev, details); string(got) != string(want) {
			t.Fatalf("got\n%s\nwant\n%s", got, want)
		}
		// What goes on the wire also escapes what encoding/json leaves raw,
		// and decodes to the same event.
		var back schema.Event
		safe := jsonSafe(append([]byte(nil), want...))
		if err := json.Unmarshal(safe, &back); err != nil {
			t.Fatal(err)
		}
		var orig schema.Event
		if err := json.Unmarshal(want, &orig); err != nil {
			t.Fatal(err)
		}
		// Compared as JSON values: raw details keep the escaping they came in.
		again, _ := json.Marshal(&back)
		wantJSON, _ := json.Marshal(&orig)
		var a, w any
		if json.Unmarshal(again, &a) != nil || json.Unmarshal(wantJSON, &w) != nil || !reflect.DeepEqual(a, w) {
			t.Fatalf("escaped JSON decodes to\n%s\nwant\n%s", again, wantJSON)
		}
		for _, r := range string(safe) {
			if r >= 0x80 && safetext.Unsafe(r) {
				t.Fatalf("escaped JSON keeps %U: %s", r, safe)
			}
		}
	})
}

// detailParamsReference is the plain way to get the detail parameters:
// decode the JSON, sort the keys, print non-strings as JSON.
func detailParamsReference(t *rapid.T, raw string) []string {
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		var v string
		switch x := m[k].(type) {
		case string:
			v = x
		case json.Number:
			v = x.String()
		case nil:
		default:
			b, _ := json.Marshal(x)
			v = string(b)
		}
		if v != "" {
			out = append(out, "d."+k+"="+v)
		}
	}
	return out
}

func TestDetailParamsMatchDecoding(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		str := rapid.OneOf(rapid.String(), rapid.StringMatching(`[,:{}\[\]"\\a-z\x00-\x1f]{0,8}`))
		val := rapid.OneOf(
			rapid.Map(str, func(s string) any { return s }),
			rapid.Map(rapid.Int64(), func(n int64) any { return n }),
			rapid.Map(rapid.Float64(), func(f float64) any { return f }),
			rapid.Map(rapid.Bool(), func(b bool) any { return b }),
			rapid.Just[any](nil),
			rapid.Map(rapid.SliceOfN(str, 0, 3), func(s []string) any { return s }),
			rapid.Map(rapid.MapOfN(str, str, 0, 3), func(m map[string]string) any { return m }),
		)
		m := rapid.MapOfN(str, val, 1, 6).Draw(t, "details")
		raw, err := json.Marshal(m)
		if err != nil {
			t.Skip(err)
		}
		params, err := appendDetailParams(nil, string(raw))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		var got []string
		for _, p := range params {
			got = append(got, p.Name+"="+p.Value)
		}
		if want := detailParamsReference(t, string(raw)); !slices.Equal(got, want) {
			t.Fatalf("details %s:\n got %q\nwant %q", raw, got, want)
		}
	})
}

func TestDetailParamsErrors(t *testing.T) {
	for _, bad := range []string{`[1]`, `{"a":1`, `{"a" 1}`, `{"a":"x}`, `{a:1}`, `{"a":[1,2}`} {
		if _, err := appendDetailParams(nil, bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestHostileTextEscaped: NUL, terminal escapes and bidirectional overrides
// an endpoint put in its name, users or health reasons reach no syslog
// format raw.
func TestHostileTextEscaped(t *testing.T) {
	ev := schema.Event{Seq: 9, Time: time.Unix(1e9, 0), Type: schema.EventStatusChanged, Severity: schema.SeverityError,
		EndpointID: "ep\x00", EndpointName: "evil\x1b[2J", Reason: "reported health red: av\x00 off\u202etxt.exe\u2066",
		Details: &schema.HelloDetails{Users: []string{"eve\x1b]0;x\x07", "\u202e"}}}
	for _, f := range []Format{FormatCEF, FormatJSON, FormatRFC5424} {
		fm := &Formatter{Format: f, Hostname: "sensor"}
		b, err := fm.Append(nil, &ev, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range string(b) {
			if r != '\n' && safetext.Unsafe(r) {
				t.Errorf("format %v writes %U raw: %q", f, r, b)
			}
		}
		if !strings.Contains(string(b), `x1b`) || !strings.Contains(string(b), `u202e`) {
			t.Errorf("format %v: escapes not visible: %q", f, b)
		}
	}
}
