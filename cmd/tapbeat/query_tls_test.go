package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/api"
)

// TestQueryOverAdminAPI runs the CLI against the mutual-TLS admin API with
// the authority's real server configuration: an administrator bundle is
// answered, an endpoint bundle is refused by the CLI, and a revoked
// administrator is refused by the server.
func TestQueryOverAdminAPI(t *testing.T) {
	dir := t.TempDir()
	s := writeHistory(t, dir, true)
	sensorDir := filepath.Join(dir, "sensor")
	if out, err := runApp(t, "init", "--dir", sensorDir, "--org", "acme", "--lan", "127.0.0.1"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	auth, err := pki.Open(sensorDir)
	if err != nil {
		t.Fatal(err)
	}
	adminBundle := filepath.Join(dir, "admin.json")
	b, err := auth.Enroll("admin-1", pki.EnrollOptions{Admin: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteFile(adminBundle); err != nil {
		t.Fatal(err)
	}
	epBundle := filepath.Join(dir, "laptop.json")
	b, err = auth.Enroll("laptop-a", pki.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteFile(epBundle); err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.AdminServerConfig(sensorDir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(s, nil, nil).ServeTLS(ctx, ln, cfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	url := "https://" + ln.Addr().String()
	out, err := runApp(t, "query", "who", "--server", url, "--bundle", adminBundle, "--ip", "10.9.0.5", "--at", "2026-11-17T09:00:00Z")
	if err != nil {
		t.Fatalf("admin query: %v", err)
	}
	if !strings.Contains(out, "laptop-a") || !strings.Contains(out, "alice") {
		t.Errorf("admin who:\n%s", out)
	}
	if _, err := runApp(t, "query", "endpoints", "--server", url, "--bundle", epBundle); err == nil || !strings.Contains(err.Error(), "endpoint bundle") {
		t.Errorf("endpoint bundle: %v", err)
	}
	if _, err := auth.Revoke("admin-1", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the trust store is re-read at most once a second
	if _, err := runApp(t, "query", "endpoints", "--server", url, "--bundle", adminBundle); err == nil {
		t.Error("a revoked administrator was answered")
	}
}
