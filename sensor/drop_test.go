package sensor

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
	"pgregory.net/rapid"
)

func (h *harness) helloInstance(id, instance string, mac string) {
	h.t.Helper()
	evs, err := h.c.Hello(schema.Hello{EndpointID: id, Name: "host-" + id, Org: "acme", Health: schema.HealthGreen,
		Interfaces: []schema.Interface{{Name: "eth0", MAC: schema.MustParseMAC(mac)}}, Instance: instance})
	if err != nil {
		h.t.Fatal(err)
	}
	h.add(evs)
}

func (h *harness) disconnect(id string, cause schema.DisconnectCause, goodbye schema.GoodbyeReason) {
	h.add(h.c.Disconnect(schema.Disconnect{EndpointID: id, Cause: cause, Goodbye: goodbye}))
}

// beatEvery heartbeats id every 15 s from t=0 up to and including until.
func beatEvery(h *harness, id string, sec, until int) {
	if sec > 0 && sec <= until && sec%15 == 0 {
		h.heartbeat(id, schema.HealthGreen)
	}
}

const dropMAC = "02:00:00:00:00:01"

// TestDroppedConnectionMissingAfterGrace: every way a killed agent's
// connection ends, while the host keeps sending, is missing once the 3 s
// reconnect grace has passed, not after 3 intervals; the alert says how the
// agent left.
func TestDroppedConnectionMissingAfterGrace(t *testing.T) {
	for _, cause := range []schema.DisconnectCause{schema.CauseEOF, schema.CauseReset, schema.CauseTLSError} {
		t.Run(cause.String(), func(t *testing.T) {
			h := newHarness(t, Config{})
			h.at(0).helloInstance("e1", "a", dropMAC)
			h.run(1, 20, func(s int) { h.traffic(dropMAC); beatEvery(h, "e1", s, 15) })
			h.at(20.2).disconnect("e1", cause, "")
			h.at(20.5).traffic(dropMAC)
			h.run(21, 23, func(int) { h.traffic(dropMAC) })
			if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
				t.Fatalf("missing at %v, before the grace ended", sec(m[0]))
			}
			h.run(24, 30, func(int) { h.traffic(dropMAC) })
			m := h.ofType(schema.EventHeartbeatMissing)
			if len(m) != 1 {
				t.Fatalf("%d missing alerts, want 1", len(m))
			}
			if s := sec(m[0]); s != 24 {
				t.Errorf("missing at %vs, want 24 s (first tick after the 3 s grace from the drop at 20.2 s)", s)
			}
			if !strings.Contains(m[0].Reason, "connection dropped without goodbye") || !strings.Contains(m[0].Reason, "host still sending") ||
				!strings.Contains(m[0].Reason, cause.Text()) {
				t.Errorf("reason %q does not say how the agent left", m[0].Reason)
			}
			if details[schema.HeartbeatMissingDetails](m[0]).Left != "dropped" || details[schema.HeartbeatMissingDetails](m[0]).Disconnect != cause.String() || m[0].PreviousStatus != schema.StatusGreen {
				t.Errorf("details %v, previous %s", m[0].Details, m[0].PreviousStatus)
			}
		})
	}
}

// TestDropJudgedOnTrafficAfterTheDrop: traffic from before the drop, or the
// teardown of the connection itself, is not "still sending": a link going
// down with the connection, or a suspend, is left to the missing deadline.
func TestDropJudgedOnTrafficAfterTheDrop(t *testing.T) {
	t.Run("silent after drop", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.at(0).helloInstance("e1", "a", dropMAC)
		h.run(1, 10, func(int) { h.traffic(dropMAC) })
		h.at(10.1).disconnect("e1", schema.CauseReset, "")
		h.at(10.3).traffic(dropMAC) // the kernel's answer to the sensor's close
		h.run(11, 44, nil)
		if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
			t.Fatalf("missing at %vs with no traffic after the drop", sec(m[0]))
		}
		h.run(45, 46, nil)
		if st := h.status("e1"); st != schema.StatusOffline {
			t.Errorf("status %s at the deadline, want offline (suspend: agent and traffic stopped together)", st)
		}
	})
	t.Run("link back after the grace", func(t *testing.T) {
		// The endpoint's link is down 5 s: its traffic stops with the
		// connection and comes back after the grace; the agent reconnects
		// soon after. Not missing.
		h := newHarness(t, Config{})
		h.at(0).helloInstance("e1", "a", dropMAC)
		h.run(1, 10, func(int) { h.traffic(dropMAC) })
		h.at(10.1).disconnect("e1", schema.CauseEOF, "")
		h.run(11, 15, nil)
		h.run(16, 17, func(int) { h.traffic(dropMAC) })
		h.at(17.5).helloInstance("e1", "a", dropMAC)
		h.run(18, 100, func(s int) { h.traffic(dropMAC); beatEvery(h, "e1", s-3, 100) })
		if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
			t.Fatalf("missing at %vs after a link flap", sec(m[0]))
		}
		if r := h.ofType(schema.EventAgentRestarted); len(r) != 0 {
			t.Errorf("a reconnect of the same agent process raised %d agent_restarted", len(r))
		}
	})
}

