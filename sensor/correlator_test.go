package sensor

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// t0 is "t = 0 s" in the rule tables: well after the sensor started, so the
// startup grace is over unless a test says otherwise.
var (
	sensorStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t0          = sensorStart.Add(10 * time.Minute)
)

type harness struct {
	t      *testing.T
	clock  *ManualClock
	c      *Correlator
	events []schema.Event
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	clock := &ManualClock{T: sensorStart}
	c, err := NewCorrelator(cfg, clock)
	if err != nil {
		t.Fatal(err)
	}
	clock.Set(t0)
	return &harness{t: t, clock: clock, c: c}
}

// at moves the clock to t0 + sec.
func (h *harness) at(sec float64) *harness {
	h.clock.Set(t0.Add(time.Duration(sec * float64(time.Second))))
	return h
}

func (h *harness) now() time.Time { return h.clock.Now() }

func (h *harness) add(evs []schema.Event) {
	for _, ev := range evs {
		if n := len(h.events); n > 0 && ev.Seq <= h.events[n-1].Seq {
			h.t.Fatalf("sequence not increasing: %d after %d", ev.Seq, h.events[n-1].Seq)
		}
		h.events = append(h.events, ev)
	}
}

func (h *harness) hello(id string, health schema.Health, macs ...string) {
	h.t.Helper()
	var itfs []schema.Interface
	for i, m := range macs {
		itfs = append(itfs, schema.Interface{
			Name: "eth" + string(rune('0'+i)), MAC: schema.MustParseMAC(m),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(len(id)), byte(10 + i + len(h.c.byID)*4)})},
		})
	}
	evs, err := h.c.Hello(schema.Hello{EndpointID: id, Name: "host-" + id, Org: "acme", Health: health, Interfaces: itfs, Users: []string{"alice"}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.add(evs)
}

func (h *harness) helloIPs(id string, health schema.Health, mac string, ips ...string) {
	h.t.Helper()
	itf := schema.Interface{Name: "eth0", MAC: schema.MustParseMAC(mac)}
	for _, ip := range ips {
		itf.IPs = append(itf.IPs, netip.MustParseAddr(ip))
	}
	evs, err := h.c.Hello(schema.Hello{EndpointID: id, Name: "host-" + id, Org: "acme", Health: health, Interfaces: []schema.Interface{itf}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.add(evs)
}

func (h *harness) heartbeat(id string, health schema.Health) {
	h.t.Helper()
	evs, err := h.c.Heartbeat(schema.Heartbeat{EndpointID: id, Health: health})
	if err != nil {
		h.t.Fatal(err)
	}
	h.add(evs)
}

// traffic reports one frame from mac at the current time.
func (h *harness) traffic(mac string, ips ...string) {
	s := schema.TrafficSummary{MAC: schema.MustParseMAC(mac), Packets: 1, Bytes: 60, FirstSeen: h.now(), LastSeen: h.now()}
	for _, ip := range ips {
		s.IPs = append(s.IPs, netip.MustParseAddr(ip))
	}
	h.add(h.c.Traffic([]schema.TrafficSummary{s}))
}

func (h *harness) tick() { h.add(h.c.Tick()) }

// run advances second by second from the current time to t0+until, calling
// each(sec) before the tick of that second.
func (h *harness) run(from, until int, each func(sec int)) {
	for s := from; s <= until; s++ {
		h.at(float64(s))
		if each != nil {
			each(s)
		}
		h.tick()
	}
}

func (h *harness) ofType(typ schema.EventType) []schema.Event {
	var out []schema.Event
	for _, ev := range h.events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func (h *harness) status(id string) schema.Status {
	st, ok := h.c.Endpoint(id)
	if !ok {
		h.t.Fatalf("endpoint %s unknown", id)
	}
	return st.Status
}

// sec returns an event's time as seconds after t0.
func sec(ev schema.Event) float64 { return ev.Time.Sub(t0).Seconds() }

func TestMissingTiming(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	tests := []struct {
		name        string
		heartbeats  []int // seconds with a heartbeat (t=0 is the hello)
		trafficFrom int   // traffic every second from here (-1: none)
		trafficTo   int
		until       int
		wantMissing []float64 // times of heartbeat_missing events
		wantStatus  schema.Status
	}{
		{name: "continuous traffic: missing at exactly 45 s", trafficFrom: 0, trafficTo: 100, until: 60,
			wantMissing: []float64{45}, wantStatus: schema.StatusMissing},
		{name: "traffic from 50 s: offline at 45, missing once the wake-up grace (interval + reconnect grace) passed", trafficFrom: 50, trafficTo: 100, until: 70,
			wantMissing: []float64{68}, wantStatus: schema.StatusMissing},
		{name: "heartbeats every 15 s: never missing", heartbeats: []int{15, 30, 45, 60, 75, 90}, trafficFrom: 0, trafficTo: 100, until: 100,
			wantStatus: schema.StatusGreen},
		{name: "heartbeat late by 22 s (1.5 intervals): not missing", heartbeats: []int{22, 44, 66, 88}, trafficFrom: 0, trafficTo: 100, until: 100,
			wantStatus: schema.StatusGreen},
		{name: "last heartbeat at 44: missing at 89", heartbeats: []int{44}, trafficFrom: 0, trafficTo: 100, until: 100,
			wantMissing: []float64{89}, wantStatus: schema.StatusMissing},
		{name: "no traffic: offline, never missing", trafficFrom: -1, until: 120, wantStatus: schema.StatusOffline},
		{name: "traffic stopped at 29 s: nothing in the last interval, offline", trafficFrom: 0, trafficTo: 29, until: 120,
			wantStatus: schema.StatusOffline},
		{name: "traffic stopped at 31 s: still sent in the last interval, missing at 45", trafficFrom: 0, trafficTo: 31, until: 60,
			wantMissing: []float64{45}, wantStatus: schema.StatusMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.at(0).hello("e1", schema.HealthGreen, mac)
			hb := map[int]bool{}
			for _, s := range tc.heartbeats {
				hb[s] = true
			}
			h.run(1, tc.until, func(s int) {
				if hb[s] {
					h.heartbeat("e1", schema.HealthGreen)
				}
				if tc.trafficFrom >= 0 && s >= tc.trafficFrom && s <= tc.trafficTo {
					h.traffic(mac)
				}
			})
			var got []float64
			for _, ev := range h.ofType(schema.EventHeartbeatMissing) {
				got = append(got, sec(ev))
			}
			if !equalFloats(got, tc.wantMissing) {
				t.Errorf("heartbeat_missing at %v s, want %v s", got, tc.wantMissing)
			}
			if st := h.status("e1"); st != tc.wantStatus {
				t.Errorf("status %s, want %s", st, tc.wantStatus)
			}
		})
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRestoredByNextHeartbeat(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthYellow, mac)
	h.run(1, 99, func(int) { h.traffic(mac) })
	if st := h.status("e1"); st != schema.StatusMissing {
		t.Fatalf("status %s, want missing", st)
	}
	h.at(100).heartbeat("e1", schema.HealthYellow)
	restored := h.ofType(schema.EventHeartbeatRestored)
	if len(restored) != 1 {
		t.Fatalf("%d heartbeat_restored events, want 1", len(restored))
	}
	ev := restored[0]
	if ev.Status != schema.StatusYellow || ev.PreviousStatus != schema.StatusMissing {
		t.Errorf("restored %s -> %s, want missing -> yellow", ev.PreviousStatus, ev.Status)
	}
	if got := details[schema.HeartbeatRestoredDetails](ev).MissingForSeconds; got != 55.0 {
		t.Errorf("missing_for_seconds %v, want 55 (missing from 45 s to 100 s)", got)
	}
	if got := details[schema.HeartbeatRestoredDetails](ev).SilentForSeconds; got != 100.0 {
		t.Errorf("silent_for_seconds %v, want 100", got)
	}
	if !strings.Contains(ev.Reason, "55s") {
		t.Errorf("reason %q does not say how long it was missing", ev.Reason)
	}
	// And it is judged afresh from the new heartbeat.
	h.run(101, 144, func(int) { h.traffic(mac) })
	if n := len(h.ofType(schema.EventHeartbeatMissing)); n != 1 {
		t.Errorf("%d heartbeat_missing events by 144 s, want still 1", n)
	}
	h.run(145, 145, func(int) { h.traffic(mac) })
	if n := len(h.ofType(schema.EventHeartbeatMissing)); n != 2 {
		t.Errorf("%d heartbeat_missing events at 145 s, want 2", n)
	}
}

func TestAnyInterfaceCounts(t *testing.T) {
	const wired, wifi = "02:00:00:00:00:01", "02:00:00:00:00:02"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, wired, wifi)
	// Traffic only on the second interface keeps the endpoint on the network.
	h.run(1, 60, func(int) { h.traffic(wifi) })
	if st := h.status("e1"); st != schema.StatusMissing {
		t.Fatalf("traffic on the second MAC: status %s, want missing", st)
	}
	if ev := h.ofType(schema.EventHeartbeatMissing)[0]; sec(ev) != 45 {
		t.Errorf("missing at %v s, want 45", sec(ev))
	}
	if ev := h.ofType(schema.EventHeartbeatMissing)[0]; len(ev.MACs) != 2 {
		t.Errorf("missing event names MACs %v, want both", ev.MACs)
	}
}

func TestOfflineIsNotAnAlert(t *testing.T) {
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, "02:00:00:00:00:01")
	h.run(1, 50, nil)
	changes := h.ofType(schema.EventStatusChanged)
	last := changes[len(changes)-1]
	if last.Status != schema.StatusOffline || sec(last) != 45 {
		t.Fatalf("last status change %s at %v s, want offline at 45", last.Status, sec(last))
	}
	if last.IsAlert() {
		t.Errorf("offline is an alert (severity %s), want info", last.Severity)
	}
	// A silent offline endpoint that starts sending becomes missing once
	// its agent had an interval and the reconnect grace to come back (a
	// laptop waking up).
	h.run(51, 68, func(int) { h.traffic("02:00:00:00:00:01") })
	if st := h.status("e1"); st != schema.StatusOffline {
		t.Errorf("offline endpoint sending for 17 s: status %s, want still offline", st)
	}
	h.run(69, 69, func(int) { h.traffic("02:00:00:00:00:01") })
	if st := h.status("e1"); st != schema.StatusMissing {
		t.Errorf("offline endpoint sending: status %s, want missing", st)
	}
}

func TestDisconnectKeepsStatusUntilDeadline(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, mac)
	h.at(10)
	h.add(h.c.Disconnect(schema.Disconnect{EndpointID: "e1", Cause: schema.CauseCloseNotify}))
	if d := h.ofType(schema.EventEndpointDisconnected); len(d) != 1 || d[0].IsAlert() {
		t.Fatalf("disconnect events %+v, want one informational", d)
	}
	h.run(11, 44, func(int) { h.traffic(mac) })
	if st := h.status("e1"); st != schema.StatusGreen {
		t.Fatalf("status %s before the deadline, want green", st)
	}
	h.run(45, 45, func(int) { h.traffic(mac) })
	if st := h.status("e1"); st != schema.StatusMissing {
		t.Fatalf("status %s at the deadline, want missing (agent stopped, host still talks)", st)
	}
}

func TestEscalationLadder(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, mac)
	// Two hours of traffic, ticking every second.
	h.run(1, 2*3600, func(int) { h.traffic(mac) })
	var got []float64
	for _, ev := range h.ofType(schema.EventHeartbeatMissing) {
		got = append(got, sec(ev))
	}
	want := []float64{45, 300, 3600}
	if !equalFloats(got, want) {
		t.Fatalf("heartbeat_missing at %v s, want %v s", got, want)
	}
	for i, ev := range h.ofType(schema.EventHeartbeatMissing) {
		if details[schema.HeartbeatMissingDetails](ev).Escalation != i+1 {
			t.Errorf("alert %d: escalation %v, want %d", i, details[schema.HeartbeatMissingDetails](ev).Escalation, i+1)
		}
	}
}

