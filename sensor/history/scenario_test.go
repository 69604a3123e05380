package history

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// The scripted history used by the query tests. Times are UTC on Tuesday
// 2026-11-17 unless noted.
var (
	day0   = time.Date(2026, 11, 17, 0, 0, 0, 0, time.UTC)
	mac1   = schema.MustParseMAC("02:00:00:00:00:01") // laptop-1
	mac2   = schema.MustParseMAC("02:00:00:00:00:02") // unmanaged, later holds 10.1.2.3
	mac3   = schema.MustParseMAC("02:00:00:00:00:03") // laptop-2, goes missing
	ipA    = netip.MustParseAddr("10.1.2.3")
	ipB    = netip.MustParseAddr("10.1.2.50")
	ipC    = netip.MustParseAddr("10.1.2.7")
	ipMac2 = netip.MustParseAddr("10.1.2.99")
)

func at(h, m int) time.Time {
	return day0.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

// scenario drives a real correlator through the script and stores what it
// emits, as the daemon would.
type scenario struct {
	t     *testing.T
	clock *sensor.ManualClock
	c     *sensor.Correlator
	s     *Store
	all   []schema.Event
}

func newScenario(t *testing.T, s *Store) *scenario {
	t.Helper()
	clock := &sensor.ManualClock{T: at(8, 0)}
	c, err := sensor.NewCorrelator(sensor.Config{}, clock)
	if err != nil {
		t.Fatal(err)
	}
	return &scenario{t: t, clock: clock, c: c, s: s}
}

func (sc *scenario) store(evs []schema.Event, err error) {
	sc.t.Helper()
	if err != nil {
		sc.t.Fatal(err)
	}
	if len(evs) == 0 {
		return
	}
	if err := sc.s.Append(evs, nil); err != nil {
		sc.t.Fatal(err)
	}
	sc.all = append(sc.all, evs...)
}

func (sc *scenario) set(t time.Time) { sc.clock.Set(t) }

func (sc *scenario) hello(id, name string, m schema.MAC, ip netip.Addr, h schema.Health, users ...string) {
	sc.store(sc.c.Hello(schema.Hello{
		EndpointID: id, Name: name, Org: "acme", Health: h, Users: users,
		Interfaces: []schema.Interface{{Name: "eth0", MAC: m, IPs: []netip.Addr{ip}}},
	}))
}

func (sc *scenario) heartbeat(id string, h schema.Health, reasons ...string) {
	sc.store(sc.c.Heartbeat(schema.Heartbeat{EndpointID: id, Health: h, Reasons: reasons}))
}

func (sc *scenario) traffic(m schema.MAC, ip netip.Addr, first, last time.Time, packets uint64) {
	ts := []schema.TrafficSummary{{MAC: m, IPs: []netip.Addr{ip}, Packets: packets, Bytes: packets * 100, FirstSeen: first, LastSeen: last}}
	sc.store(sc.c.Traffic(ts), nil)
	if err := sc.s.AddTraffic(ts); err != nil {
		sc.t.Fatal(err)
	}
}

func (sc *scenario) bind(m schema.MAC, ip netip.Addr, src, host string, t time.Time) {
	if err := sc.s.AddBindings([]schema.Binding{{MAC: m, IP: ip, Source: src, Hostname: host, Time: t}}); err != nil {
		sc.t.Fatal(err)
	}
}

func (sc *scenario) tick() { sc.store(sc.c.Tick(), nil) }

// run plays the script:
//
//	08:00 laptop-1 (ep-1, mac1, 10.1.2.3, alice) and laptop-2 (ep-2, mac3) say hello, green
//	08:00 DHCP gives 10.1.2.3 to mac1; ARP confirms at 09:00 and 11:00
//	10:00 laptop-2's heartbeats have stopped since 08:00 but mac3 sends: missing
//	12:00 laptop-1 says hello again: alice and bob signed in
//	13:00 laptop-1 reports yellow
//	13:55 laptop-1 moves to 10.1.2.50
//	14:00 DHCP gives 10.1.2.3 to mac2 (host name printer-x), which sends and
//	      has no heartbeat
//	14:00-14:02 mac2 sends 10, 20, 30 packets in three minutes
func (sc *scenario) run() {
	sc.set(at(8, 0))
	sc.hello("ep-1", "laptop-1", mac1, ipA, schema.HealthGreen, "alice")
	sc.hello("ep-2", "laptop-2", mac3, ipC, schema.HealthGreen, "carol")
	sc.bind(mac1, ipA, "dhcp", "laptop-1", at(8, 0))
	sc.bind(mac1, ipA, "arp", "", at(9, 0))
	sc.bind(mac1, ipA, "arp", "", at(11, 0))

	sc.set(at(10, 0).Add(50 * time.Second))
	sc.heartbeat("ep-1", schema.HealthGreen)
	sc.traffic(mac1, ipA, at(10, 0), at(10, 0).Add(50*time.Second), 5)
	sc.traffic(mac3, ipC, at(10, 0), at(10, 0).Add(55*time.Second), 7)
	sc.set(at(10, 1))
	sc.tick()

	sc.set(at(12, 0))
	sc.hello("ep-1", "laptop-1", mac1, ipA, schema.HealthGreen, "alice", "bob")
	sc.set(at(13, 0))
	sc.heartbeat("ep-1", schema.HealthYellow, "signatures 2 days old")
	sc.set(at(13, 55))
	sc.hello("ep-1", "laptop-1", mac1, ipB, schema.HealthYellow, "alice", "bob")

	sc.set(at(14, 0).Add(25 * time.Second))
	sc.bind(mac2, ipA, "dhcp", "printer-x", at(14, 0))
	sc.heartbeat("ep-1", schema.HealthYellow, "signatures 2 days old")
	sc.traffic(mac2, ipA, at(14, 0), at(14, 0).Add(25*time.Second), 10)
	sc.traffic(mac3, ipC, at(14, 0), at(14, 0).Add(25*time.Second), 1)
	sc.set(at(14, 0).Add(30 * time.Second))
	sc.tick()
	sc.set(at(14, 1).Add(30 * time.Second))
	sc.traffic(mac2, ipA, at(14, 1), at(14, 1).Add(30*time.Second), 20)
	sc.bind(mac2, ipA, "arp", "", at(14, 1))
	sc.set(at(14, 2).Add(30 * time.Second))
	sc.traffic(mac2, ipA, at(14, 2), at(14, 2).Add(30*time.Second), 30)
}
