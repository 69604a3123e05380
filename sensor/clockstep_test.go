package sensor

import (
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// runStepped plays an endpoint that sends every second and heartbeats every
// 15 s while beating says so, with the sensor's wall clock jumping by step
// at second 31, between two heartbeats. report says whether the correlator
// is told of the jump.
func runStepped(t *testing.T, step time.Duration, report bool, beating func(sec int) bool, until int) *harness {
	t.Helper()
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, mac)
	for s := 1; s <= until; s++ {
		wall := t0.Add(time.Duration(s) * time.Second)
		if s >= 31 {
			wall = wall.Add(step)
		}
		h.clock.Set(wall)
		if s == 31 && report {
			h.add(h.c.ClockStepped(step))
		}
		if s%15 == 0 && beating(s) {
			h.heartbeat("e1", schema.HealthGreen)
		}
		h.traffic(mac)
		h.tick()
	}
	return h
}

func TestClockStepForwardRaisesNoFalseMissing(t *testing.T) {
	always := func(int) bool { return true }
	// Unreported, the jump makes the last heartbeat look an hour old.
	if h := runStepped(t, time.Hour, false, always, 120); len(h.ofType(schema.EventHeartbeatMissing)) == 0 {
		t.Fatal("an unreported forward jump raised no missing verdict: the test shows nothing")
	}
	h := runStepped(t, time.Hour, true, always, 120)
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
		t.Errorf("forward jump reported: %d missing verdicts, first %q", len(m), m[0].Reason)
	}
	if st := h.status("e1"); st != schema.StatusGreen {
		t.Errorf("status %s, want green", st)
	}
	steps := h.ofType(schema.EventClockStepped)
	if len(steps) != 1 || steps[0].Severity != schema.SeverityWarning || details[schema.ClockSteppedDetails](steps[0]).StepSeconds != 3600.0 {
		t.Fatalf("clock_stepped events %+v, want one warning with step_seconds 3600", steps)
	}
	t.Logf("%s", steps[0].Reason)
}

func TestClockStepBackwardKeepsMissingOnTime(t *testing.T) {
	// The last heartbeat is at second 45, on the new clock.
	until45 := func(s int) bool { return s <= 45 }
	// Unreported, the sensor's start now lies an hour ahead: no verdict for
	// as long.
	if h := runStepped(t, -time.Hour, false, until45, 120); len(h.ofType(schema.EventHeartbeatMissing)) != 0 {
		t.Fatal("an unreported backward jump still gave a missing verdict: the test shows nothing")
	}
	h := runStepped(t, -time.Hour, true, until45, 120)
	m := h.ofType(schema.EventHeartbeatMissing)
	if len(m) != 1 {
		t.Fatalf("backward jump reported: %d missing verdicts, want 1", len(m))
	}
	if at := m[0].Time.Sub(t0.Add(-time.Hour)); at != 90*time.Second {
		t.Errorf("missing at second %v, want 90 (three intervals after the last heartbeat at 45)", at.Seconds())
	}
}

func TestStepWatch(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var w StepWatch
	for _, c := range []struct {
		name string
		wall time.Time
		mono time.Duration
		want time.Duration
	}{
		{"first observation", base, 0, 0},
		{"both clocks move a second", base.Add(time.Second), time.Second, 0},
		{"slewing: 500 µs apart", base.Add(2*time.Second + 500*time.Microsecond), 2 * time.Second, 500 * time.Microsecond},
		{"set an hour ahead", base.Add(time.Hour + 3*time.Second + 500*time.Microsecond), 3 * time.Second, time.Hour},
		{"set back ten minutes", base.Add(50*time.Minute + 4*time.Second + 500*time.Microsecond), 4 * time.Second, -10 * time.Minute},
	} {
		if got := w.Observe(c.wall, c.mono); got != c.want {
			t.Errorf("%s: step %v, want %v", c.name, got, c.want)
		}
	}
}
