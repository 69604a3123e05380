package alert

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// RELP to rsyslog's imrelp: every message acknowledged, fields intact.
func TestRsyslogRELP(t *testing.T) {
	r := startRsyslogWith(t, nil, true)
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{
		mustDest(t, fmt.Sprintf("relp://127.0.0.1:%d?format=cef", r.RELP))}}, DispatcherOptions{Version: "1.2|3"})
	evs := testEvents(1, 300)
	stage(t, db, run.ob, evs)
	ps := waitSeqs(t, r, seqs(evs), 10*time.Second)
	events := byEvent(evs)
	for _, p := range ps {
		checkFields(t, p, events[p.seq])
		checkCEF(t, *p.m.Message, events[p.seq])
	}
	// With acknowledgements the cursor needs no confirm delay.
	waitFor(t, 2*time.Second, "cursor at 300", func() bool { return run.dp.Stats()[0].Cursor == 300 })
}

// Kill the RELP collector, raise 1,000 alerts, restart it: every sequence
// id arrives.
func TestRsyslogRELPKilledAndRestarted(t *testing.T) {
	r := startRsyslogWith(t, nil, true)
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{
		mustDest(t, fmt.Sprintf("relp://127.0.0.1:%d", r.RELP))}}, DispatcherOptions{})
	before := testEvents(1, 10)
	stage(t, db, run.ob, before)
	waitSeqs(t, r, seqs(before), 10*time.Second)
	r.kill()
	evs := testEvents(11, 1000)
	for i := 0; i < len(evs); i += 100 {
		stage(t, db, run.ob, evs[i:i+100])
	}
	time.Sleep(200 * time.Millisecond)
	if c := run.dp.Stats()[0].Cursor; c > 10 {
		t.Fatalf("cursor advanced to %d without acknowledgements", c)
	}
	r.start()
	waitSeqs(t, r, append(seqs(before), seqs(evs)...), 20*time.Second)
}

// A peer that is not a RELP server is reported as such.
func TestRELPOpenRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("1 rsp 17 500 not supported\n"))
			}()
		}
	}()
	d := mustDest(t, "relp://"+l.Addr().String())
	_, err = dial(t.Context(), &d)
	if err == nil || !strings.Contains(err.Error(), "RELP open refused") || !strings.Contains(err.Error(), "500 not supported") {
		t.Fatalf("dial: %v", err)
	}
}

func TestRELPFrames(t *testing.T) {
	in := "7 rsp 6 200 OK\n8 rsp 0\n0 serverclose 0\n9 rsp 3 2\n\n\n"
	r := bufio.NewReader(strings.NewReader(in))
	for _, want := range []string{"7 rsp 200 OK", "8 rsp ", "0 serverclose ", "9 rsp 2\n\n"} {
		txnr, cmd, data, err := readRELPFrame(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%d %s %s", txnr, cmd, data); got != want {
			t.Errorf("frame %q, want %q", got, want)
		}
	}
	for _, bad := range []string{"x rsp 0\n", "1 rsp 5 200\n", "1 rsp 3 200X", "1 rsp -1\n", "1 rsp 3\n",
		// A sign, an empty or non-alphabetic command, an over-long number.
		"-1 rsp 0\n", "+1 rsp 0\n", "1  0\n", "1 rs1 0\n", "1 rsp +0\n", "1234567890 rsp 0\n"} {
		if _, _, _, err := readRELPFrame(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if got := string(appendRELP(nil, 3, "syslog", []byte("a\nb"))); got != "3 syslog 3 a\nb\n" {
		t.Errorf("frame %q", got)
	}
}

// RELP over TLS to imrelp with tls="on": the collector's certificate is
// verified and every message acknowledged.
func TestRsyslogRELPOverTLS(t *testing.T) {
	c := newCerts(t, t.TempDir(), "")
	r := startRsyslogWith(t, &rsyslogTLS{certs: c, authMode: "anon"}, true)
	db := testDB(t, t.TempDir())
	u := fmt.Sprintf("relp+tls://127.0.0.1:%d?ca=%s&cert=%s&key=%s", r.RELP, url.QueryEscape(c.CA), url.QueryEscape(c.ClientCert), url.QueryEscape(c.ClientKey))
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{mustDest(t, u)}}, DispatcherOptions{})
	evs := testEvents(1, 50)
	stage(t, db, run.ob, evs)
	ps := waitSeqs(t, r, seqs(evs), 10*time.Second)
	events := byEvent(evs)
	for _, p := range ps {
		checkFields(t, p, events[p.seq])
	}
	waitFor(t, 2*time.Second, "cursor at 50", func() bool { return run.dp.Stats()[0].Cursor == 50 })

	noCert := mustDest(t, fmt.Sprintf("relp+tls://127.0.0.1:%d?ca=%s&timeout=2s", r.RELP, url.QueryEscape(c.CA)))
	if err := Send(t.Context(), noCert, evs[:1], "test"); err == nil || !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("RELP over TLS without a client certificate: %v", err)
	}
}
