package access

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testParams = Params{Time: 1, MemoryKiB: 1024, Threads: 1}

func TestUsers(t *testing.T) {
	dir := t.TempDir()
	s := Open(dir, testParams)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if err := s.AddUser("alice", RoleAdmin, []byte("correct horse battery"), now); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser("alice", RoleViewer, []byte("another password"), now); err == nil {
		t.Fatal("a second account named alice was accepted")
	}
	if err := s.AddUser("bob", RoleViewer, []byte("short"), now); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("short password: %v", err)
	}
	if err := s.AddUser("<script>", RoleViewer, []byte("long enough password"), now); err == nil {
		t.Fatal("a name with markup was accepted")
	}
	if err := s.AddUser("carol", "root", []byte("long enough password"), now); err == nil {
		t.Fatal("an unknown role was accepted")
	}
	u, err := s.Authenticate("alice", []byte("correct horse battery"))
	if err != nil || u.Role != RoleAdmin {
		t.Fatalf("Authenticate = %+v, %v", u, err)
	}
	if _, err := s.Authenticate("alice", []byte("wrong horse battery")); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := s.Authenticate("mallory", []byte("correct horse battery")); !errors.Is(err, ErrBadPassword) {
		t.Fatalf("unknown account: %v", err)
	}
	// The file holds an argon2id hash, never the password, and is private.
	data, err := os.ReadFile(filepath.Join(dir, SubDir, UsersFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "correct horse") || !strings.Contains(string(data), "$argon2id$v=19$") {
		t.Fatalf("users file: %s", data)
	}
	if fi, _ := os.Stat(filepath.Join(dir, SubDir, UsersFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("users file mode %v", fi.Mode())
	}
	if err := s.SetPassword("alice", []byte("a new long password"), now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", []byte("correct horse battery")); err == nil {
		t.Fatal("old password still works")
	}
	// Another process's change is seen by a store that already cached the file.
	other := Open(dir, testParams)
	if err := other.RemoveUser("alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("alice", []byte("a new long password")); err == nil {
		t.Fatal("removed account still logs in")
	}
	if err := s.RemoveUser("alice"); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("remove twice: %v", err)
	}
}

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	s := Open(dir, testParams)
	tok, err := s.AddToken("siem", RoleViewer, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, TokenPrefix) || len(tok) < 40 {
		t.Fatalf("token %q", tok)
	}
	got, err := s.CheckToken(tok)
	if err != nil || got.Name != "siem" || got.Role != RoleViewer {
		t.Fatalf("CheckToken = %+v, %v", got, err)
	}
	if _, err := s.CheckToken(tok + "x"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("altered token: %v", err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, SubDir, TokensFile))
	if strings.Contains(string(data), tok[len(TokenPrefix):]) {
		t.Fatal("the token itself is stored")
	}
	if err := s.RemoveToken("siem"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckToken(tok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("removed token: %v", err)
	}
}
