package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// TestInstallDepsOnFreshDebian runs .ci/install-deps, the step `make demo`,
// `make test` and CI share, in a clean Debian 12 root: it must install what
// the lab needs, say so, and find nothing to do the second time.
func TestInstallDepsOnFreshDebian(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "debootstrap", "tar", "chroot")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root := debianRoot(ctx, t)
	script, err := os.ReadFile("../../.ci/install-deps")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "install-deps"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	tools := []string{"/usr/bin/ip", "/usr/sbin/tc", "/usr/sbin/ethtool", "/usr/bin/ping"}
	for _, p := range tools {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Fatalf("the clean root already has %s: the test proves nothing", p)
		}
	}
	run := func() string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "chroot", root, "/install-deps", "demo")
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install-deps demo: %v\n%s", err, out)
		}
		return string(out)
	}
	start := time.Now()
	out := run()
	t.Logf("install-deps demo took %v", time.Since(start).Round(100*time.Millisecond))
	if !strings.Contains(out, "install-deps: installing iproute2 ethtool iputils-ping") {
		t.Errorf("install-deps did not say what it installs:\n%s", out)
	}
	for _, p := range tools {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("after install-deps demo: %v", err)
		}
	}
	if again := run(); again != "" {
		t.Errorf("a second install-deps demo did something:\n%s", again)
	}
}
