package alert

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/tapbeat/tapbeat/sensor"
)

func TestFormatterBodies(t *testing.T) {
	ev := testEvents(7, 1)[0]
	ev.Details["big"] = json.Number("18446744073709551615")
	ev.Details["list"] = []any{"a", "b"}
	for _, format := range []Format{FormatRFC5424, FormatCEF, FormatJSON} {
		f := Formatter{Format: format, Facility: 16, Hostname: "sensor-1", ProcID: "9", Version: "1.2|3"}
		b, err := f.Append(nil, &ev)
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
			var got sensor.Event
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
	ev := sensor.Event{Seq: 1, Type: "future_type", Severity: sensor.SeverityNotice}
	for _, format := range []Format{FormatRFC5424, FormatCEF, FormatJSON} {
		f := Formatter{Format: format}
		b, err := f.Append(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		m, err := rfc5424.NewParser().Parse(b)
		if err != nil {
			t.Fatalf("%s: %v: %q", format, err, b)
		}
		if format == FormatCEF {
			hdr, _, err := parseCEF(*m.(*rfc5424.SyslogMessage).Message)
			if err != nil || hdr[4] != "tapbeat:future_type" || hdr[3] != "dev" {
				t.Errorf("cef %q: %v", hdr, err)
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
				buf, _ = f.Append(buf[:0], &ev)
			}
		})
	}
}
