package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestSaveKeepsOtherTables(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(Path(dir), []byte("[history]\nretention_days = 90\n\n[lanzone]\naddresses = [\"10.0.0.2\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	z, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if z.Port != DefaultPort || z.HeartbeatInterval != DefaultInterval || z.Addresses[0] != "10.0.0.2" {
		t.Fatalf("load: %+v", z)
	}
	z.Addresses = []string{"10.0.0.3", "10.0.0.4"}
	z.HeartbeatInterval = 5 * time.Second
	if err := Save(dir, z); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(Path(dir))
	if !strings.Contains(string(raw), "retention_days = 90") {
		t.Fatalf("other table lost:\n%s", raw)
	}
	z2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(z2.Addresses, ",") != "10.0.0.3,10.0.0.4" || z2.HeartbeatInterval != 5*time.Second {
		t.Fatalf("reload: %+v", z2)
	}
	if got := z2.AddrPorts(); got[1] != "10.0.0.4:8347" {
		t.Fatalf("addrports %v", got)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "tapbeat init") {
		t.Fatalf("missing file: %v", err)
	}
	os.WriteFile(Path(dir), []byte("[lanzone]\naddresses = [\"not-an-ip\"]\nheartbeat_interval = \"10ms\"\n"), 0o644)
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "not an IP") || !strings.Contains(err.Error(), "heartbeat_interval") {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := ParseAddresses("10.0.0.1, ,x"); err == nil {
		t.Fatal("bad list accepted")
	}
}