func TestLadderSkipsRealertWhenSilent(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, mac)
	h.run(1, 60, func(int) { h.traffic(mac) })
	// The host leaves the network: no re-alert at 5 min about a silent host.
	h.run(61, 400, nil)
	if n := len(h.ofType(schema.EventHeartbeatMissing)); n != 1 {
		t.Errorf("%d heartbeat_missing events, want 1 (no re-alert without traffic)", n)
	}
}

func TestHealthChanges(t *testing.T) {
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, "02:00:00:00:00:01")
	h.at(15).heartbeat("e1", schema.HealthYellow)
	h.at(30).heartbeat("e1", schema.HealthRed)
	h.at(45).heartbeat("e1", schema.HealthRed)
	h.at(60).heartbeat("e1", schema.HealthGreen)
	var got []string
	for _, ev := range h.ofType(schema.EventStatusChanged) {
		got = append(got, string(ev.PreviousStatus)+">"+string(ev.Status)+":"+ev.Severity.String())
	}
	want := []string{">green:info", "green>yellow:warning", "yellow>red:error", "red>green:notice"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("status changes %v, want %v", got, want)
	}
}

func TestNoHeartbeat(t *testing.T) {
	cfg := Config{Infrastructure: []string{"02:00:00:00:00:fe", "00:00:5e:00:01"}}
	h := newHarness(t, cfg)
	const stranger, gateway, vrrp = "02:00:00:00:00:99", "02:00:00:00:00:fe", "00:00:5e:00:01:07"
	h.run(0, 40, func(int) {
		h.traffic(stranger, "10.0.0.99")
		h.traffic(gateway, "10.0.0.1")
		h.traffic(vrrp)
		h.traffic("ff:ff:ff:ff:ff:ff")
		h.traffic("01:00:5e:00:00:fb")
	})
	nh := h.ofType(schema.EventNoHeartbeat)
	if len(nh) != 1 {
		t.Fatalf("%d no_heartbeat events, want exactly 1 (the stranger, once)", len(nh))
	}
	if sec(nh[0]) != 15 || nh[0].MACs[0] != schema.MustParseMAC(stranger) || nh[0].IPs[0] != netip.MustParseAddr("10.0.0.99") {
		t.Errorf("no_heartbeat %+v, want %s with 10.0.0.99 at 15 s", nh[0], stranger)
	}
	inv := h.c.Unmanaged()
	if len(inv) != 1 || inv[0].MAC.String() != stranger || inv[0].Packets != 41 {
		t.Fatalf("unmanaged inventory %+v, want the stranger with 41 packets", inv)
	}
	// Enrolling the station removes it from the inventory, and no new alert.
	h.at(41).hello("e9", schema.HealthGreen, stranger)
	h.run(42, 80, func(int) { h.traffic(stranger) })
	if len(h.c.Unmanaged()) != 0 || len(h.ofType(schema.EventNoHeartbeat)) != 1 {
		t.Errorf("after enrolment: inventory %v, no_heartbeat events %d", h.c.Unmanaged(), len(h.ofType(schema.EventNoHeartbeat)))
	}
}

