package fleet

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// One sensor (a real embedded node) sees the traffic of E1, whose agent
// another sensor (s2) holds: the correlator judges E1 against the fleet's
// record, so no no_heartbeat and no missing while s2 vouches for it (its
// registry record is rewritten, E1's record is not, as for an endpoint
// whose state does not change); once
// s2 releases E1 and its MAC keeps sending, exactly one heartbeat_missing.
// A stranger MAC still gets its no_heartbeat, and the events about E1 that
// s2 owns (hello, status) are not raised here.
func TestBridgeOwnsTrafficVerdicts(t *testing.T) {
	t.Parallel()
	const interval = time.Second
	f := startSolo(t, "Bridge Org", Options{Interval: interval, DegradeAfter: interval,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	scfg := sensor.DefaultConfig()
	scfg.HeartbeatInterval, scfg.StartupGrace, scfg.NoHeartbeatAfter = interval, 0, 2*interval
	scfg.ReconnectGrace = interval / 2
	corr, err := sensor.NewCorrelator(scfg, sensor.WallClock{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []schema.Event
	b := NewBridge(f)
	// The daemon's pipeline, in short: the bridge decides what this sensor
	// raises, outside the engine's lock.
	queue := make(chan []schema.Event, 1024)
	publish := func(evs []schema.Event) { queue <- slices.Clone(evs) }
	go func() {
		for evs := range queue {
			kept := b.Own(evs)
			mu.Lock()
			got = append(got, kept...)
			mu.Unlock()
		}
	}()
	eng := sensor.NewEngine(corr, publish)
	b.SetEngine(eng, publish)
	go b.Run(ctx)
	go eng.Run(ctx, 200*time.Millisecond)

	js, _ := jetstream.New(f.Conn())
	kv, err := js.KeyValue(ctx, BucketEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	m1, stranger := schema.MustParseMAC("02:00:00:00:00:e1"), schema.MustParseMAC("02:00:00:00:00:99")
	rec := EndpointRecord{ID: "ep-e1", Name: "e1", Org: "Bridge Org", Sensor: "s2", Connected: true, Health: schema.HealthGreen,
		Interfaces: []schema.Interface{{Name: "eth0", MAC: m1}}}
	put := func(r EndpointRecord) {
		r.Written, r.LastHeartbeat = time.Now(), time.Now()
		raw, _ := json.Marshal(r)
		if _, err := kv.Put(ctx, r.ID, raw); err != nil {
			t.Errorf("put: %v", err)
		}
	}
	sensors, err := js.KeyValue(ctx, BucketSensors)
	if err != nil {
		t.Fatal(err)
	}
	register := func() {
		raw, _ := json.Marshal(SensorRecord{Name: "s2", Written: time.Now()})
		if _, err := sensors.Put(ctx, "s2", raw); err != nil {
			t.Errorf("register s2: %v", err)
		}
	}
	register()
	put(rec)
	// s2 registers every half interval, as a live sensor does every 2 s,
	// and leaves E1's record as it is: nothing about E1 changes.
	holding := make(chan struct{})
	go func() {
		tk := time.NewTicker(interval / 2)
		defer tk.Stop()
		for {
			select {
			case <-holding:
				return
			case <-tk.C:
				register()
			}
		}
	}()
	// Capture: both MACs send every 250 ms.
	go func() {
		tk := time.NewTicker(250 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				now := time.Now()
				eng.Traffic([]schema.TrafficSummary{
					{MAC: m1, Packets: 5, Bytes: 500, FirstSeen: now, LastSeen: now},
					{MAC: stranger, Packets: 5, Bytes: 500, FirstSeen: now, LastSeen: now},
				})
			}
		}
	}()
	count := func(typ schema.EventType, mac schema.MAC, id string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, ev := range got {
			if ev.Type != typ {
				continue
			}
			if id != "" && ev.EndpointID == id {
				n++
				continue
			}
			for _, m := range ev.MACs {
				if m == mac {
					n++
				}
			}
		}
		return n
	}
	time.Sleep(8 * interval) // well past the missing deadline (3 intervals)
	if n := count(schema.EventNoHeartbeat, m1, ""); n != 0 {
		t.Errorf("no_heartbeat for E1, whose agent s2 holds: %d", n)
	}
	if n := count(schema.EventHeartbeatMissing, m1, "ep-e1"); n != 0 {
		t.Errorf("heartbeat_missing for E1 while s2 holds it: %d", n)
	}
	if n := count(schema.EventNoHeartbeat, stranger, ""); n != 1 {
		t.Errorf("no_heartbeat for the stranger MAC: %d, want 1 (the fleet vouches for no one holding it)", n)
	}
	if n := count(schema.EventEndpointHello, m1, "ep-e1"); n != 0 {
		t.Errorf("endpoint_hello for E1 raised here; s2 owns it")
	}

	// s2 is cut off: its registry record is no longer rewritten, E1 keeps
	// sending. This sensor cannot vouch either way:
	// no missing.
	close(holding)
	time.Sleep(6 * interval)
	if n := count(schema.EventHeartbeatMissing, m1, "ep-e1"); n != 0 {
		t.Errorf("heartbeat_missing for E1 while its holder s2 is cut off: %d", n)
	}

	// s2 is back and releases E1: its agent was killed (the connection
	// dropped without goodbye); E1 keeps sending.
	register()
	rec.Connected, rec.Cause = false, uint8(schema.CauseEOF)
	put(rec)
	released := time.Now()
	waitFor(t, "heartbeat_missing for E1", 8*interval, func() bool { return count(schema.EventHeartbeatMissing, m1, "ep-e1") > 0 })
	t.Logf("heartbeat_missing %v after the holder released E1", time.Since(released).Round(time.Millisecond))
	time.Sleep(2 * interval)
	if n := count(schema.EventHeartbeatMissing, m1, "ep-e1"); n != 1 {
		t.Errorf("heartbeat_missing for E1: %d, want exactly 1", n)
	}
}

// Two sensors see the same traffic (two bridges on one fleet member stand
// for them): each fact is raised by the first to claim it, the other
// drops its copy and the matching heartbeat_restored; a fact's claim
// expires after its window.
func TestClaimsRaiseEachFactOnce(t *testing.T) {
	t.Parallel()
	f := startSolo(t, "Claims Org", Options{Interval: time.Second, DegradeAfter: time.Second})
	ctx := context.Background()
	js, _ := jetstream.New(f.Conn())
	kv, err := js.KeyValue(ctx, BucketEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	m1 := schema.MustParseMAC("02:00:00:00:00:e1")
	raw, _ := json.Marshal(EndpointRecord{ID: "ep-e1", Name: "e1", Sensor: "s9", Connected: false,
		Interfaces: []schema.Interface{{Name: "eth0", MAC: m1}}})
	if _, err := kv.Put(ctx, "ep-e1", raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the record watched", 10*time.Second, func() bool { return f.revision("ep-e1") > 0 })

	a, b := NewBridge(f), NewBridge(f)
	missing := schema.Event{Type: schema.EventHeartbeatMissing, EndpointID: "ep-e1", MACs: []schema.MAC{m1}, Transition: true}
	escalated := missing
	escalated.Transition = false
	restored := schema.Event{Type: schema.EventHeartbeatRestored, EndpointID: "ep-e1", MACs: []schema.MAC{m1}}
	if !a.claim(f, missing, false) {
		t.Fatal("the first sensor to judge E1 missing did not raise it")
	}
	if b.claim(f, missing, false) {
		t.Error("the second sensor raised the same heartbeat_missing")
	}
	// Its escalation (the same episode, the same record) is the claimant's
	// to raise, however often the claimant raises it.
	for range 2 {
		if !a.claim(f, escalated, false) {
			t.Error("the sensor that raised heartbeat_missing did not raise its escalation")
		}
		if b.claim(f, escalated, false) {
			t.Error("the sensor that did not raise heartbeat_missing raised its escalation")
		}
	}
	if b.claim(f, restored, false) {
		t.Error("the sensor that did not raise heartbeat_missing raised its end")
	}
	if !a.claim(f, restored, false) {
		t.Error("the sensor that raised heartbeat_missing did not raise its end")
	}
	// A new episode (the record changed) is a new fact.
	rev := f.revision("ep-e1")
	if _, err := kv.Put(ctx, "ep-e1", raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new revision watched", 10*time.Second, func() bool { return f.revision("ep-e1") > rev })
	if !b.claim(f, missing, false) || a.claim(f, missing, false) {
		t.Error("the next missing episode of E1: want it raised once, by the first to claim it")
	}

	stranger := schema.MustParseMAC("02:00:00:00:00:99")
	nohb := schema.Event{Type: schema.EventNoHeartbeat, MACs: []schema.MAC{stranger}}
	if !a.claim(f, nohb, false) || b.claim(f, nohb, false) {
		t.Error("no_heartbeat for one MAC seen by two sensors: want it raised once")
	}
	// Held events pass without a claim; sensor events too.
	if !b.claim(f, schema.Event{Type: schema.EventStatusChanged, EndpointID: "ep-local"}, false) {
		t.Error("a held-owned event about a local endpoint was dropped")
	}
	// The pipeline's stage keeps one copy of a fact two sensors raise.
	flow := schema.Event{Type: schema.EventLateralMovement, Details: &schema.FlowDetails{SrcMAC: m1, DstMAC: stranger,
		DstIP: netip.MustParseAddr("10.0.0.9"), Proto: "tcp", DstPort: 445}}
	if n := len(a.Own([]schema.Event{flow})) + len(b.Own([]schema.Event{flow})); n != 1 {
		t.Errorf("one lateral movement seen by two sensors kept %d times, want once", n)
	}
	// A claim's window ends: the fact may be raised again.
	c := claim{key: "test.window", window: time.Second}
	if ok, err := f.Claim(ctx, c); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if ok, _ := f.Claim(ctx, c); ok {
		t.Error("a claim taken twice within its window")
	}
	waitFor(t, "the claim's window to end", 10*time.Second, func() bool { ok, _ := f.Claim(ctx, c); return ok })
}

// A sensor whose clock is minutes off is flagged by name in fleet status
// and in every sensor's registry view; its records are judged by when
// they arrive, so its clock makes none of them look fresh or stale.
func TestSkewedSensorFlagged(t *testing.T) {
	t.Parallel()
	f := startSolo(t, "Skew Org", Options{Interval: time.Second})
	ctx := context.Background()
	js, _ := jetstream.New(f.Conn())
	sensors, err := js.KeyValue(ctx, BucketSensors)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(SensorRecord{Name: "late", Written: time.Now().Add(-7 * time.Minute)})
	if _, err := sensors.Put(ctx, "late", raw); err != nil {
		t.Fatal(err)
	}
	var late SensorRecord
	waitFor(t, "the skewed sensor's record", 10*time.Second, func() bool {
		for _, r := range f.Sensors() {
			if r.Name == "late" {
				late = r
				return true
			}
		}
		return false
	})
	if late.Skew > -6*time.Minute || time.Since(late.Received) > 5*time.Second {
		t.Errorf("skewed sensor: skew %v, received %v ago; want about -7m, received just now", late.Skew, time.Since(late.Received))
	}
	if d := time.Since(late.HeardSince); d < 0 || d > 5*time.Second {
		t.Errorf("the skewed sensor heard since %v ago by the local clock, want just now", d)
	}
	st, err := ReadStatus(ctx, f.Conn(), f.Name())
	if err != nil {
		t.Fatal(err)
	}
	flagged := false
	for _, p := range st.Problems {
		flagged = flagged || strings.Contains(p, "sensor late clock is off") && strings.Contains(p, "NTP")
	}
	if !flagged || st.Healthy {
		t.Errorf("fleet status does not flag the skewed sensor: healthy=%v problems=%q", st.Healthy, st.Problems)
	}
}

// startSolo starts a one-sensor fleet (a real embedded node) for org and
// waits until it is healthy.
func startSolo(t *testing.T, org string, opts Options) *Fleet {
	t.Helper()
	dirs := newFleetDirs(t, org, 1)
	cfg, err := Load(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	opts.Dir, opts.Config = dirs[0], cfg
	f, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	waitFor(t, "single-node fleet healthy", 20*time.Second, func() bool { ok, _ := f.Healthy(); return ok })
	return f
}
