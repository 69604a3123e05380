package sensor

import (
	"reflect"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
	"pgregory.net/rapid"
)

// action is one step of a random scenario.
type action struct {
	Kind    int // 0 advance+tick, 1 heartbeat, 2 traffic, 3 capture report, 4 disconnect, 5 hello again
	Advance time.Duration
	Cause   schema.DisconnectCause
	Who     int
	Health  schema.Health
	Up      bool
	Drops   uint64
}

var propMACs = [][]schema.MAC{
	{schema.MustParseMAC("02:00:00:00:00:01")},
	{schema.MustParseMAC("02:00:00:00:00:02"), schema.MustParseMAC("02:00:00:00:00:12")},
	{schema.MustParseMAC("02:00:00:00:00:03")},
}

const disciplined = 0 // endpoint 0 always heartbeats within 1.5 intervals

func genActions(t *rapid.T) []action {
	n := rapid.IntRange(50, 400).Draw(t, "steps")
	// Some endpoints never send in a scenario, so silence past the deadline
	// is common enough to be tested.
	quiet := rapid.SliceOfN(rapid.Bool(), 3, 3).Draw(t, "quiet")
	out := make([]action, 0, n)
	for i := 0; i < n; i++ {
		a := action{Kind: rapid.IntRange(0, 5).Draw(t, "kind")}
		switch a.Kind {
		case 0:
			a.Advance = time.Duration(rapid.IntRange(0, 8).Draw(t, "s"))*time.Second + time.Duration(rapid.IntRange(0, 999).Draw(t, "ms"))*time.Millisecond
		case 1:
			a.Who = rapid.IntRange(0, 2).Draw(t, "who")
			a.Health = schema.Health(rapid.IntRange(1, 3).Draw(t, "health"))
		case 2:
			a.Who = rapid.IntRange(0, 3).Draw(t, "mac") // 3: a stranger
			if a.Who < 3 && quiet[a.Who] {
				a.Who = 3
			}
		case 3:
			a.Up = rapid.IntRange(0, 5).Draw(t, "up") > 0
			a.Drops = uint64(rapid.IntRange(0, 30).Draw(t, "drops"))
			// Mostly a clean capture: a lossy report blinds the sensor for
			// an interval, and verdicts need sight to be tested.
			if rapid.IntRange(0, 2).Draw(t, "lossless") > 0 {
				a.Drops = 0
			}
		case 4, 5:
			a.Who = rapid.IntRange(1, 2).Draw(t, "who") // never the disciplined endpoint
			a.Cause = schema.DisconnectCause(rapid.IntRange(int(schema.CauseGoodbye), int(schema.CauseReplaced)).Draw(t, "cause"))
		}
		out = append(out, a)
	}
	return out
}

