package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestLANZoneFollowsTheManagementAddress: a LAN zone the first boot set up
// follows a new DHCP address (the sensor's certificate is re-issued for
// it); one set up by hand does not.
func TestLANZoneFollowsTheManagementAddress(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tapbeat")
	build := exec.Command("go", "build", "-o", bin, "../../../cmd/tapbeat")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tapbeat: %v\n%s", err, out)
	}
	a := &appliance{log: slog.New(slog.NewTextHandler(io.Discard, nil)), console: &lockedWriter{}, tapbeatBin: bin}
	ctx := context.Background()
	sans := func(dir string) []netip.Addr {
		t.Helper()
		raw, err := os.ReadFile(filepath.Join(dir, "server.crt"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(raw)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.Addr
		for _, ip := range c.IPAddresses {
			ad, _ := netip.AddrFromSlice(ip)
			out = append(out, ad.Unmap())
		}
		return out
	}
	initDir := func() string {
		dir := filepath.Join(t.TempDir(), "data")
		if out, err := a.tapbeat(ctx, "init", "--dir", dir, "--org", "Example Corp", "--lan", "10.0.2.15"); err != nil {
			t.Fatalf("init: %v\n%s", err, out)
		}
		return dir
	}
	old, moved := netip.MustParseAddr("10.0.2.15"), netip.MustParseAddr("10.0.2.16")

	auto := initDir()
	if err := os.WriteFile(filepath.Join(auto, lanFollowsMgmt), []byte("10.0.2.15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.followAddress(ctx, auto, old)
	if got := sans(auto); !slices.Equal(got, []netip.Addr{old}) {
		t.Fatalf("same address: certificate for %v, want %v", got, old)
	}
	a.followAddress(ctx, auto, moved)
	if got := sans(auto); !slices.Equal(got, []netip.Addr{moved}) {
		t.Fatalf("after the address moved: certificate for %v, want %v (notices: %q)", got, moved, a.notices)
	}
	if b, _ := os.ReadFile(filepath.Join(auto, lanFollowsMgmt)); string(b) != "10.0.2.16\n" {
		t.Errorf("%s holds %q after the move", lanFollowsMgmt, b)
	}

	manual := initDir()
	a.followAddress(ctx, manual, moved)
	if got := sans(manual); !slices.Equal(got, []netip.Addr{old}) {
		t.Fatalf("a LAN zone set up by hand changed to %v", got)
	}
}
