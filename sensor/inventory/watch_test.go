package inventory

import (
	"net/netip"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

func TestNewStationAfterLearning(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	known := schema.MustParseMAC("00:50:56:00:00:01")
	w := NewWatcher(WatchConfig{LearningPeriod: time.Hour, Vendors: Load()}, t0, []schema.MAC{known})
	early := schema.MustParseMAC("00:50:56:00:00:02")
	late := schema.MustParseMAC("00:50:56:00:00:03")
	evs, learnt := w.Traffic([]schema.TrafficSummary{
		{MAC: known, FirstSeen: t0.Add(2 * time.Hour)},
		{MAC: early, FirstSeen: t0.Add(30 * time.Minute)},
		{MAC: schema.MustParseMAC("ff:ff:ff:ff:ff:ff"), FirstSeen: t0.Add(2 * time.Hour)},
	})
	if len(evs) != 0 || len(learnt) != 1 || learnt[0].MAC != early {
		t.Fatalf("during learning: events %v, learnt %v", evs, learnt)
	}
	ip := netip.MustParseAddr("10.0.0.9")
	evs, learnt = w.Traffic([]schema.TrafficSummary{{MAC: late, IPs: []netip.Addr{ip}, FirstSeen: t0.Add(2 * time.Hour)}})
	if len(evs) != 1 || len(learnt) != 1 {
		t.Fatalf("after learning: events %v, learnt %v", evs, learnt)
	}
	d := evs[0].Details.(*schema.NewStationDetails)
	if evs[0].Type != schema.EventNewStation || d.MAC != late || d.Vendor != "VMware, Inc." || d.IP != ip {
		t.Fatalf("event %+v details %+v", evs[0], d)
	}
	if evs, _ := w.Traffic([]schema.TrafficSummary{{MAC: late, FirstSeen: t0.Add(3 * time.Hour)}}); len(evs) != 0 {
		t.Fatalf("second sighting raised %v", evs)
	}
}

func TestFlipFlop(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a := schema.MustParseMAC("00:50:56:00:00:0a")
	b := schema.MustParseMAC("02:00:00:00:00:0b")
	ip := netip.MustParseAddr("10.0.0.1")
	owner := func(m schema.MAC) (string, string) {
		if m == a {
			return "ep-1", "gateway-<b>"
		}
		return "", ""
	}
	w := NewWatcher(WatchConfig{FlipWindow: 10 * time.Minute, Owner: owner, Vendors: Load()}, t0, nil)
	if evs := w.Bindings([]schema.Binding{
		{MAC: a, IP: ip, Source: "arp", Time: t0},
		{MAC: a, IP: ip, Source: "arp", Time: t0.Add(time.Minute)},
		{MAC: b, IP: ip, Source: "traffic", Time: t0.Add(2 * time.Minute)}, // forwarded traffic is no claim
	}); len(evs) != 0 {
		t.Fatalf("no change yet: %v", evs)
	}
	evs := w.Bindings([]schema.Binding{{MAC: b, IP: ip, Source: "arp", Time: t0.Add(3 * time.Minute)}})
	if len(evs) != 1 {
		t.Fatalf("flip: %v", evs)
	}
	d := evs[0].Details.(*schema.IPMACChangedDetails)
	if d.OldMAC != a || d.NewMAC != b || d.OldEndpointName != "gateway-<b>" || d.NewVendor != LocallyAdministered || d.OldLastSeen != t0.Add(time.Minute) {
		t.Fatalf("details %+v", d)
	}
	// Back again after the window: the address was reassigned, not flipped.
	if evs := w.Bindings([]schema.Binding{{MAC: a, IP: ip, Source: "dhcp", Time: t0.Add(time.Hour)}}); len(evs) != 0 {
		t.Fatalf("after the window: %v", evs)
	}
}