func TestRevokedEndpointHasNoHeartbeat(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, mac)
	h.at(5)
	h.add(h.c.Remove("e1"))
	h.run(6, 30, func(int) { h.traffic(mac) })
	nh := h.ofType(schema.EventNoHeartbeat)
	if len(nh) != 1 || sec(nh[0]) != 21 {
		t.Fatalf("no_heartbeat events %+v, want one at 21 s (15 s after its traffic became unclaimed)", nh)
	}
	if _, ok := h.c.Endpoint("e1"); ok {
		t.Error("revoked endpoint still listed")
	}
}

func TestMACConflict(t *testing.T) {
	const shared = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, shared)
	h.at(1).hello("e2", schema.HealthGreen, shared, "02:00:00:00:00:02")
	mc := h.ofType(schema.EventMACConflict)
	if len(mc) != 1 {
		t.Fatalf("%d mac_conflict events, want 1", len(mc))
	}
	if mc[0].EndpointID != "e2" || !slices.Contains(details[schema.MACConflictDetails](mc[0]).Contested, shared) ||
		!slices.Contains(details[schema.MACConflictDetails](mc[0]).HeldBy, "host-e1") {
		t.Errorf("mac_conflict %+v, want e2 contesting e1's %s", mc[0], shared)
	}
	// A claim is not proof: the MAC stays with e1, which its traffic keeps
	// judging; e2 is judged by its own MAC only.
	h.at(15).heartbeat("e2", schema.HealthGreen)
	h.at(30).heartbeat("e2", schema.HealthGreen)
	h.run(31, 46, func(int) { h.traffic(shared) })
	if st := h.status("e1"); st != schema.StatusMissing {
		t.Errorf("e1 status %s, want missing (its MAC sends, it does not heartbeat)", st)
	}
	if st := h.status("e2"); st != schema.StatusGreen {
		t.Errorf("e2 status %s, want green", st)
	}
	// A re-hello with the same claims is no new conflict.
	h.at(47).hello("e2", schema.HealthGreen, shared, "02:00:00:00:00:02")
	if n := len(h.ofType(schema.EventMACConflict)); n != 1 {
		t.Errorf("%d mac_conflict events after a re-hello, want 1", n)
	}
}

