package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
)

func TestInitEnrollRevokeEndpoints(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sensor")
	out, err := runApp(t, "init", "--dir", dir, "--org", "Acme Corp", "--lan", "10.0.0.2,192.168.1.2")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "sha256/") {
		t.Fatalf("init output %q", out)
	}
	if _, err := runApp(t, "init", "--dir", dir, "--org", "Acme Corp", "--lan", "10.0.0.2"); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Fatalf("re-init: %v", err)
	}
	if _, err := runApp(t, "init", "--dir", t.TempDir(), "--org", "X", "--lan", "10.0.0.300"); err == nil || !strings.Contains(err.Error(), "not an IP") {
		t.Fatalf("bad address: %v", err)
	}

	bundle := filepath.Join(t.TempDir(), "ws1.json")
	if _, err := runApp(t, "enroll", "--dir", dir, "--name", "ws1.acme.example", "--out", bundle); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(bundle)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("bundle %v %v", st, err)
	}
	b, err := pki.ReadBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(b.Addresses, ",") != "10.0.0.2:8347,192.168.1.2:8347" || b.Org != "Acme Corp" || b.Admin {
		t.Fatalf("bundle %+v", b)
	}
	adminOut := filepath.Join(t.TempDir(), "admin.json")
	if _, err := runApp(t, "enroll", "--dir", dir, "--name", "alice", "--admin", "--out", adminOut); err != nil {
		t.Fatal(err)
	}
	if ab, err := pki.ReadBundle(adminOut); err != nil || !ab.Admin {
		t.Fatalf("admin bundle %+v %v", ab, err)
	}
	// The bundle path is taken: nothing is enrolled.
	if _, err := runApp(t, "enroll", "--dir", dir, "--name", "ws2", "--out", bundle); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("enroll over an existing file: %v", err)
	}

	out, err = runApp(t, "endpoints", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "ws1.acme.example") || !strings.Contains(out, "Acme Corp") || strings.Contains(out, "alice") || strings.Contains(out, "ws2") {
		t.Fatalf("endpoints table:\n%s", out)
	}
	out, err = runApp(t, "endpoints", "--dir", dir, "--format", "json", "--all")
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("endpoints json (%v):\n%s", err, out)
	}
	if _, err := runApp(t, "endpoints", "--dir", dir, "--format", "xml"); err == nil {
		t.Fatal("--format xml accepted")
	}

	if _, err := runApp(t, "revoke", "--dir", dir, "--name", "ws1.acme.example"); err != nil {
		t.Fatal(err)
	}
	out, _ = runApp(t, "endpoints", "--dir", dir)
	if strings.Contains(out, "ws1.acme.example") {
		t.Fatalf("revoked endpoint still listed:\n%s", out)
	}
	if _, err := runApp(t, "revoke", "--dir", dir, "--name", "nobody"); err == nil || !strings.Contains(err.Error(), "no enrolled endpoint") {
		t.Fatalf("revoke unknown: %v", err)
	}
}

func TestConfigSetLAN(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sensor")
	if _, err := runApp(t, "init", "--dir", dir, "--org", "Acme", "--lan", "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	pin, _ := pki.ServerPin(dir)
	if _, err := runApp(t, "config", "set", "--dir", dir, "lan", "10.0.0.3,10.0.0.4"); err != nil {
		t.Fatal(err)
	}
	z, err := config.Load(dir)
	if err != nil || strings.Join(z.Addresses, ",") != "10.0.0.3,10.0.0.4" {
		t.Fatalf("config %+v %v", z, err)
	}
	if p, _ := pki.ServerPin(dir); p != pin {
		t.Fatal("the sensor pin changed: every bundle would need replacing")
	}
	if _, err := runApp(t, "config", "set", "--dir", dir, "heartbeat-interval", "10ms"); err == nil {
		t.Fatal("10ms interval accepted")
	}
	if _, err := runApp(t, "config", "set", "--dir", dir, "colour", "blue"); err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("unknown key: %v", err)
	}
}
