package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigSetThroughAdminAPI changes the heartbeat interval of a running
// sensor from elsewhere: the sensor writes its own file (here outside its
// state directory, given with --config) and applies it at once; a bad
// value is refused with a clear error and changes nothing.
func TestConfigSetThroughAdminAPI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sensor")
	if out, err := runApp(t, "init", "--dir", dir, "--org", "acme", "--lan", "127.0.0.1"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	admin := filepath.Join(t.TempDir(), "alice.admin.json")
	if out, err := runApp(t, "enroll", "--dir", dir, "--admin", "--name", "alice", "--out", admin); err != nil {
		t.Fatalf("enroll --admin: %v\n%s", err, out)
	}
	conf := filepath.Join(t.TempDir(), "elsewhere.toml")
	if err := os.Rename(filepath.Join(dir, "tapbeat.toml"), conf); err != nil {
		t.Fatal(err)
	}
	adminAddr := freeAddr(t)
	startDaemon(t, "--dir", dir, "--config", conf, "--listen", freeAddr(t), "--admin-listen", adminAddr, "--api", filepath.Join(dir, "api.sock"))
	url := "https://" + adminAddr
	var out string
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err = runApp(t, "config", "set", "--server", url, "--bundle", admin, "heartbeat-interval", "2s")
		if err == nil {
			break
		}
	}
	if err != nil || !strings.Contains(out, "heartbeat every 2s (applied by the sensor)") {
		t.Fatalf("config set through the admin API: %v\n%s", err, out)
	}
	b, err := os.ReadFile(conf)
	if err != nil || !strings.Contains(string(b), `heartbeat_interval = "2s"`) {
		t.Fatalf("the file given with --config was not updated: %v\n%s", err, b)
	}
	out, err = runApp(t, "config", "set", "--server", url, "--bundle", admin, "heartbeat-interval", "200ms")
	if err == nil || !strings.Contains(out+err.Error(), "between 1s and 1h") {
		t.Fatalf("a 200ms interval was not refused clearly: %v\n%s", err, out)
	}
	out, err = runApp(t, "config", "set", "--server", url, "--bundle", admin, "colour", "blue")
	if err == nil || !strings.Contains(out+err.Error(), `unknown key "colour"`) {
		t.Fatalf("an unknown key was not refused clearly: %v\n%s", err, out)
	}
	if b2, _ := os.ReadFile(conf); string(b2) != string(b) {
		t.Errorf("refused changes altered the file:\n%s", b2)
	}
	// Enrollment through the running sensor takes the LAN-zone addresses
	// from the configuration it runs with, not from DIR.
	bundle := filepath.Join(t.TempDir(), "laptop.bundle.json")
	if out, err := runApp(t, "enroll", "--server", url, "--bundle", admin, "--name", "laptop", "--out", bundle); err != nil {
		t.Fatalf("remote enroll with the configuration outside DIR: %v\n%s", err, out)
	}
	if raw, err := os.ReadFile(bundle); err != nil || !strings.Contains(string(raw), "127.0.0.1:8347") {
		t.Errorf("bundle without the LAN-zone address: %v\n%s", err, raw)
	}
}