// TestMACMovesWithTheWire: a MAC another endpoint declared moves to the
// endpoint whose heartbeat connection the mirror port shows on it (a USB
// adapter moved between laptops), whichever comes first, flow or hello.
func TestMACMovesWithTheWire(t *testing.T) {
	const shared = "02:00:00:00:00:01"
	sensorAddr := netip.MustParseAddrPort("10.0.0.1:8347")
	for _, flowFirst := range []bool{true, false} {
		h := newHarness(t, Config{SensorAddrs: []netip.AddrPort{sensorAddr}})
		h.at(0).hello("e1", schema.HealthGreen, shared)
		remote := netip.MustParseAddrPort("10.0.9.9:40000")
		flow := schema.Flow{SrcMAC: schema.MustParseMAC(shared), SrcIP: remote.Addr(), DstIP: sensorAddr.Addr(), DstPort: 8347, Proto: 6}
		h.at(1)
		if flowFirst {
			h.add(h.c.FlowStart(flow))
		}
		evs, err := h.c.Hello(schema.Hello{EndpointID: "e2", Name: "host-e2", Health: schema.HealthGreen, Remote: remote,
			Interfaces: []schema.Interface{{Name: "usb0", MAC: schema.MustParseMAC(shared)}}})
		if err != nil {
			t.Fatal(err)
		}
		h.add(evs)
		if !flowFirst {
			h.add(h.c.FlowStart(flow))
		}
		mc := h.ofType(schema.EventMACConflict)
		// Flow first: one event, the move. Hello first: the claim is
		// contested until the flow shows up, then moved.
		if want := map[bool]int{true: 1, false: 2}[flowFirst]; len(mc) != want || details[schema.MACConflictDetails](mc[len(mc)-1]).Moved == nil {
			t.Fatalf("flow first %v: mac_conflict events %+v, want %d, the last saying the MAC moved", flowFirst, mc, want)
		}
		if !h.c.owns(h.c.endpoints[h.c.byID["e2"]], schema.MustParseMAC(shared)) {
			t.Fatalf("flow first %v: the MAC did not move to e2", flowFirst)
		}
	}
}

