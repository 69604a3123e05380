package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// TestAdminAPILimits: idle connections beyond the cap are closed at once,
// a refused certificate raises auth_failed, and an admin still gets answers
// once the idle ones are gone.
func TestAdminAPILimits(t *testing.T) {
	s, eng := fixture(t)
	org := newPKI(t, "acme CA")
	stranger := newPKI(t, "other CA")
	serverCert := org.issue("sensor", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	admin := org.issue("admin-1", x509.ExtKeyUsageClientAuth)
	foreign := stranger.issue("admin-1", x509.ExtKeyUsageClientAuth)
	var mu sync.Mutex
	var events []schema.Event
	srv := NewServer(s, eng, nil)
	srv.SetLimits(Limits{MaxConns: 8, PerSource: 4, SourceBurst: 100, HandshakeTimeout: 500 * time.Millisecond,
		Record: func(ev schema.Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.ServeTLS(ctx, ln, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{serverCert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: org.pool})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	find := func(want string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			if ev.Type == schema.EventAuthFailed && strings.Contains(ev.Reason, want) {
				return true
			}
		}
		return false
	}
	// Idle connections from one address: past PerSource they are closed at once.
	var idle []net.Conn
	for range 6 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	closedAtOnce := 0
	for _, c := range idle[4:] {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closedAtOnce++
		}
	}
	if closedAtOnce != 2 {
		t.Fatalf("%d of the 2 connections past the per-source cap were closed at once", closedAtOnce)
	}
	// The ones holding a slot without a handshake are cut at the deadline.
	for _, c := range idle[:4] {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); isTimeout(err) {
			t.Fatal("a silent connection outlived the handshake deadline")
		}
		c.Close()
	}
	// A certificate from another authority: refused and named.
	qctx, qcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer qcancel()
	url := "https://" + ln.Addr().String()
	f, _ := NewTLSClient(url, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: org.pool, Certificates: []tls.Certificate{foreign}, ServerName: "127.0.0.1"})
	defer f.Close()
	if _, err := f.Endpoints(qctx); err == nil {
		t.Fatal("a certificate from another authority was accepted")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !find("TLS handshake failed") || !find("connections from this address") {
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("auth_failed events missing: %+v", events)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, _ := NewTLSClient(url, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: org.pool, Certificates: []tls.Certificate{admin}, ServerName: "127.0.0.1"})
	defer c.Close()
	if _, err := c.Endpoints(qctx); err != nil {
		t.Fatalf("admin refused after the flood: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
