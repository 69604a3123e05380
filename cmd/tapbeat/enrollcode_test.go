package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	codeLine = regexp.MustCompile(`code: (\S+)`)
	pinLine  = regexp.MustCompile(`pin:\s+(sha256/\S+)`)
)

// TestEnrollWithCodeFromWorkstation enrolls the first administrator with a
// one-time code and the sensor's pin, as from a workstation facing a new
// appliance, then has that administrator issue an endpoint's code.
func TestEnrollWithCodeFromWorkstation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sensor")
	if out, err := runApp(t, "init", "--dir", dir, "--org", "acme", "--lan", "127.0.0.1"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	out, err := runApp(t, "enroll-code", "--dir", dir, "--admin")
	if err != nil {
		t.Fatalf("enroll-code: %v\n%s", err, out)
	}
	code, pin := codeLine.FindStringSubmatch(out), pinLine.FindStringSubmatch(out)
	if code == nil || pin == nil {
		t.Fatalf("enroll-code printed no code or pin:\n%s", out)
	}
	other := filepath.Join(t.TempDir(), "other")
	if out, err := runApp(t, "init", "--dir", other, "--org", "evil", "--lan", "127.0.0.1"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	otherOut, err := runApp(t, "enroll-code", "--dir", other)
	if err != nil {
		t.Fatal(err)
	}
	wrongPin := pinLine.FindStringSubmatch(otherOut)[1]

	adminAddr := freeAddr(t)
	startDaemon(t, "--dir", dir, "--listen", freeAddr(t), "--admin-listen", adminAddr, "--api", filepath.Join(dir, "api.sock"))
	url := "https://" + adminAddr
	alice := filepath.Join(t.TempDir(), "alice.admin.json")

	// A wrong pin is refused before the code is sent (and the daemon may
	// still be starting: retry until it answers).
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out, err = runApp(t, "enroll", "--admin", "--server", url, "--pin", wrongPin, "--code", code[1], "--name", "alice", "--out", alice)
		if err != nil && strings.Contains(err.Error(), "does not match") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enroll with a wrong pin: %v\n%s", err, out)
		}
	}
	if out, err := runApp(t, "enroll", "--admin", "--server", url, "--pin", pin[1], "--code", code[1], "--name", "alice", "--out", alice); err != nil || !strings.Contains(out, "enrolled administrator alice") {
		t.Fatalf("enroll with the code: %v\n%s", err, out)
	}
	if _, err := runApp(t, "enroll", "--admin", "--server", url, "--pin", pin[1], "--code", code[1], "--name", "eve", "--out", filepath.Join(t.TempDir(), "eve.json")); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second use of the code: %v", err)
	}

	// The new administrator (known to the admin API within a second)
	// issues an endpoint's code.
	var codeOut string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		codeOut, err = runApp(t, "enroll-code", "--server", url, "--bundle", alice)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enroll-code as alice: %v", err)
		}
	}
	web1 := filepath.Join(t.TempDir(), "web1.bundle.json")
	if out, err := runApp(t, "enroll", "--server", url, "--pin", pin[1], "--code", codeLine.FindStringSubmatch(codeOut)[1], "--name", "web1", "--out", web1); err != nil || !strings.Contains(out, "enrolled endpoint web1") {
		t.Fatalf("enroll web1 with alice's code: %v\n%s", err, out)
	}
	if listed, err := runApp(t, "endpoints", "--dir", dir); err != nil || !strings.Contains(listed, "web1") {
		t.Fatalf("endpoints after code enrollments: %v\n%s", err, listed)
	}
}
