package pki

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEnrollmentCodeIsSingleUseAndExpires(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	code, err := IssueCode(dir, true, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != 23 || strings.Count(code, "-") != 3 {
		t.Fatalf("code %q: want XXXXX-XXXXX-XXXXX-XXXXX", code)
	}
	// Typed in lower case without dashes, it is the same code.
	admin, err := RedeemCode(dir, strings.ToLower(strings.ReplaceAll(code, "-", "")), now.Add(time.Minute))
	if err != nil || !admin {
		t.Fatalf("first use: admin %v, err %v", admin, err)
	}
	if _, err := RedeemCode(dir, code, now.Add(2*time.Minute)); !errors.Is(err, ErrBadCode) {
		t.Fatalf("second use: %v, want ErrBadCode", err)
	}

	old, err := IssueCode(dir, false, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RedeemCode(dir, old, now.Add(CodeValidity)); !errors.Is(err, ErrBadCode) {
		t.Fatalf("after an hour: %v, want ErrBadCode", err)
	}
	fresh, err := IssueCode(dir, false, now)
	if err != nil {
		t.Fatal(err)
	}
	if admin, err := RedeemCode(dir, fresh, now.Add(CodeValidity-time.Second)); err != nil || admin {
		t.Fatalf("endpoint code within the hour: admin %v, err %v", admin, err)
	}
}

func TestEnrollmentCodeGuessingIsLimited(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	code, err := IssueCode(dir, true, now)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < CodeFailures; i++ {
		if _, err := RedeemCode(dir, "AAAAA-AAAAA-AAAAA-AAAAA", now.Add(time.Duration(i)*time.Second)); !errors.Is(err, ErrBadCode) {
			t.Fatalf("guess %d: %v, want ErrBadCode", i, err)
		}
	}
	// Even the right code waits until the window has passed.
	if _, err := RedeemCode(dir, code, now.Add(10*time.Second)); !errors.Is(err, ErrCodeAttempts) {
		t.Fatalf("after %d wrong codes: %v, want ErrCodeAttempts", CodeFailures, err)
	}
	if _, err := RedeemCode(dir, code, now.Add(CodeFailureWindow+5*time.Second)); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestFirstAdminCodeOnlyWithoutAdministrator(t *testing.T) {
	a := newAuthority(t)
	now := time.Now()
	if _, err := IssueFirstAdminCode(a.Dir(), now); err != nil {
		t.Fatalf("no administrator yet: %v", err)
	}
	if _, err := a.Enroll("web1", EnrollOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := IssueFirstAdminCode(a.Dir(), now); err != nil {
		t.Fatalf("an endpoint is no administrator: %v", err)
	}
	if _, err := a.Enroll("alice", EnrollOptions{Admin: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := IssueFirstAdminCode(a.Dir(), now); !errors.Is(err, ErrAdminExists) {
		t.Fatalf("with an administrator: %v, want ErrAdminExists", err)
	}
}
