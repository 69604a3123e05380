package supervise

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

func TestBackoff(t *testing.T) {
	min, max := time.Second, time.Minute
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := Backoff(i+1, min, max); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
}

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }
func (l *lines) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

func waitUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// script writes a shell script for the supervisor to run.
func script(t *testing.T, body string) string {
	t.Helper()
	testenv.RequireCommands(t, "sh")
	p := filepath.Join(t.TempDir(), "child.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRestartsWithBackoff: a child that fails at once is restarted with
// growing delays, and its output reaches Output.
func TestRestartsWithBackoff(t *testing.T) {
	var out lines
	s := &Supervisor{
		Path:   script(t, "echo \"attempt $$\"; echo oops >&2; exit 3\n"),
		Output: out.add, Log: slog.New(slog.DiscardHandler),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	waitUntil(t, "four failed runs", func() bool { st := s.State(); return st.Starts >= 4 && !st.Running })
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run = %v", err)
	}
	st := s.State()
	if st.Running || !strings.Contains(st.LastExit, "exit status 3") {
		t.Errorf("state after failures: %+v", st)
	}
	if got := strings.Count(out.all(), "oops"); got < 4 {
		t.Errorf("stderr lines seen %d, want >= 4:\n%s", got, out.all())
	}
}

// TestReadyAndStop: the ready line is noticed, and cancelling the context
// delivers SIGTERM, which the child handles before exiting.
func TestReadyAndStop(t *testing.T) {
	var out lines
	s := &Supervisor{
		Path:   script(t, "trap 'echo got TERM; exit 0' TERM\necho 'level=INFO msg=\"sensor ready\"'\nwhile :; do sleep 0.05; done\n"),
		Output: out.add,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	waitUntil(t, "ready", func() bool { return s.State().Ready })
	if st := s.State(); !st.Running || st.PID == 0 || st.Starts != 1 {
		t.Errorf("running state: %+v", st)
	}
	cancel()
	<-done
	if !strings.Contains(out.all(), "got TERM") {
		t.Errorf("child did not see SIGTERM:\n%s", out.all())
	}
	if st := s.State(); st.Running || st.Ready || st.LastExit != "exited cleanly" {
		t.Errorf("state after stop: %+v", st)
	}
}

// TestKillAfterTimeout: a child that ignores SIGTERM is killed after
// StopTimeout.
func TestKillAfterTimeout(t *testing.T) {
	s := &Supervisor{
		Path:        script(t, "trap '' TERM\necho started\nwhile :; do sleep 0.05; done\n"),
		StopTimeout: 200 * time.Millisecond,
	}
	var out lines
	s.Output = out.add
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	waitUntil(t, "start", func() bool { return strings.Contains(out.all(), "started") })
	start := time.Now()
	cancel()
	<-done
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("stopped after %v, before the timeout", took)
	}
	if st := s.State(); !strings.Contains(st.LastExit, "killed") {
		t.Errorf("LastExit = %q, want killed", st.LastExit)
	}
}

func TestMissingProgram(t *testing.T) {
	s := &Supervisor{Path: filepath.Join(t.TempDir(), "nope")}
	err := s.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Run = %v", err)
	}
}
