package alert

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// checkFields asserts that a received message carries ev's fields intact.
func checkFields(t *testing.T, p parsed, ev *schema.Event) {
	t.Helper()
	want := map[string]string{
		"seq": fmt.Sprint(ev.Seq), "type": string(ev.Type), "severity": ev.Severity.String(),
		"endpoint_id": ev.EndpointID, "endpoint_name": ev.EndpointName, "org": ev.Org,
		"macs": joinMACs(ev.MACs), "ips": joinIPs(ev.IPs),
		"status": string(ev.Status), "previous_status": string(ev.PreviousStatus), "reason": ev.Reason,
		"d.port": "445", "d.proto": "tcp", "d.rule_name": "no smb=yes",
	}
	for k, v := range want {
		if got := p.sd(k); got != v {
			t.Errorf("seq %d: %s = %q, want %q\nraw %q", ev.Seq, k, got, v, p.raw)
		}
	}
	if *p.m.Severity != uint8(ev.Severity) || *p.m.MsgID != string(ev.Type) || *p.m.Appname != AppName {
		t.Errorf("seq %d: header severity %d msgid %s app %s", ev.Seq, *p.m.Severity, *p.m.MsgID, *p.m.Appname)
	}
	if !p.m.Timestamp.Equal(ev.Time.Truncate(time.Microsecond)) {
		t.Errorf("seq %d: timestamp %v, want %v", ev.Seq, p.m.Timestamp, ev.Time.Truncate(time.Microsecond))
	}
	if i := strings.Index(p.raw, "T08:"); i < 0 || !strings.HasPrefix(p.raw[i+9:], ".") || p.raw[i+16] != 'Z' {
		t.Errorf("seq %d: timestamp not in microseconds: %q", ev.Seq, p.raw[:60])
	}
}

func byEvent(evs []schema.Event) map[uint64]*schema.Event {
	m := map[uint64]*schema.Event{}
	for i := range evs {
		m[evs[i].Seq] = &evs[i]
	}
	return m
}