// TestRestartWithinGrace: an agent killed and restarted by its service
// manager within the grace is not missing; one agent_restarted event (not an
// alert) says it happened.
func TestRestartWithinGrace(t *testing.T) {
	h := newHarness(t, Config{})
	h.at(0).helloInstance("e1", "first", dropMAC)
	h.run(1, 10, func(int) { h.traffic(dropMAC) })
	h.at(10.1).disconnect("e1", schema.CauseEOF, "")
	h.at(10.5).traffic(dropMAC)
	h.at(11.0).helloInstance("e1", "second", dropMAC)
	h.run(11, 80, func(s int) { h.traffic(dropMAC); beatEvery(h, "e1", s-11, 80) })
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
		t.Fatalf("missing at %vs after a restart within the grace", sec(m[0]))
	}
	r := h.ofType(schema.EventAgentRestarted)
	if len(r) != 1 {
		t.Fatalf("%d agent_restarted events, want 1", len(r))
	}
	if r[0].IsAlert() || !strings.Contains(r[0].Reason, "EOF without close_notify") {
		t.Errorf("agent_restarted %+v: want informational, saying how the connection dropped", r[0])
	}
	// An older agent (no instance) restarting is still a restart.
	h.at(81).disconnect("e1", schema.CauseEOF, "")
	h.at(81.5).helloInstance("e1", "", dropMAC)
	if r := h.ofType(schema.EventAgentRestarted); len(r) != 2 || details[schema.AgentRestartedDetails](r[1]).Instance == "" {
		t.Errorf("restart of an agent without instance: %+v", r)
	}
}

// TestGoodbye: a goodbye makes the endpoint stopped (agent_stopped, not an
// alert) and is no free pass: its MACs sending past the missing deadline
// make it missing as without a goodbye; a shutdown goodbye followed by
// traffic says it is suspicious. Without traffic it is offline; an agent
// back within seconds (systemctl restart) is green and never missing.
func TestGoodbye(t *testing.T) {
	t.Run("stop, host sends", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.at(0).helloInstance("e1", "a", dropMAC)
		h.at(5).disconnect("e1", schema.CauseGoodbye, schema.GoodbyeStop)
		if st := h.status("e1"); st != schema.StatusStopped {
			t.Fatalf("status %s after goodbye, want stopped", st)
		}
		s := h.ofType(schema.EventAgentStopped)
		if len(s) != 1 || s[0].IsAlert() || s[0].Status != schema.StatusStopped || s[0].PreviousStatus != schema.StatusGreen {
			t.Fatalf("agent_stopped %+v", s)
		}
		h.run(6, 44, func(int) { h.traffic(dropMAC) })
		if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
			t.Fatalf("missing at %vs, before the deadline, after a goodbye", sec(m[0]))
		}
		h.run(45, 45, func(int) { h.traffic(dropMAC) })
		m := h.ofType(schema.EventHeartbeatMissing)
		if len(m) != 1 || m[0].PreviousStatus != schema.StatusStopped || !strings.Contains(m[0].Reason, "said goodbye (stop)") {
			t.Fatalf("missing after goodbye: %+v", m)
		}
		if details[schema.HeartbeatMissingDetails](m[0]).SuspiciousGoodbye {
			t.Errorf("a stop goodbye flagged suspicious")
		}
	})
	t.Run("shutdown, host sends", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.at(0).helloInstance("e1", "a", dropMAC)
		h.at(5).disconnect("e1", schema.CauseGoodbye, schema.GoodbyeShutdown)
		h.run(6, 45, func(int) { h.traffic(dropMAC) })
		m := h.ofType(schema.EventHeartbeatMissing)
		if len(m) != 1 || !strings.Contains(m[0].Reason, "shutdown") || !strings.Contains(m[0].Reason, "suspicious") || !details[schema.HeartbeatMissingDetails](m[0]).SuspiciousGoodbye {
			t.Fatalf("missing after a shutdown goodbye and traffic: %+v", m)
		}
	})
	t.Run("shutdown, host silent", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.at(0).helloInstance("e1", "a", dropMAC)
		h.at(5).disconnect("e1", schema.CauseGoodbye, schema.GoodbyeShutdown)
		h.run(6, 8, func(int) { h.traffic(dropMAC) }) // the last packets of a shutdown
		h.run(9, 60, nil)
		if st := h.status("e1"); st != schema.StatusOffline {
			t.Errorf("status %s, want offline", st)
		}
		if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
			t.Errorf("a host that shut down went missing")
		}
	})
	t.Run("restart within 2 s", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.at(0).helloInstance("e1", "a", dropMAC)
		h.run(1, 10, func(int) { h.traffic(dropMAC) })
		h.at(10.2).disconnect("e1", schema.CauseGoodbye, schema.GoodbyeStop)
		h.at(11.9).helloInstance("e1", "b", dropMAC)
		if st := h.status("e1"); st != schema.StatusGreen {
			t.Errorf("status %s after the agent came back, want green", st)
		}
		h.run(11, 80, func(s int) { h.traffic(dropMAC); beatEvery(h, "e1", s-11, 80) })
		if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
			t.Fatalf("missing at %vs after a restart", sec(m[0]))
		}
		if r := h.ofType(schema.EventAgentRestarted); len(r) != 0 {
			t.Errorf("a stop announced by goodbye raised agent_restarted")
		}
	})
}