// TestClaimOfAnotherEndpoint: p declares v's MAC and IP and goes away. v
// keeps heartbeating: it is never on the at-risk list, p's missing verdict
// (if any) names none of v's addresses, and the hello's details (what
// history binds) hold none of them.
func TestClaimOfAnotherEndpoint(t *testing.T) {
	const vMAC, pMAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
	h := newHarness(t, Config{})
	h.at(0).helloIPs("v", schema.HealthGreen, vMAC, "10.0.0.10")
	h.at(1).helloIPs("p", schema.HealthGreen, pMAC, "10.0.0.11")
	h.at(2)
	evs, err := h.c.Hello(schema.Hello{EndpointID: "p", Name: "host-p", Health: schema.HealthGreen, Interfaces: []schema.Interface{
		{Name: "eth0", MAC: schema.MustParseMAC(pMAC), IPs: []netip.Addr{netip.MustParseAddr("10.0.0.11")}},
		{Name: "eth1", MAC: schema.MustParseMAC(vMAC), IPs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h.add(evs)
	for _, ev := range evs {
		if ev.Type != schema.EventEndpointHello {
			continue
		}
		for _, itf := range details[schema.HelloDetails](ev).Interfaces {
			if itf.MAC == schema.MustParseMAC(vMAC) || slices.Contains(itf.IPs, netip.MustParseAddr("10.0.0.10")) {
				t.Fatalf("p's hello binds v's address in history: %+v", itf)
			}
		}
	}
	h.add(h.c.Disconnect(schema.Disconnect{EndpointID: "p", Cause: schema.CauseCloseNotify}))
	h.run(3, 120, func(s int) {
		h.traffic(vMAC, "10.0.0.10")
		h.traffic(pMAC, "10.0.0.11")
		if s%15 == 0 {
			h.heartbeat("v", schema.HealthGreen)
		}
		for _, e := range h.c.AtRisk().Endpoints {
			if e.EndpointID == "v" || slices.Contains(e.MACs, schema.MustParseMAC(vMAC)) || slices.Contains(e.IPs, netip.MustParseAddr("10.0.0.10")) {
				t.Fatalf("at %d s the at-risk list names v or its addresses: %+v", s, e)
			}
		}
	})
	if st := h.status("p"); st != schema.StatusMissing {
		t.Fatalf("p status %s, want missing (its own MAC sends)", st)
	}
	if n := len(h.ofType(schema.EventMACConflict)); n != 1 {
		t.Fatalf("%d mac_conflict events, want 1", n)
	}
	for _, ev := range h.ofType(schema.EventHeartbeatMissing) {
		if ev.EndpointID == "v" || slices.Contains(ev.MACs, schema.MustParseMAC(vMAC)) || slices.Contains(ev.IPs, netip.MustParseAddr("10.0.0.10")) {
			t.Fatalf("missing verdict touches v: %+v", ev)
		}
	}
	if st := h.status("v"); st != schema.StatusGreen {
		t.Fatalf("v status %s, want green", st)
	}
}

func TestBlindSpotCaptureDown(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, mac)
	h.add(h.c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: true, Packets: 10, Time: h.now()}))
	h.run(1, 29, func(int) { h.traffic(mac) })
	h.at(30)
	h.add(h.c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: false, Reason: "interface removed", Time: h.now()}))
	deg := h.ofType(schema.EventCaptureDegraded)
	if len(deg) != 1 || !strings.Contains(deg[0].Reason, "cap0") || !strings.Contains(deg[0].Reason, "interface removed") {
		t.Fatalf("capture_degraded %+v, want one naming cap0 and the reason", deg)
	}
	h.run(31, 59, nil)
	if st := h.status("e1"); st != schema.StatusUnknown {
		t.Fatalf("status %s while blind past the deadline, want unknown", st)
	}
	if n := len(h.ofType(schema.EventHeartbeatMissing)); n != 0 {
		t.Fatalf("missing raised while blind")
	}
	h.at(60)
	h.add(h.c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: true, Packets: 5, Time: h.now()}))
	if n := len(h.ofType(schema.EventCaptureRestored)); n != 1 {
		t.Fatalf("%d capture_restored events, want 1", n)
	}
	h.run(60, 80, func(int) { h.traffic(mac) })
	miss := h.ofType(schema.EventHeartbeatMissing)
	if len(miss) != 1 || sec(miss[0]) != 75 {
		t.Fatalf("heartbeat_missing %v, want one at 75 s (one clean interval after the capture came back)", miss)
	}
}

func TestBlindSpotDrops(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, mac)
	h.run(1, 44, func(s int) {
		h.traffic(mac)
		drops := uint64(0)
		if s == 40 {
			drops = 50 // 5 % of 1000 frames: above the 1 % threshold
		}
		h.add(h.c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: true, Packets: 1000, Drops: drops, Time: h.now()}))
	})
	deg := h.ofType(schema.EventCaptureDegraded)
	if len(deg) != 1 || sec(deg[0]) != 40 || !strings.Contains(deg[0].Reason, "dropped 50 of 1000") {
		t.Fatalf("capture_degraded %+v, want one at 40 s naming the drops", deg)
	}
	h.run(45, 80, func(int) {
		h.traffic(mac)
		h.add(h.c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: true, Packets: 1000, Time: h.now()}))
	})
	if st := h.status("e1"); st != schema.StatusMissing {
		t.Fatalf("status %s, want missing after the capture recovered", st)
	}
	// Lossy until 55 s, then one clean interval: the verdict comes at 70 s.
	if miss := h.ofType(schema.EventHeartbeatMissing); sec(miss[0]) != 70 {
		t.Errorf("missing at %v s, want 70", sec(miss[0]))
	}
	if st := h.ofType(schema.EventStatusChanged); st[len(st)-1].Status != schema.StatusUnknown {
		t.Errorf("last status change %s, want unknown during the blind spot", st[len(st)-1].Status)
	}
}

func TestQuietCaptureIsBlind(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.at(0).hello("e1", schema.HealthGreen, mac)
	h.add(h.c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: true, Packets: 3, Time: h.now()}))
	// The link stays up but nothing arrives, while the endpoint heartbeats.
	h.run(1, 60, func(s int) {
		if s%15 == 0 {
			h.heartbeat("e1", schema.HealthGreen)
		}
		h.add(h.c.CaptureHealth(schema.CaptureHealth{Interface: "cap0", Up: true, Time: h.now()}))
	})
	deg := h.ofType(schema.EventCaptureDegraded)
	if len(deg) != 1 || sec(deg[0]) != 45 || !strings.Contains(deg[0].Reason, "no frame") {
		t.Fatalf("capture_degraded %+v, want one at 45 s saying the capture is quiet", deg)
	}
}

