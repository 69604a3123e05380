package agent

import (
	"context"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// TestAgentSaysGoodbye: an agent stopped on purpose tells a real LAN zone
// why, and the endpoint becomes stopped rather than merely disconnected; a
// restarted agent brings it back.
func TestAgentSaysGoodbye(t *testing.T) {
	dir, auth := newSensorDir(t)
	s := startSensor(t, dir, "127.0.0.1:0")
	b, err := auth.Enroll("ws-bye", pki.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	start := func() (context.CancelFunc, chan struct{}) {
		a, err := New(Config{Bundle: b, Sensors: []string{s.addr}, StateDir: state, Logger: quiet,
			StopReason: func() schema.GoodbyeReason { return StopReason(state) }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return cancel, done
	}
	stop, done := start()
	waitFor(t, "hello", 5*time.Second, func() bool {
		st, ok := endpoint(s.engine, b.ID)
		return ok && st.Connected && st.Status == schema.StatusGreen
	})
	if err := WriteStopReason(state, schema.GoodbyeUpgrade); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	waitFor(t, "stopped", 5*time.Second, func() bool {
		st, _ := endpoint(s.engine, b.ID)
		return !st.Connected && st.Status == schema.StatusStopped
	})
	if got := s.l.Stats().Ended; got["goodbye"] != 1 {
		t.Errorf("connections ended %v, want one goodbye", got)
	}
	if r, err := readStopReason(state + "/" + StopReasonFile); err == nil {
		t.Errorf("the stop reason %q was left for the next stop", r)
	}
	start()
	waitFor(t, "back", 5*time.Second, func() bool {
		st, _ := endpoint(s.engine, b.ID)
		return st.Connected && st.Status == schema.StatusGreen
	})
}

func TestStopReasonFile(t *testing.T) {
	dir := t.TempDir()
	if r := StopReason(dir); r != schema.GoodbyeStop && r != schema.GoodbyeShutdown {
		t.Errorf("no file: %q, want stop (or shutdown while this machine stops)", r)
	}
	if err := WriteStopReason(dir, "two words"); err == nil {
		t.Error("a reason with a space was accepted")
	}
	if err := WriteStopReason(dir, schema.GoodbyeShutdown); err != nil {
		t.Fatal(err)
	}
	if r := StopReason(dir); r != schema.GoodbyeShutdown {
		t.Errorf("reason %q, want shutdown", r)
	}
}