// TestCleanCloseWithoutGoodbye: an older agent stopping (close_notify, no
// goodbye) and any close by the sensor leave the endpoint to the missing
// deadline.
func TestCleanCloseWithoutGoodbye(t *testing.T) {
	for _, cause := range []schema.DisconnectCause{schema.CauseCloseNotify, schema.CauseIdleTimeout, schema.CauseAgentError, schema.CauseProtocol} {
		h := newHarness(t, Config{})
		h.at(0).helloInstance("e1", "a", dropMAC)
		h.at(5).disconnect("e1", cause, "")
		h.run(6, 44, func(int) { h.traffic(dropMAC) })
		if st := h.status("e1"); st != schema.StatusGreen {
			t.Errorf("%s: status %s before the deadline, want green", cause, st)
		}
		h.run(45, 45, func(int) { h.traffic(dropMAC) })
		if st := h.status("e1"); st != schema.StatusMissing {
			t.Errorf("%s: status %s at the deadline, want missing", cause, st)
		}
	}
}

// TestDropWhileBlindOrStarting: no early verdict while the capture is blind
// (the traffic cannot be trusted) or during the startup grace.
func TestDropWhileBlindOrStarting(t *testing.T) {
	t.Run("blind", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.at(0).helloInstance("e1", "a", dropMAC)
		h.add(h.c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: true, Packets: 10, Time: h.now()}))
		h.run(1, 10, func(int) { h.traffic(dropMAC) })
		h.at(10).add(h.c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: false, Reason: "link down", Time: h.now()}))
		h.at(10.1).disconnect("e1", schema.CauseEOF, "")
		h.run(11, 20, func(int) { h.traffic(dropMAC) })
		if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
			t.Fatalf("missing at %vs while the capture was blind", sec(m[0]))
		}
	})
	t.Run("startup", func(t *testing.T) {
		clock := &ManualClock{T: sensorStart}
		c, err := NewCorrelator(Config{}, clock)
		if err != nil {
			t.Fatal(err)
		}
		h := &harness{t: t, clock: clock, c: c}
		h.helloInstance("e1", "a", dropMAC)
		clock.Advance(2 * time.Second)
		h.disconnect("e1", schema.CauseEOF, "")
		for i := 0; i < 40; i++ {
			clock.Advance(time.Second)
			h.traffic(dropMAC)
			h.tick()
		}
		if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
			t.Fatalf("missing during the startup grace")
		}
	})
}