func TestStartupGrace(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	clock := &ManualClock{T: sensorStart.Add(-time.Hour)}
	old, _ := NewCorrelator(Config{}, clock)
	if _, err := old.Hello(schema.Hello{EndpointID: "e1", Name: "h1", Health: schema.HealthGreen, Interfaces: []schema.Interface{{MAC: schema.MustParseMAC(mac)}}}); err != nil {
		t.Fatal(err)
	}
	snap := old.Snapshot()

	// The sensor restarts an hour later; its agent has not reconnected yet.
	clock.Set(sensorStart)
	c, _ := NewCorrelator(Config{}, clock)
	if err := c.Restore(snap); err != nil {
		t.Fatal(err)
	}
	var missingAt []time.Duration
	var noHB int
	for s := 0; s <= 60; s++ {
		clock.Set(sensorStart.Add(time.Duration(s) * time.Second))
		c.Traffic([]schema.TrafficSummary{{MAC: schema.MustParseMAC(mac), Packets: 1, FirstSeen: clock.T, LastSeen: clock.T}})
		c.Traffic([]schema.TrafficSummary{{MAC: schema.MustParseMAC("02:00:00:00:00:77"), Packets: 1, FirstSeen: clock.T, LastSeen: clock.T}})
		for _, ev := range c.Tick() {
			switch ev.Type {
			case schema.EventHeartbeatMissing:
				missingAt = append(missingAt, ev.Time.Sub(sensorStart))
			case schema.EventNoHeartbeat:
				noHB++
			}
		}
	}
	if len(missingAt) != 1 || missingAt[0] != 45*time.Second {
		t.Errorf("missing at %v after start, want once at 45s (after the grace)", missingAt)
	}
	if noHB != 1 {
		t.Errorf("%d no_heartbeat events, want 1 after the grace", noHB)
	}
	if got := c.NextSeq(); got <= snap.NextSeq {
		t.Errorf("next seq %d did not continue from the snapshot's %d", got, snap.NextSeq)
	}
}

func TestPolicies(t *testing.T) {
	cfg := Config{Policies: []Policy{
		{Name: "allow-dns", Destinations: []string{"10.9.0.53"}, Ports: []uint16{53}},
		{Name: "servers-need-green", Destinations: []string{"10.9.0.0/24"}, MinSourceHealth: MinGreen, AlertSourceWithoutHeartbeat: true},
		{Name: "lan", MinDestinationHealth: MinYellow},
	}}
	const (
		green, yellow, server = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
		stranger, redHost     = "02:00:00:00:00:99", "02:00:00:00:00:04"
	)
	flow := func(srcMAC, srcIP, dstMAC, dstIP string, port uint16) schema.Flow {
		return schema.Flow{SrcMAC: schema.MustParseMAC(srcMAC), SrcIP: netip.MustParseAddr(srcIP), DstMAC: schema.MustParseMAC(dstMAC),
			DstIP: netip.MustParseAddr(dstIP), Proto: 6, DstPort: port}
	}
	tests := []struct {
		name string
		flow schema.Flow
		want string // "" no violation, else the policy name
	}{
		{"green to server", flow(green, "10.1.0.1", server, "10.9.0.10", 443), ""},
		{"yellow to server", flow(yellow, "10.1.0.2", server, "10.9.0.10", 443), "servers-need-green"},
		{"yellow to DNS: first matching rule allows", flow(yellow, "10.1.0.2", server, "10.9.0.53", 53), ""},
		{"yellow to DNS on another port", flow(yellow, "10.1.0.2", server, "10.9.0.53", 80), "servers-need-green"},
		{"unenrolled to server", flow(stranger, "10.1.0.99", server, "10.9.0.10", 443), "servers-need-green"},
		{"unenrolled to a LAN host: no flag for destinations without heartbeat", flow(stranger, "10.1.0.99", stranger, "10.1.0.98", 22), ""},
		{"green to red LAN host", flow(green, "10.1.0.1", redHost, "10.1.0.4", 445), "lan"},
		{"green to yellow LAN host", flow(green, "10.1.0.1", yellow, "10.1.0.2", 445), ""},
		{"routed: gateway MAC, source known by IP", flow("02:00:00:00:00:fe", "10.1.0.2", server, "10.9.0.10", 443), "servers-need-green"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, cfg)
			h.at(0)
			h.helloIPs("g", schema.HealthGreen, green, "10.1.0.1")
			h.helloIPs("y", schema.HealthYellow, yellow, "10.1.0.2")
			h.helloIPs("s", schema.HealthGreen, server, "10.9.0.10")
			h.helloIPs("r", schema.HealthRed, redHost, "10.1.0.4")
			h.add(h.c.FlowStart(tc.flow))
			pv := h.ofType(schema.EventPolicyViolation)
			switch {
			case tc.want == "" && len(pv) > 0:
				t.Errorf("unexpected violation: %s", pv[0].Reason)
			case tc.want != "" && (len(pv) != 1 || details[schema.FlowDetails](pv[0]).Policy != tc.want):
				t.Errorf("violations %+v, want one of policy %s", pv, tc.want)
			}
		})
	}
}

func TestPolicyDedupWindow(t *testing.T) {
	cfg := Config{Policies: []Policy{{Name: "need-green", MinSourceHealth: MinGreen}}}
	h := newHarness(t, cfg)
	h.at(0).helloIPs("y", schema.HealthYellow, "02:00:00:00:00:02", "10.1.0.2")
	f := schema.Flow{SrcMAC: schema.MustParseMAC("02:00:00:00:00:02"), SrcIP: netip.MustParseAddr("10.1.0.2"),
		DstMAC: schema.MustParseMAC("02:00:00:00:00:09"), DstIP: netip.MustParseAddr("10.1.0.9"), Proto: 6, DstPort: 22}
	for _, s := range []float64{1, 100, 299} {
		h.at(s)
		h.add(h.c.FlowStart(f))
	}
	other := f
	other.DstPort = 23
	h.add(h.c.FlowStart(other))
	h.at(302)
	h.add(h.c.FlowStart(f))
	var got []float64
	for _, ev := range h.ofType(schema.EventPolicyViolation) {
		got = append(got, sec(ev))
	}
	if !equalFloats(got, []float64{1, 299, 302}) {
		t.Errorf("violations at %v s, want [1 299 302] (port 23 is a new key; 22 again after 5 min)", got)
	}
}

