package sensor

import (
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// runShorter plays an endpoint heartbeating every 15 s (seconds 1, 16)
// whose sensor shortens the interval to 1 s at second 20; the agent hears
// it at 20.5 and heartbeats every second from 21.5 until stopAt. Its MAC
// sends throughout. reconfigure says whether the correlator changes
// interval (true) or was at 1 s from the start (the broken case).
func runShorter(t *testing.T, reconfigure bool, stopAt float64) *harness {
	t.Helper()
	cfg := Config{HeartbeatInterval: 15 * time.Second, MissingAfter: 3, MissingRealert: []time.Duration{3 * time.Second, time.Hour}}
	if !reconfigure {
		cfg.HeartbeatInterval = time.Second
	}
	h := newHarness(t, cfg)
	const mac = "02:00:00:00:00:01"
	h.at(1).hello("e1", schema.HealthGreen, mac)
	for ms := 1100; ms <= 80000; ms += 100 {
		s := float64(ms) / 1000
		h.at(s)
		if ms == 20000 && reconfigure {
			cfg.HeartbeatInterval = time.Second
			if err := h.c.Reconfigure(cfg); err != nil {
				t.Fatal(err)
			}
		}
		beat := s == 16 || (s >= 21.5 && s <= stopAt && ms%1000 == 500)
		if beat {
			h.heartbeat("e1", schema.HealthGreen)
		}
		if ms%1000 == 0 {
			h.traffic(mac)
			h.tick()
		}
	}
	return h
}

func TestShorterIntervalWaitsForTheNewPace(t *testing.T) {
	if h := runShorter(t, false, 1e9); len(h.ofType(schema.EventHeartbeatMissing)) == 0 {
		t.Fatal("judging the 15 s heartbeats by 1 s raised nothing: the test shows nothing")
	}
	h := runShorter(t, true, 1e9)
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
		t.Fatalf("%d false missing verdicts around the interval change, first at %v: %q", len(m), sec(m[0]), m[0].Reason)
	}
}

func TestShorterIntervalThenDeathRaisedOnTime(t *testing.T) {
	// Once at the new pace, an endpoint is judged by it: last heartbeat
	// 40.5, deadline 43.5, raised by 44.5.
	h := runShorter(t, true, 40.5)
	m := h.ofType(schema.EventHeartbeatMissing)
	if len(m) != 1 {
		t.Fatalf("missing verdicts %+v, want 1", m)
	}
	if at := sec(m[0]); at < 43.5 || at > 44.5 {
		t.Errorf("missing at %v, want 43.5-44.5", at)
	}
}

func TestAgentStillAtOldPaceJudgedByOld(t *testing.T) {
	// An agent that has not taken up 1 s (it heartbeats every 15 s) is
	// judged by 15 s: no verdict while it keeps that pace.
	cfg := Config{HeartbeatInterval: 15 * time.Second, MissingAfter: 3}
	h := newHarness(t, cfg)
	const mac = "02:00:00:00:00:01"
	h.at(1).hello("e1", schema.HealthGreen, mac)
	cfg.HeartbeatInterval = time.Second
	h.run(2, 200, func(s int) {
		if s == 2 {
			if err := h.c.Reconfigure(cfg); err != nil {
				t.Fatal(err)
			}
		}
		if s%15 == 1 {
			h.heartbeat("e1", schema.HealthGreen)
		}
		h.traffic(mac)
	})
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
		t.Fatalf("%d missing verdicts for an endpoint at the old pace, first at %v", len(m), sec(m[0]))
	}
}

func TestLongerIntervalNoFalseMissing(t *testing.T) {
	// 1 s to 15 s at second 20.3; the agent hears at 20.5 and heartbeats
	// every 15 s from 35.5 until stopAt (65.5), MAC sending throughout.
	cfg := Config{HeartbeatInterval: time.Second, MissingAfter: 3, MissingRealert: []time.Duration{3 * time.Second, time.Hour}}
	h := newHarness(t, cfg)
	const mac = "02:00:00:00:00:01"
	h.at(0.5).hello("e1", schema.HealthGreen, mac)
	for ms := 600; ms <= 130000; ms += 100 {
		s := float64(ms) / 1000
		h.at(s)
		if ms == 20300 {
			cfg.HeartbeatInterval = 15 * time.Second
			cfg.MissingRealert = []time.Duration{45 * time.Second, time.Hour}
			if err := h.c.Reconfigure(cfg); err != nil {
				t.Fatal(err)
			}
		}
		if (s <= 20.5 && ms%1000 == 500) || (s >= 35.5 && s <= 65.5 && ms%15000 == 5500) {
			h.heartbeat("e1", schema.HealthGreen)
		}
		if ms%1000 == 0 {
			h.traffic(mac)
			h.tick()
		}
	}
	m := h.ofType(schema.EventHeartbeatMissing)
	if len(m) != 1 {
		t.Fatalf("missing verdicts %+v, want exactly one (after the last heartbeat at 65.5)", m)
	}
	if at := sec(m[0]); at < 110.5 || at > 111.5 {
		t.Errorf("missing at %v, want 110.5-111.5 (45 s after 65.5)", at)
	}
}

func TestRestartWithShorterIntervalWaitsForReconnect(t *testing.T) {
	// A sensor at 15 s saves its state and restarts at 1 s; the agent
	// reconnects 8 s later (its reconnect backoff) and then heartbeats every
	// second, its MAC sending throughout.
	run := func(keepInterval bool) *harness {
		old := newHarness(t, Config{HeartbeatInterval: 15 * time.Second, MissingAfter: 3})
		const mac = "02:00:00:00:00:01"
		old.at(0).hello("e1", schema.HealthGreen, mac)
		snap := old.c.Snapshot()
		if snap.HeartbeatInterval != 15*time.Second {
			t.Fatalf("snapshot interval %v", snap.HeartbeatInterval)
		}
		if !keepInterval {
			snap.HeartbeatInterval = 0
		}
		clock := &ManualClock{T: t0.Add(time.Second)}
		c, err := NewCorrelator(Config{HeartbeatInterval: time.Second, MissingAfter: 3}, clock)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Restore(snap); err != nil {
			t.Fatal(err)
		}
		h := &harness{t: t, clock: clock, c: c}
		h.run(2, 30, func(s int) {
			if s == 9 {
				h.hello("e1", schema.HealthGreen, mac)
			} else if s > 9 {
				h.heartbeat("e1", schema.HealthGreen)
			}
			h.traffic(mac)
		})
		return h
	}
	if h := run(false); len(h.ofType(schema.EventHeartbeatMissing)) == 0 {
		t.Fatal("without the saved interval no verdict came: the test shows nothing")
	}
	if m := run(true).ofType(schema.EventHeartbeatMissing); len(m) != 0 {
		t.Fatalf("%d false missing after a restart with a shorter interval, first at %v: %s", len(m), sec(m[0]), m[0].Reason)
	}
}
