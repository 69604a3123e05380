package alert

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

func tlsURL(port int, c certs, extra string) string {
	return fmt.Sprintf("tls://127.0.0.1:%d?ca=%s%s", port, url.QueryEscape(c.CA), extra)
}

// RFC 5425 to rsyslog's gtls driver, verifying the collector's certificate.
func TestRsyslogTLS(t *testing.T) {
	c := newCerts(t, t.TempDir(), "")
	r := startRsyslog(t, &rsyslogTLS{certs: c, authMode: "anon"})
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{
		mustDest(t, tlsURL(r.TCP, c, "")),
		mustDest(t, tlsURL(r.TCP, c, "&server_name=collector.test&format=json&name=byname")),
	}}, DispatcherOptions{})
	evs := testEvents(1, 30)
	stage(t, db, run.ob, evs)
	waitSeqs(t, r, seqs(evs), 10*time.Second)
	// Every id arrived through one destination; wait for the other's copy.
	var ps []parsed
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ps = parseAll(t, r.messages()); len(ps) >= 60 {
			break
		}
	}
	events := byEvent(evs)
	for _, p := range ps {
		checkFields(t, p, events[p.seq])
	}
	if len(ps) != 60 {
		t.Errorf("received %d messages, want 60 (30 through each destination)", len(ps))
	}
}

// A collector that requires a client certificate accepts the sensor's, and
// drops a client without one. That client's writes succeed at the socket
// level, yet its cursor must not advance.
func TestRsyslogMutualTLS(t *testing.T) {
	c := newCerts(t, t.TempDir(), "")
	r := startRsyslog(t, &rsyslogTLS{certs: c, authMode: "x509/certvalid"})
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{
		mustDest(t, tlsURL(r.TCP, c, "&name=mtls&cert="+url.QueryEscape(c.ClientCert)+"&key="+url.QueryEscape(c.ClientKey))),
		mustDest(t, tlsURL(r.TCP, c, "&name=nocert&confirm=300ms")),
	}}, DispatcherOptions{})
	evs := testEvents(1, 25)
	stage(t, db, run.ob, evs)
	waitSeqs(t, r, seqs(evs), 10*time.Second)
	waitFor(t, 5*time.Second, "the refused client's error", func() bool {
		return run.dp.Stats()[1].LastError != ""
	})
	time.Sleep(time.Second)
	st := run.dp.Stats()
	if st[0].Cursor != 25 {
		t.Errorf("mtls cursor %d, want 25", st[0].Cursor)
	}
	if st[1].Cursor != 0 || st[1].Delivered != 0 {
		t.Errorf("refused client's cursor advanced to %d (%d delivered): writes to a refusing collector are not deliveries", st[1].Cursor, st[1].Delivered)
	}
	if !strings.Contains(st[1].LastError, "client certificate") {
		t.Errorf("refused client's error %q does not point at the client certificate", st[1].LastError)
	}
	if n := len(parseAll(t, r.messages())); n != 25 {
		t.Errorf("rsyslog received %d messages, want 25 (only the mutual-TLS client's)", n)
	}
	if run.ob.Len() != 25 {
		t.Errorf("outbox holds %d, want 25 kept for the refused destination", run.ob.Len())
	}
}

// A collector whose certificate the sensor cannot verify is refused, with
// an error that names the problem.
func TestRsyslogWrongCertificate(t *testing.T) {
	dir := t.TempDir()
	good := newCerts(t, dir, "good-")
	rogue := newCerts(t, dir, "rogue-")
	r := startRsyslog(t, &rsyslogTLS{certs: rogue, authMode: "anon"})
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{
		mustDest(t, tlsURL(r.TCP, good, "&name=unknown-ca")),
		mustDest(t, tlsURL(r.TCP, rogue, "&name=wrong-name&server_name=siem.example")),
	}}, DispatcherOptions{})
	stage(t, db, run.ob, testEvents(1, 5))
	waitFor(t, 5*time.Second, "both destinations' errors", func() bool {
		st := run.dp.Stats()
		return st[0].LastError != "" && st[1].LastError != ""
	})
	st := run.dp.Stats()
	for i, want := range []string{"certificate signed by unknown authority", "not siem.example"} {
		if !strings.Contains(st[i].LastError, want) || !strings.Contains(st[i].LastError, "check ca=") {
			t.Errorf("%s: error %q does not name the problem (%q) and the fix", st[i].Name, st[i].LastError, want)
		}
		if st[i].Cursor != 0 || st[i].Connected {
			t.Errorf("%s: cursor %d connected %v with an unverified collector", st[i].Name, st[i].Cursor, st[i].Connected)
		}
	}
	if n := len(r.messages()); n != 0 {
		t.Errorf("rogue collector received %d messages", n)
	}
}