func TestLateralMovement(t *testing.T) {
	const red, green, peer = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
	h := newHarness(t, Config{})
	h.at(0)
	h.helloIPs("r", schema.HealthRed, red, "10.1.0.1")
	h.helloIPs("g", schema.HealthGreen, green, "10.1.0.2")
	flow := func(src, srcIP, dst, dstIP string) {
		h.add(h.c.FlowStart(schema.Flow{SrcMAC: schema.MustParseMAC(src), SrcIP: netip.MustParseAddr(srcIP),
			DstMAC: schema.MustParseMAC(dst), DstIP: netip.MustParseAddr(dstIP), Proto: 6, DstPort: 445}))
	}
	h.at(1)
	flow(red, "10.1.0.1", green, "10.1.0.2")  // outbound from red
	flow(green, "10.1.0.2", red, "10.1.0.1")  // same pair, inbound: de-duplicated
	flow(red, "10.1.0.1", peer, "10.1.0.3")   // another peer
	flow(green, "10.1.0.2", peer, "10.1.0.3") // green to unknown: nothing
	flow(red, "10.1.0.1", "ff:ff:ff:ff:ff:ff", "10.1.0.255")
	lm := h.ofType(schema.EventLateralMovement)
	if len(lm) != 2 {
		t.Fatalf("%d lateral_movement events, want 2: %+v", len(lm), lm)
	}
	if lm[0].EndpointID != "r" || details[schema.FlowDetails](lm[0]).Peer != "host-g" || lm[0].Severity != schema.SeverityCritical {
		t.Errorf("first lateral movement %+v, want r -> host-g, critical", lm[0])
	}
	if details[schema.FlowDetails](lm[1]).Peer != "10.1.0.3" {
		t.Errorf("second lateral movement peer %v, want 10.1.0.3", details[schema.FlowDetails](lm[1]).Peer)
	}
	// A missing endpoint counts too.
	h2 := newHarness(t, Config{})
	h2.at(0).helloIPs("m", schema.HealthGreen, red, "10.1.0.1")
	h2.run(1, 46, func(int) { h2.traffic(red) })
	h2.add(h2.c.FlowStart(schema.Flow{SrcMAC: schema.MustParseMAC(peer), SrcIP: netip.MustParseAddr("10.1.0.3"),
		DstMAC: schema.MustParseMAC(red), DstIP: netip.MustParseAddr("10.1.0.1"), Proto: 17, DstPort: 53}))
	if lm := h2.ofType(schema.EventLateralMovement); len(lm) != 1 || details[schema.FlowDetails](lm[0]).Direction != "inbound" {
		t.Errorf("lateral movement to a missing endpoint: %+v", lm)
	}
}

func TestAtRiskList(t *testing.T) {
	h := newHarness(t, Config{})
	h.at(0)
	h.hello("a", schema.HealthGreen, "02:00:00:00:00:01")
	h.hello("b", schema.HealthYellow, "02:00:00:00:00:02")
	h.hello("c", schema.HealthRed, "02:00:00:00:00:03")
	h.hello("d", schema.HealthGreen, "02:00:00:00:00:04")
	h.run(1, 50, func(s int) {
		if s%15 == 0 {
			for _, id := range []string{"a", "b", "c"} {
				h.heartbeat(id, h.mustState(id).Health)
			}
		}
		for i := 1; i <= 4; i++ {
			mac := fmt.Sprintf("02:00:00:00:00:%02d", i)
			mi := h.c.macIndex[schema.MustParseMAC(mac)]
			ips := h.c.endpoints[h.c.macs[mi].owner].ips
			h.traffic(mac, ips[0].String())
		}
	})
	list := h.c.AtRisk()
	var got []string
	for _, e := range list.Endpoints {
		got = append(got, e.EndpointID+":"+string(e.Status))
		if len(e.MACs) != 1 || len(e.IPs) != 1 {
			t.Errorf("%s: MACs %v IPs %v, want one of each", e.EndpointID, e.MACs, e.IPs)
		}
	}
	if strings.Join(got, ",") != "b:yellow,c:red,d:missing" {
		t.Errorf("at-risk list %v, want b:yellow, c:red, d:missing", got)
	}
}

func (h *harness) mustState(id string) schema.EndpointState {
	st, ok := h.c.Endpoint(id)
	if !ok {
		h.t.Fatalf("no endpoint %s", id)
	}
	return st
}

