package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/fleet"
)

// The commands that build a fleet: the first sensor's fleet address, a
// join file for a second one (0600), the second sensor's directory, and
// the refusals a careless operator meets.
func TestFleetCommands(t *testing.T) {
	base := t.TempDir()
	d1, d2 := filepath.Join(base, "d1"), filepath.Join(base, "d2")
	if _, err := runApp(t, "init", "--dir", d1, "--org", "Acme Corp", "--lan", "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(base, "s2.fleet.json")
	if _, err := runApp(t, "fleet", "add", "--dir", d1, "--name", "s2", "--lan", "10.0.1.2", "--fleet-addr", "10.0.1.2:7422", "--out", out); err == nil ||
		!strings.Contains(err.Error(), "has no fleet address") {
		t.Fatalf("fleet add before the first sensor has a fleet address: %v", err)
	}
	if _, err := runApp(t, "config", "set", "--dir", d1, "--fleet-name", "s1", "fleet-addr", "10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if _, err := runApp(t, "fleet", "add", "--dir", d1, "--name", "s2", "--lan", "10.0.1.2", "--fleet-addr", "10.0.1.2:7422", "--out", out); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("join file: %v %v, want mode 0600", st, err)
	}
	if _, err := runApp(t, "fleet", "add", "--dir", d1, "--name", "s3", "--lan", "10.0.2.2", "--fleet-addr", "10.0.1.2:7422", "--out", out+"3"); err == nil ||
		!strings.Contains(err.Error(), "already a fleet address") {
		t.Fatalf("a second sensor on the same fleet address: %v", err)
	}
	c1, err := fleet.Load(d1)
	if err != nil || c1.Name != "s1" || c1.Addr != "10.0.0.2:7422" || len(c1.Peers) != 1 || c1.Peers[0] != "10.0.1.2:7422" {
		t.Fatalf("first sensor's [fleet]: %+v %v", c1, err)
	}
	if _, err := runApp(t, "init", "--dir", d2, "--join", out, "--org", "Other Corp"); err == nil || !strings.Contains(err.Error(), "its own organisation") {
		t.Fatalf("join with another --org: %v", err)
	}
	if _, err := runApp(t, "init", "--dir", d2, "--join", out); err != nil {
		t.Fatal(err)
	}
	c2, err := fleet.Load(d2)
	if err != nil || c2.Name != "s2" || c2.Addr != "10.0.1.2:7422" || len(c2.Peers) != 1 || c2.Peers[0] != c1.Addr {
		t.Fatalf("joined sensor's [fleet]: %+v %v", c2, err)
	}
	z, err := config.Load(d2)
	if err != nil || len(z.Addresses) != 1 || z.Addresses[0] != "10.0.1.2" {
		t.Fatalf("joined sensor's [lanzone]: %+v %v", z, err)
	}
	// Agents pin the LAN-zone key: the same on both sensors.
	p1, _ := pki.ServerPin(d1)
	p2, err := pki.ServerPin(d2)
	if err != nil || p1 != p2 {
		t.Fatalf("pins %q and %q (%v): the fleet shares one LAN-zone key", p1, p2, err)
	}
	// The daemon accepts the configuration it will run with.
	if _, err := runApp(t, "config", "check", "--dir", d2); err != nil {
		t.Fatalf("config check of the joined sensor: %v", err)
	}
	// A file that is not a join file says so.
	bogus := filepath.Join(base, "bogus.json")
	os.WriteFile(bogus, []byte(`{"format":"tapbeat-bundle-1"}`), 0o600)
	if _, err := runApp(t, "init", "--dir", filepath.Join(base, "d3"), "--join", bogus); err == nil || !strings.Contains(err.Error(), "not a tapbeat fleet join file") {
		t.Fatalf("join with a bundle: %v", err)
	}
}