// TestDropGraceMovesWithTheClock: the reconnect grace is an ordinary kept
// time, moved like every other when the correlator is told the clock
// jumped (or the sensor stalled), so it still lasts 3 s of real time.
func TestDropGraceMovesWithTheClock(t *testing.T) {
	h := newHarness(t, Config{})
	h.at(0).helloInstance("e1", "a", dropMAC)
	h.run(1, 10, func(int) { h.traffic(dropMAC) })
	h.at(10).disconnect("e1", schema.CauseEOF, "")
	h.at(41).add(h.c.ClockStepped(30 * time.Second)) // one real second after the drop
	h.at(41.5).traffic(dropMAC)
	h.tick()
	h.at(42).traffic(dropMAC)
	h.tick()
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
		t.Fatalf("missing at %vs, 2 real seconds after the drop", sec(m[0]))
	}
	h.at(43).tick()
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 1 {
		t.Fatalf("%d missing alerts 3 real seconds after the drop, want 1", len(m))
	}
}

func TestReconnectGraceConfig(t *testing.T) {
	if g := DefaultConfig().ReconnectGrace; g != 3*time.Second {
		t.Errorf("default grace %v, want 3s", g)
	}
	c, err := NewCorrelator(Config{HeartbeatInterval: time.Second}, &ManualClock{})
	if err != nil {
		t.Fatal(err)
	}
	if g := c.Config().ReconnectGrace; g != 1500*time.Millisecond {
		t.Errorf("grace with a 1 s interval %v, want half the 3 s deadline", g)
	}
	err = Config{ReconnectGrace: time.Minute}.Validate()
	if err == nil || !strings.Contains(err.Error(), "reconnect_grace") {
		t.Errorf("a grace longer than the deadline: %v", err)
	}
}

// TestPropertyDropRule: for random traffic, drop and return times, the
// dropped-connection rule raises missing before the deadline exactly when
// the endpoint had not come back at the first tick past the grace and sent
// a frame after the drop (past the teardown margin) by then.
func TestPropertyDropRule(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ms := func(label string, lo, hi int) time.Duration {
			return time.Duration(rapid.IntRange(lo, hi).Draw(rt, label)) * time.Millisecond
		}
		drop := ms("drop", 20_000, 60_000)
		var back time.Duration // 0: the agent does not come back
		if rapid.Bool().Draw(rt, "returns") {
			back = drop + ms("back", 0, 6_000)
		}
		traffic := map[time.Duration]bool{}
		for _, d := range rapid.SliceOfN(rapid.IntRange(0, int((drop+10*time.Second)/time.Millisecond)), 0, 30).Draw(rt, "traffic") {
			traffic[time.Duration(d)*time.Millisecond] = true
		}
		tickOffset := ms("tick offset", 0, 999)

		clock := &ManualClock{T: sensorStart}
		c, err := NewCorrelator(Config{}, clock)
		if err != nil {
			rt.Fatal(err)
		}
		base := t0
		at := func(d time.Duration) { clock.Set(base.Add(d)) }
		mac := schema.MustParseMAC(dropMAC)
		hello := func(instance string) {
			if _, err := c.Hello(schema.Hello{EndpointID: "e1", Health: schema.HealthGreen, Interfaces: []schema.Interface{{MAC: mac}}, Instance: instance}); err != nil {
				rt.Fatal(err)
			}
		}
		at(0)
		hello("a")
		// Events in time order: heartbeats every 15 s before the drop,
		// traffic, the drop, the return, ticks every second.
		type step struct {
			at   time.Duration
			kind int // 0 tick, 1 traffic, 2 heartbeat, 3 drop, 4 return
		}
		var steps []step
		for hb := 15 * time.Second; hb < drop; hb += 15 * time.Second {
			steps = append(steps, step{hb, 2})
		}
		for d := range traffic {
			steps = append(steps, step{d, 1})
		}
		steps = append(steps, step{drop, 3})
		if back > 0 {
			steps = append(steps, step{back, 4})
		}
		end := drop + 10*time.Second
		for tk := tickOffset; tk <= end; tk += time.Second {
			steps = append(steps, step{tk, 0})
		}
		sort.SliceStable(steps, func(i, j int) bool {
			if steps[i].at != steps[j].at {
				return steps[i].at < steps[j].at
			}
			// At one instant: the drop, the return, then the other
			// inputs, the tick last.
			rank := [...]int{0: 4, 1: 3, 2: 2, 3: 0, 4: 1}
			return rank[steps[i].kind] < rank[steps[j].kind]
		})
		var missingAt time.Duration = -1
		for _, s := range steps {
			at(s.at)
			var evs []schema.Event
			switch s.kind {
			case 0:
				evs = c.Tick()
			case 1:
				evs = c.Traffic([]schema.TrafficSummary{{MAC: mac, Packets: 1, Bytes: 60, FirstSeen: clock.T, LastSeen: clock.T}})
			case 2:
				evs, _ = c.Heartbeat(schema.Heartbeat{EndpointID: "e1", Health: schema.HealthGreen})
			case 3:
				evs = c.Disconnect(schema.Disconnect{EndpointID: "e1", Cause: schema.CauseEOF})
			case 4:
				hello("b")
			}
			for _, ev := range evs {
				if ev.Type == schema.EventHeartbeatMissing && missingAt < 0 {
					missingAt = s.at
				}
			}
		}
		// The model: the first tick at least a grace after the drop.
		firstTick := tickOffset
		for firstTick-drop < 3*time.Second {
			firstTick += time.Second
		}
		sentAfter := false
		for d := range traffic {
			if d > drop+teardownMargin && d <= firstTick {
				sentAfter = true
			}
		}
		want := sentAfter && (back == 0 || back > firstTick)
		if got := missingAt >= 0; got != want {
			rt.Fatalf("missing at %v (drop %v, back %v, first tick past the grace %v, traffic after the drop by then %v): want missing %v",
				missingAt, drop, back, firstTick, sentAfter, want)
		}
		if want && missingAt != firstTick {
			rt.Fatalf("missing at %v, want at the first tick past the grace %v", missingAt, firstTick)
		}
	})
}

