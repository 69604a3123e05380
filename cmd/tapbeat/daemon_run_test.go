package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunAndEnrollRemotely runs the daemon (LAN zone only, no capture) with
// the admin API, enrolls and revokes an endpoint through it as an
// administrator elsewhere would, then stops the daemon with its context.
func TestRunAndEnrollRemotely(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sensor")
	if out, err := runApp(t, "init", "--dir", dir, "--org", "acme", "--lan", "127.0.0.1"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	admin := filepath.Join(t.TempDir(), "alice.admin.json")
	if out, err := runApp(t, "enroll", "--dir", dir, "--admin", "--name", "alice", "--out", admin); err != nil {
		t.Fatalf("enroll --admin: %v\n%s", err, out)
	}
	adminAddr := freeAddr(t)
	startDaemon(t, "--dir", dir, "--listen", freeAddr(t), "--admin-listen", adminAddr, "--api", filepath.Join(dir, "api.sock"))
	url := "https://" + adminAddr
	bundle := filepath.Join(t.TempDir(), "laptop-9.bundle.json")
	var out string
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err = runApp(t, "enroll", "--server", url, "--bundle", admin, "--name", "laptop-9", "--out", bundle)
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("remote enroll: %v\n%s", err, out)
	}
	if fi, err := os.Stat(bundle); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bundle %s: %v (mode %v), want mode 0600", bundle, err, fi.Mode())
	}
	listed, err := runApp(t, "endpoints", "--dir", dir)
	if err != nil || !strings.Contains(listed, "laptop-9") {
		t.Fatalf("enrolled remotely but not listed: %v\n%s", err, listed)
	}
	if out, err := runApp(t, "revoke", "--server", url, "--bundle", admin, "--name", "laptop-9"); err != nil || !strings.Contains(out, "revoked laptop-9") {
		t.Fatalf("remote revoke: %v\n%s", err, out)
	}
	// Without the administrator bundle nothing is enrolled.
	if _, err := runApp(t, "enroll", "--server", url, "--name", "x"); err == nil {
		t.Error("remote enroll without a bundle succeeded")
	}
}

// startDaemon runs `tapbeat run ARGS...` in this process until the test
// ends, then stops it through its context and checks that it stopped
// cleanly.
func startDaemon(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	done := make(chan error, 1)
	app := newApp()
	app.Writer, app.ErrWriter = &bytes.Buffer{}, &logs
	// The command-line library keeps its help and version flags in
	// package variables and writes to them while parsing: other command
	// lines run only once the daemon's has been parsed.
	parsed := make(chan struct{})
	run := app.Command("run")
	before := run.Before
	run.Before = func(c *cli.Context) error {
		close(parsed)
		if before != nil {
			return before(c)
		}
		return nil
	}
	go func() { done <- app.RunContext(ctx, append([]string{"tapbeat", "run"}, args...)) }()
	select {
	case <-parsed:
	case err := <-done:
		cancel()
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v\n%s", err, logs.String())
			}
		case <-time.After(20 * time.Second):
			t.Error("the daemon did not stop within 20s of its context ending")
		}
	})
}
