package sensor

import (
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// runStall plays three endpoints that heartbeat and send every 100 ms-step
// second at interval 1 s, missing after 3, with the sensor not running from
// second 10.5 to 15.5: nothing is read, nothing ticks. At 15.5 the sensor
// runs again; report says whether the correlator is told of the stall
// before its first tick. The heartbeats sent meanwhile are read after that
// tick, as a real sensor reads its sockets after its ticker fires.
// dieAt stops e3's heartbeats (its MACs keep sending) from that second.
func runStall(t *testing.T, report bool, dieAt float64, until float64) *harness {
	t.Helper()
	h := newHarness(t, Config{HeartbeatInterval: time.Second, MissingAfter: 3})
	ids := []string{"e1", "e2", "e3"}
	macs := []string{"02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"}
	h.at(0)
	for i, id := range ids {
		h.hello(id, schema.HealthGreen, macs[i])
	}
	for ms := 100; float64(ms)/1000 <= until; ms += 100 {
		s := float64(ms) / 1000
		if s > 10.5 && s < 15.5 {
			continue // stopped
		}
		h.at(s)
		if s == 15.5 {
			if report {
				h.add(h.c.Stalled(5 * time.Second))
			}
			h.tick()
		}
		if ms%1000 == 0 || s == 15.5 {
			for i, id := range ids {
				h.traffic(macs[i])
				if id == "e3" && s >= dieAt {
					continue
				}
				h.heartbeat(id, schema.HealthGreen)
			}
			h.tick()
		}
	}
	return h
}

func TestStallIsNotSilence(t *testing.T) {
	// Unreported, the stall looks like 5 s of silence from everyone: the
	// endpoints are judged offline (their traffic was not read either).
	if h := runStall(t, false, 1e9, 30); len(h.ofType(schema.EventStatusChanged))+len(h.ofType(schema.EventHeartbeatMissing)) == 0 {
		t.Fatal("an unreported stall changed no verdict: the test shows nothing")
	}
	h := runStall(t, true, 1e9, 30)
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
		t.Fatalf("stall reported: %d false missing verdicts, first %q", len(m), m[0].Reason)
	}
	for _, id := range []string{"e1", "e2", "e3"} {
		if st := h.status(id); st != schema.StatusGreen {
			t.Errorf("%s is %s after the stall, want green", id, st)
		}
	}
	st := h.ofType(schema.EventSensorStalled)
	if len(st) != 1 || details[schema.SensorStalledDetails](st[0]).StalledSeconds != 5.0 || st[0].IsAlert() != true {
		t.Fatalf("sensor_stalled events %+v, want one notice with stalled_seconds 5", st)
	}
	for _, ev := range h.ofType(schema.EventStatusChanged) {
		if ev.PreviousStatus != "" {
			t.Errorf("status change across the stall: %s %s -> %s: %s", ev.EndpointID, ev.PreviousStatus, ev.Status, ev.Reason)
		}
	}
}

func TestMissingStillRaisedAfterStall(t *testing.T) {
	// e3's last heartbeat is at second 20, well after the stall; its MACs
	// keep sending. Deadline 23; it must be raised by 24.
	h := runStall(t, true, 20.5, 40)
	m := h.ofType(schema.EventHeartbeatMissing)
	if len(m) != 1 || m[0].EndpointID != "e3" {
		t.Fatalf("missing verdicts %+v, want one for e3", m)
	}
	if at := sec(m[0]); at < 23 || at > 24 {
		t.Errorf("e3 raised missing at second %v, want within one interval after its deadline (23-24)", at)
	}
}

func TestMissingAcrossStallCountsOnlyRunningTime(t *testing.T) {
	// e3 stops at second 9, before the stall: 1.5 s of silence before it,
	// so it is due 1.5 s after the sensor runs again (second 17), not at once.
	h := runStall(t, true, 9.5, 30)
	m := h.ofType(schema.EventHeartbeatMissing)
	if len(m) != 1 || m[0].EndpointID != "e3" {
		t.Fatalf("missing verdicts %+v, want one for e3", m)
	}
	if at := sec(m[0]); at < 16.5 || at > 18 {
		t.Errorf("e3 raised missing at second %v, want 16.5-18 (3 s of silence while the sensor ran)", at)
	}
}

func TestShortLagIsSilent(t *testing.T) {
	h := newHarness(t, Config{HeartbeatInterval: time.Second, MissingAfter: 3})
	h.at(0).hello("e1", schema.HealthGreen, "02:00:00:00:00:01")
	h.at(2.9)
	if evs := h.c.Stalled(300 * time.Millisecond); len(evs) != 0 {
		t.Fatalf("a 300 ms lag raised %+v", evs)
	}
	// The 300 ms are not counted: at 3.1 the endpoint is 2.8 s silent.
	h.at(3.1).traffic("02:00:00:00:00:01")
	h.tick()
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
		t.Fatalf("missing at 3.1 s after a 300 ms lag: %+v", m)
	}
	h.at(3.4).traffic("02:00:00:00:00:01")
	h.tick()
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 1 {
		t.Fatalf("no missing verdict at 3.4 s (3.1 s of running silence): %+v", h.events)
	}
}

func TestLagWatch(t *testing.T) {
	var w LagWatch
	s := time.Second
	for i, c := range []struct{ mono, want time.Duration }{
		{0, 0},
		{s, 0},
		{2*s + 10*time.Millisecond, 10 * time.Millisecond},
		{2*s + 900*time.Millisecond, 0}, // a ticker catching up
		{9 * s, 5*s + 100*time.Millisecond},
	} {
		if got := w.Observe(c.mono, s); got != c.want {
			t.Errorf("observation %d at %v: lateness %v, want %v", i, c.mono, got, c.want)
		}
	}
}

func TestTrafficReportedLateStillCounts(t *testing.T) {
	// At a 1 s interval capture's report of a second arrives after it:
	// a frame 1.8 s old still means the host is sending, so a silent
	// endpoint is missing, not offline.
	h := newHarness(t, Config{HeartbeatInterval: time.Second, MissingAfter: 3})
	const mac = "02:00:00:00:00:01"
	h.at(0).hello("e1", schema.HealthGreen, mac)
	for ms := 1000; ms <= 6000; ms += 1000 {
		// The report of second s-1 (frame at s-1.8) arrives at s.
		h.at(float64(ms)/1000 - 1.8).traffic(mac)
		h.at(float64(ms) / 1000).tick()
	}
	if changed := h.ofType(schema.EventStatusChanged); len(changed) > 1 {
		t.Errorf("status changes %+v: a host reported a second late was taken for silent", changed[1:])
	}
	m := h.ofType(schema.EventHeartbeatMissing)
	if len(m) != 1 || sec(m[0]) != 3 {
		t.Fatalf("missing verdicts %+v, want one at second 3", m)
	}
}
