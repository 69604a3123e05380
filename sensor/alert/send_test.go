package alert

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestSend(t *testing.T) {
	c := newCerts(t, t.TempDir(), "")
	r := startRsyslog(t, &rsyslogTLS{certs: c, authMode: "x509/certvalid"})
	good := mustDest(t, tlsURL(r.TCP, c, "&confirm=300ms&cert="+url.QueryEscape(c.ClientCert)+"&key="+url.QueryEscape(c.ClientKey)))
	evs := testEvents(1, 3)
	if err := Send(t.Context(), good, evs, "test"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	waitSeqs(t, r, seqs(evs), 5*time.Second)

	noCert := mustDest(t, tlsURL(r.TCP, c, "&confirm=300ms"))
	err := Send(t.Context(), noCert, evs, "test")
	if err == nil || !strings.Contains(err.Error(), "not delivered") || !strings.Contains(err.Error(), "client certificate") {
		t.Errorf("Send without a client certificate: %v", err)
	}
	dead := mustDest(t, fmt.Sprintf("tcp://127.0.0.1:%d?timeout=1s", freePort(t, "tcp")))
	if err := Send(t.Context(), dead, evs, "test"); err == nil || !strings.Contains(err.Error(), "is the collector listening?") {
		t.Errorf("Send to a closed port: %v", err)
	}
}