// scenario runs actions on a fresh correlator and checks the invariants as it
// goes. It returns every event and the final snapshot.
// fataler is the part of testing.TB and *rapid.T the checks use.
type fataler interface {
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func scenario(t fataler, acts []action) ([]schema.Event, Snapshot) {
	clock := &ManualClock{T: sensorStart}
	c, err := NewCorrelator(Config{}, clock)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.Config()
	var events []schema.Event
	lastHB := map[int]time.Time{}
	lastSent := map[schema.MAC]time.Time{}
	health := map[int]schema.Health{}
	// The model of the dropped-connection rule: when each endpoint's
	// connection dropped without goodbye (zero once it is back).
	connected := map[int]bool{}
	dropAt := map[int]time.Time{}
	add := func(evs []schema.Event) {
		for _, ev := range evs {
			if n := len(events); n > 0 && ev.Seq <= events[n-1].Seq {
				t.Fatalf("sequence %d after %d", ev.Seq, events[n-1].Seq)
			}
			events = append(events, ev)
			if ev.Type == schema.EventHeartbeatMissing && ev.PreviousStatus != schema.StatusMissing {
				who := int(ev.EndpointID[0] - 'a')
				if !droppedAndSending(cfg, clock.T, dropAt[who], connected[who], propMACs[who], lastSent) {
					checkMissingEntry(t, ev, cfg, clock.T, lastHB, lastSent)
				}
			}
		}
	}
	for i := range propMACs {
		itfs := []schema.Interface{}
		for _, m := range propMACs[i] {
			itfs = append(itfs, schema.Interface{MAC: m})
		}
		evs, err := c.Hello(schema.Hello{EndpointID: idOf(i), Name: idOf(i), Health: schema.HealthGreen, Interfaces: itfs})
		if err != nil {
			t.Fatal(err)
		}
		add(evs)
		lastHB[i], health[i] = clock.T, schema.HealthGreen
		connected[i] = true
	}
	heartbeat := func(who int, h schema.Health) {
		evs, err := c.Heartbeat(schema.Heartbeat{EndpointID: idOf(who), Health: h})
		if err != nil {
			t.Fatal(err)
		}
		add(evs)
		lastHB[who], health[who] = clock.T, h
		connected[who], dropAt[who] = true, time.Time{}
		if st, _ := c.Endpoint(idOf(who)); st.Status != schema.StatusOf(h) {
			t.Fatalf("after a heartbeat %s is %s, want %s", idOf(who), st.Status, schema.StatusOf(h))
		}
	}
	for _, a := range acts {
		switch a.Kind {
		case 0:
			target := clock.T.Add(a.Advance)
			// The disciplined endpoint heartbeats whenever 1.5 intervals would pass.
			for limit := lastHB[disciplined].Add(cfg.HeartbeatInterval * 3 / 2); !limit.After(target); limit = lastHB[disciplined].Add(cfg.HeartbeatInterval * 3 / 2) {
				clock.Set(limit)
				add(c.Tick())
				heartbeat(disciplined, health[disciplined])
			}
			clock.Set(target)
			add(c.Tick())
		case 1:
			heartbeat(a.Who, a.Health)
		case 2:
			m := schema.MustParseMAC("02:00:00:00:00:99")
			if a.Who < len(propMACs) {
				ms := propMACs[a.Who]
				m = ms[int(clock.T.UnixNano()/int64(time.Millisecond))%len(ms)]
			}
			add(c.Traffic([]schema.TrafficSummary{{MAC: m, Packets: 1, Bytes: 64, FirstSeen: clock.T, LastSeen: clock.T}}))
			lastSent[m] = clock.T
		case 3:
			add(c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: a.Up, Packets: 100, Drops: a.Drops, Time: clock.T}))
		case 4:
			add(c.Disconnect(schema.Disconnect{EndpointID: idOf(a.Who), Cause: a.Cause, Goodbye: schema.GoodbyeStop}))
			if connected[a.Who] && a.Cause.Dropped() {
				dropAt[a.Who] = clock.T
			}
			connected[a.Who] = false
		case 5:
			itfs := []schema.Interface{}
			for _, m := range propMACs[a.Who] {
				itfs = append(itfs, schema.Interface{MAC: m})
			}
			evs, err := c.Hello(schema.Hello{EndpointID: idOf(a.Who), Name: idOf(a.Who), Health: health[a.Who], Interfaces: itfs, Instance: a.Cause.String()})
			if err != nil {
				t.Fatal(err)
			}
			add(evs)
			lastHB[a.Who] = clock.T
			connected[a.Who], dropAt[a.Who] = true, time.Time{}
		}
		if st, _ := c.Endpoint(idOf(disciplined)); st.Status == schema.StatusMissing {
			t.Fatalf("%s is missing although it heartbeats within 1.5 intervals", idOf(disciplined))
		}
	}
	return events, c.Snapshot()
}

// droppedAndSending: the dropped-connection rule may make an endpoint
// missing early only when its connection dropped without goodbye, it has
// not come back, the reconnect grace has passed and one of its MACs sent
// after the drop (past the teardown margin).
func droppedAndSending(cfg Config, now, dropAt time.Time, connected bool, macs []schema.MAC, lastSent map[schema.MAC]time.Time) bool {
	if dropAt.IsZero() || connected || now.Sub(dropAt) < cfg.ReconnectGrace {
		return false
	}
	for _, m := range macs {
		if s, ok := lastSent[m]; ok && s.Sub(dropAt) > teardownMargin {
			return true
		}
	}
	return false
}

func idOf(i int) string { return string(rune('a' + i)) }

// checkMissingEntry: an endpoint only becomes missing past its deadline and
// when one of its MACs sent during the last interval.
func checkMissingEntry(t fataler, ev schema.Event, cfg Config, now time.Time, lastHB map[int]time.Time, lastSent map[schema.MAC]time.Time) {
	who := int(ev.EndpointID[0] - 'a')
	if silent := now.Sub(lastHB[who]); silent < cfg.MissingDeadline() {
		t.Fatalf("%s missing after only %s without a heartbeat", ev.EndpointID, silent)
	}
	for _, m := range propMACs[who] {
		if s, ok := lastSent[m]; ok && now.Sub(s) < cfg.HeartbeatInterval {
			return
		}
	}
	t.Fatalf("%s missing at %s without traffic in the last interval", ev.EndpointID, now)
}

func TestPropertyRules(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		scenario(t, genActions(t))
	})
}

func TestPropertyDeterministicReplay(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		acts := genActions(t)
		ev1, snap1 := scenario(t, acts)
		ev2, snap2 := scenario(t, acts)
		if !reflect.DeepEqual(ev1, ev2) {
			t.Fatalf("the same inputs gave different events")
		}
		if !reflect.DeepEqual(snap1, snap2) {
			t.Fatalf("the same inputs gave different state:\n%+v\n%+v", snap1, snap2)
		}
	})
}