func TestRecordAndBadInput(t *testing.T) {
	h := newHarness(t, Config{})
	h.at(0)
	h.add(h.c.Record(schema.Event{Type: schema.EventAuthFailed, Severity: schema.SeverityWarning, Reason: "unknown certificate"}))
	h.hello("a", schema.HealthGreen, "02:00:00:00:00:01")
	if h.events[0].Seq != 1 || h.events[0].Time != h.now() {
		t.Errorf("recorded event %+v, want seq 1 stamped now", h.events[0])
	}
	if _, err := h.c.Heartbeat(schema.Heartbeat{EndpointID: "nobody", Health: schema.HealthGreen}); err == nil {
		t.Error("heartbeat from an unknown endpoint accepted")
	}
	if _, err := h.c.Heartbeat(schema.Heartbeat{EndpointID: "a", Health: 9}); err == nil {
		t.Error("invalid health accepted")
	}
	if _, err := h.c.Hello(schema.Hello{Health: schema.HealthGreen}); err == nil {
		t.Error("hello without an id accepted")
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []Config{
		{Infrastructure: []string{"zz:00"}},
		{Policies: []Policy{{Name: "x", Sources: []string{"10.0.0.0/33"}}}},
		{Policies: []Policy{{Name: "x"}, {Name: "x"}}},
		{MissingRealert: []time.Duration{time.Minute, time.Second}},
		{DropThreshold: 2},
	}
	for i, cfg := range bad {
		if err := cfg.Validate(); err == nil {
			t.Errorf("config %d accepted: %+v", i, cfg)
		}
	}
	if err := (Config{Policies: []Policy{{Name: "ok", Sources: []string{"10.0.0.0/8", "192.0.2.7"}}}}).Validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func TestScaledInterval(t *testing.T) {
	// A 2 s interval (the demo's) scales the deadline and the no-heartbeat delay.
	h := newHarness(t, Config{HeartbeatInterval: 2 * time.Second})
	h.at(0).hello("e1", schema.HealthGreen, "02:00:00:00:00:01")
	h.run(1, 10, func(int) {
		h.traffic("02:00:00:00:00:01")
		h.traffic("02:00:00:00:00:99")
	})
	if miss := h.ofType(schema.EventHeartbeatMissing); len(miss) != 1 || sec(miss[0]) != 6 {
		t.Errorf("missing %v, want at 6 s", miss)
	}
	if nh := h.ofType(schema.EventNoHeartbeat); len(nh) != 1 || sec(nh[0]) != 3 {
		t.Errorf("no_heartbeat %v, want at 3 s", nh)
	}
}

func TestHeartbeatChannel(t *testing.T) {
	sensorAddr := netip.MustParseAddrPort("10.1.0.250:8347")
	cfg := Config{SensorAddrs: []netip.AddrPort{sensorAddr},
		Policies: []Policy{{Name: "all-need-green", MinSourceHealth: MinGreen}}}
	const red = "02:00:00:00:00:01"
	h := newHarness(t, cfg)
	h.at(0).helloIPs("r", schema.HealthRed, red, "10.1.0.1")
	toSensor := schema.Flow{SrcMAC: schema.MustParseMAC(red), SrcIP: netip.MustParseAddr("10.1.0.1"),
		DstMAC: schema.MustParseMAC("02:00:00:00:00:fa"), DstIP: sensorAddr.Addr(), Proto: 6, DstPort: 8347}
	h.add(h.c.FlowStart(toSensor))
	if n := len(h.ofType(schema.EventPolicyViolation)) + len(h.ofType(schema.EventLateralMovement)); n != 0 {
		t.Fatalf("the heartbeat connection itself raised %d alerts", n)
	}
	// The agent keeps its connection but stops heartbeating.
	h.run(1, 45, func(s int) {
		h.traffic(red)
		if s%5 == 0 {
			h.add(h.c.FlowStart(toSensor))
		}
	})
	miss := h.ofType(schema.EventHeartbeatMissing)
	if len(miss) != 1 || !details[schema.HeartbeatMissingDetails](miss[0]).AgentConnectionSeen || !strings.Contains(miss[0].Reason, "agent present but silent") {
		t.Fatalf("missing %+v, want one saying the agent is present but silent", miss)
	}
}

func TestStateJSONWithoutHealth(t *testing.T) {
	b, err := json.Marshal(schema.EndpointState{ID: "e1", Status: schema.StatusOffline})
	if err != nil {
		t.Fatalf("an endpoint without a health report does not encode: %v", err)
	}
	if strings.Contains(string(b), "health") {
		t.Errorf("zero health written: %s", b)
	}
	var back schema.EndpointState
	if err := json.Unmarshal([]byte(`{"endpoint_id":"e1","health":""}`), &back); err != nil || back.Health != 0 {
		t.Errorf("empty health decodes to %v, %v", back.Health, err)
	}
}

// details returns ev's details as *T, or a zero T when they are of another type.
func details[T any](ev schema.Event) *T {
	if d, ok := any(ev.Details).(*T); ok {
		return d
	}
	return new(T)
}

// A station reported without heartbeat that an endpoint then declares is
// reported again if the endpoint lets its MAC go (revoked) while it keeps
// sending: the report ends when an endpoint declares the MAC. (A fleet
// sensor relies on it: a no_heartbeat it held back and dropped because a
// remote endpoint declares the MAC was raised in the correlator.)
func TestNoHeartbeatAgainOnceNoEndpointDeclaresTheMAC(t *testing.T) {
	const mac = "02:00:00:00:00:01"
	h := newHarness(t, Config{})
	h.run(0, 20, func(int) { h.traffic(mac) })
	if n := len(h.ofType(schema.EventNoHeartbeat)); n != 1 {
		t.Fatalf("%d no_heartbeat before the endpoint declared the MAC, want 1", n)
	}
	h.at(21).hello("e1", schema.HealthGreen, mac)
	h.run(22, 30, func(int) { h.traffic(mac) })
	if n := len(h.ofType(schema.EventNoHeartbeat)); n != 1 {
		t.Fatalf("%d no_heartbeat while e1 declares the MAC, want still 1", n)
	}
	h.add(h.c.Remove("e1"))
	h.run(31, 60, func(int) { h.traffic(mac) })
	if n := len(h.ofType(schema.EventNoHeartbeat)); n != 2 {
		t.Errorf("%d no_heartbeat after e1 was revoked and its MAC kept sending, want 2", n)
	}
}