// TestEarlyMissingEscalates: a missing verdict from a dropped connection is
// escalation 0; the ladder's first step (the missing deadline) re-alerts.
func TestEarlyMissingEscalates(t *testing.T) {
	h := newHarness(t, Config{})
	h.at(0).helloInstance("e1", "a", dropMAC)
	h.run(1, 5, func(int) { h.traffic(dropMAC) })
	h.at(5.1).disconnect("e1", schema.CauseEOF, "")
	h.run(6, 46, func(int) { h.traffic(dropMAC) })
	m := h.ofType(schema.EventHeartbeatMissing)
	if len(m) != 2 || details[schema.HeartbeatMissingDetails](m[0]).Escalation != 0 || details[schema.HeartbeatMissingDetails](m[1]).Escalation != 1 || sec(m[1]) != 45 {
		t.Fatalf("missing alerts %+v, want escalation 0 at 9 s and 1 at 45 s", m)
	}
}

// TestInterfaceSwitchWithinGrace: a laptop moving from Wi-Fi to cable drops
// its connection and reconnects from its other MAC within the grace: not
// missing, and no restart (the same agent process).
func TestInterfaceSwitchWithinGrace(t *testing.T) {
	const wifi, cable = "02:00:00:00:00:01", "02:00:00:00:00:02"
	h := newHarness(t, Config{})
	itfs := []schema.Interface{{Name: "wlan0", MAC: schema.MustParseMAC(wifi)}, {Name: "eth0", MAC: schema.MustParseMAC(cable)}}
	hello := func(instance string) {
		evs, err := h.c.Hello(schema.Hello{EndpointID: "e1", Name: "laptop", Health: schema.HealthGreen, Interfaces: itfs, Instance: instance})
		if err != nil {
			t.Fatal(err)
		}
		h.add(evs)
	}
	h.at(0)
	hello("a")
	h.run(1, 10, func(int) { h.traffic(wifi) })
	h.at(10.2).disconnect("e1", schema.CauseReset, "")
	h.at(11).traffic(cable)
	h.at(12.4)
	hello("a")
	h.run(13, 80, func(s int) { h.traffic(cable); beatEvery(h, "e1", s-13, 80) })
	if m := h.ofType(schema.EventHeartbeatMissing); len(m) != 0 {
		t.Fatalf("missing at %vs after an interface switch", sec(m[0]))
	}
	if r := h.ofType(schema.EventAgentRestarted); len(r) != 0 {
		t.Errorf("a reconnect from another interface raised agent_restarted")
	}
}