// Several destinations with different formats and filters deliver to a
// real rsyslog over TCP; every message parses and keeps its fields, and a
// newline inside a field does not split a message.
func TestRsyslogTCPFormatsAndFilters(t *testing.T) {
	r := startRsyslog(t, nil)
	db := testDB(t, t.TempDir())
	addr := fmt.Sprintf("127.0.0.1:%d", r.TCP)
	dests := []Destination{
		mustDest(t, "tcp://"+addr+"?name=plain"),
		mustDest(t, "tcp://"+addr+"?name=cef&format=cef"),
		mustDest(t, "tcp://"+addr+"?name=json&format=json"),
		mustDest(t, "tcp://"+addr+"?name=errors&format=json&min_severity=error&types=heartbeat_missing,no_heartbeat"),
	}
	run := startDispatcher(t, db, OutboxOptions{Destinations: dests}, DispatcherOptions{Version: "1.2|3"})
	evs := testEvents(1, 40)
	// An info event no destination wants is never staged.
	info := schema.Event{Seq: 41, Time: evs[39].Time, Type: schema.EventEndpointHello, Severity: schema.SeverityInfo}
	stage(t, db, run.ob, append(evs, info))
	if n := run.ob.Len(); n != 40 {
		t.Errorf("outbox holds %d entries, want 40 (info events are not staged)", n)
	}
	var wantErrors int
	for _, ev := range evs {
		if ev.Severity.AtLeast(schema.SeverityError) && (ev.Type == schema.EventHeartbeatMissing || ev.Type == schema.EventNoHeartbeat) {
			wantErrors++
		}
	}
	want := 3*len(evs) + wantErrors
	deadline := time.Now().Add(10 * time.Second)
	var ps []parsed
	for time.Now().Before(deadline) {
		if ps = parseAll(t, r.messages()); len(ps) >= want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(ps) != want {
		t.Fatalf("received %d messages, want %d", len(ps), want)
	}
	events := byEvent(evs)
	counts := map[string]int{}
	for _, p := range ps {
		ev := events[p.seq]
		if ev == nil {
			t.Fatalf("unexpected sequence id %d", p.seq)
		}
		checkFields(t, p, ev)
		body := *p.m.Message
		switch {
		case strings.HasPrefix(body, "CEF:"):
			counts["cef"]++
			checkCEF(t, body, ev)
		case strings.HasPrefix(body, "{"):
			var got schema.Event
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("json body: %v\n%q", err, body)
			}
			var details struct {
				Details map[string]any `json:"details"`
			}
			if err := json.Unmarshal([]byte(body), &details); err != nil {
				t.Fatalf("json body: %v\n%q", err, body)
			}
			if got.Seq != ev.Seq || got.Reason != ev.Reason || !got.Time.Equal(ev.Time) || details.Details["rule name"] != "no smb=yes" {
				t.Errorf("json body lost fields: %+v", got)
			}
			if ev.Severity.AtLeast(schema.SeverityError) && (ev.Type == schema.EventHeartbeatMissing || ev.Type == schema.EventNoHeartbeat) {
				counts["json-or-errors"]++
			} else {
				counts["json"]++
			}
		default:
			counts["plain"]++
			if !strings.HasPrefix(body, string(ev.Type)+" endpoint ") || !strings.Contains(body, ev.Reason) {
				t.Errorf("summary body %q", body)
			}
		}
	}
	if counts["plain"] != 40 || counts["cef"] != 40 || counts["json"]+counts["json-or-errors"] != 40+wantErrors || counts["json-or-errors"] != 2*wantErrors {
		t.Errorf("per-format counts %v (errors filter wants %d)", counts, wantErrors)
	}
	// Once delivered everywhere, outbox entries are deleted.
	waitFor(t, 5*time.Second, "outbox emptied", func() bool {
		n, err := run.ob.committed()
		return err == nil && n == 0 && run.ob.Len() == 0
	})
	for _, st := range run.dp.Stats() {
		if st.Cursor != 40 {
			t.Errorf("%s cursor %d, want 40", st.Name, st.Cursor)
		}
	}
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkCEF parses a CEF:0 record and checks its fields against ev.
func checkCEF(t *testing.T, body string, ev *schema.Event) {
	t.Helper()
	hdr, ext, err := parseCEF(body)
	if err != nil {
		t.Fatalf("CEF %q: %v", body, err)
	}
	if hdr[0] != "CEF:0" || hdr[1] != "tapbeat" || hdr[2] != "tapbeat" || hdr[3] != "1.2|3" ||
		hdr[4] != SignatureID(ev.Type) || hdr[6] != fmt.Sprint(cefSeverity[ev.Severity]) {
		t.Errorf("CEF header %q", hdr)
	}
	if ext["externalId"] != fmt.Sprint(ev.Seq) || ext["reason"] != ev.Reason || ext["cs1"] != ev.EndpointID ||
		ext["cs2"] != ev.EndpointName || ext["smac"] != ev.MACs[0].String() || ext["src"] != "192.0.2.7" ||
		ext["rt"] != fmt.Sprint(ev.Time.UnixMilli()) || ext["cat"] != string(ev.Type) {
		t.Errorf("CEF extension %q", ext)
	}
	var details map[string]any
	if err := json.Unmarshal([]byte(ext["cs6"]), &details); err != nil || details["rule name"] != "no smb=yes" {
		t.Errorf("CEF cs6 %q: %v", ext["cs6"], err)
	}
	if ext["flexString1"] != joinMACs(ev.MACs) || ext["flexString2"] != joinIPs(ev.IPs) {
		t.Errorf("CEF flexString1/2 %q %q", ext["flexString1"], ext["flexString2"])
	}
}

// parseCEF splits a CEF record by the CEF rules: seven header fields
// separated by unescaped '|', then key=value pairs whose values escape
// '\', '=' and newlines.
func parseCEF(s string) ([]string, map[string]string, error) {
	var hdr []string
	var cur strings.Builder
	i := 0
	for ; i < len(s) && len(hdr) < 7; i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '|':
			hdr = append(hdr, cur.String())
			cur.Reset()
		case c == '\n' || c == '\r':
			return nil, nil, fmt.Errorf("raw newline in header at %d", i)
		default:
			cur.WriteByte(c)
		}
	}
	if len(hdr) != 7 {
		return nil, nil, fmt.Errorf("%d header fields, want 7", len(hdr))
	}
	ext := map[string]string{}
	rest := s[i:]
	if strings.ContainsAny(rest, "\r\n") {
		return nil, nil, fmt.Errorf("raw newline in extension")
	}
	// Find unescaped '=': each is preceded by a key that starts after a space.
	type kv struct{ keyStart, eq int }
	var marks []kv
	for j := 0; j < len(rest); j++ {
		if rest[j] == '\\' {
			j++
			continue
		}
		if rest[j] == '=' {
			k := strings.LastIndexByte(rest[:j], ' ') + 1
			marks = append(marks, kv{k, j})
		}
	}
	for m, mk := range marks {
		end := len(rest)
		if m+1 < len(marks) {
			end = marks[m+1].keyStart - 1
		}
		key := rest[mk.keyStart:mk.eq]
		raw := rest[mk.eq+1 : end]
		var v strings.Builder
		for j := 0; j < len(raw); j++ {
			if raw[j] == '\\' && j+1 < len(raw) {
				j++
				switch raw[j] {
				case 'n':
					v.WriteByte('\n')
				case 'r':
					v.WriteByte('\r')
				default:
					v.WriteByte(raw[j])
				}
				continue
			}
			v.WriteByte(raw[j])
		}
		if _, dup := ext[key]; dup {
			return nil, nil, fmt.Errorf("key %s twice", key)
		}
		ext[key] = v.String()
	}
	return hdr, ext, nil
}

// UDP delivers to rsyslog's imudp (best effort: the test waits until
// rsyslog's UDP input is up before raising alerts).
func TestRsyslogUDP(t *testing.T) {
	r := startRsyslog(t, nil)
	c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", r.UDP))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, 10*time.Second, "rsyslog's UDP input", func() bool {
		c.Write([]byte(`<13>1 - - probe - - [meta sequenceId="999999"][tapbeat@32473 seq="0"] ready`))
		return len(r.messages()) > 0
	})
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{
		mustDest(t, fmt.Sprintf("udp://127.0.0.1:%d?format=cef", r.UDP))}}, DispatcherOptions{Version: "1.2|3"})
	evs := testEvents(1, 20)
	stage(t, db, run.ob, evs)
	ps := waitSeqs(t, r, seqs(evs), 10*time.Second)
	events := byEvent(evs)
	for _, p := range ps {
		if ev := events[p.seq]; ev != nil {
			checkFields(t, p, ev)
			checkCEF(t, *p.m.Message, ev)
		}
	}
}
