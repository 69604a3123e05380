package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/access"
)

func TestUserAndTokenCommands(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("correct horse battery\n"), 0o600)
	run := func(args ...string) (string, error) {
		app := newApp()
		var out, errOut bytes.Buffer
		app.Writer, app.ErrWriter = &out, &errOut
		err := app.Run(append([]string{"tapbeat"}, args...))
		return out.String(), err
	}
	if _, err := run("user", "add", "--dir", dir, "--name", "alice", "--role", "admin", "--password-file", pw); err != nil {
		t.Fatal(err)
	}
	if _, err := run("user", "add", "--dir", dir, "--name", "bob", "--role", "root", "--password-file", pw); err == nil ||
		!strings.Contains(err.Error(), "want admin or viewer") {
		t.Fatalf("bad role: %v", err)
	}
	out, err := run("user", "list", "--dir", dir)
	if err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "admin") {
		t.Fatalf("list: %v %q", err, out)
	}
	if _, err := access.Open(dir, access.Params{}).Authenticate("alice", []byte("correct horse battery")); err != nil {
		t.Fatalf("the password read from the file (its line ending dropped) does not log in: %v", err)
	}
	tok, err := run("token", "add", "--dir", dir, "--name", "siem", "--role", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	tok = strings.TrimSpace(tok)
	if got, err := access.Open(dir, access.Params{}).CheckToken(tok); err != nil || got.Name != "siem" {
		t.Fatalf("printed token does not authenticate: %v", err)
	}
	if _, err := run("user", "remove", "--dir", dir, "--name", "alice"); err != nil {
		t.Fatal(err)
	}
	if out, _ := run("user", "list", "--dir", dir); strings.Contains(out, "alice") {
		t.Fatalf("alice still listed: %q", out)
	}
}
