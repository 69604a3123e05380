package daemon

import (
	"net/netip"
	"testing"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// After a restart, the addresses the saved endpoints declared are known
// sources, alongside what the fleet's shared state declares.
func TestKnownAtStart(t *testing.T) {
	saved := netip.MustParseAddr("10.1.2.3")
	shared := netip.MustParseAddr("10.9.9.9")
	stranger := netip.MustParseAddr("192.0.2.1")
	snap := sensor.Snapshot{Endpoints: []schema.EndpointState{{ID: "e1",
		Interfaces: []schema.Interface{{Name: "eth0", IPs: []netip.Addr{saved}}}}}}
	known := knownAtStart(snap, func(ip netip.Addr) bool { return ip == shared })
	for ip, want := range map[netip.Addr]bool{saved: true, netip.AddrFrom16(saved.As16()): true, shared: true, stranger: false} {
		if got := known(ip); got != want {
			t.Errorf("known(%v) = %v, want %v", ip, got, want)
		}
	}
	if knownAtStart(sensor.Snapshot{}, nil) != nil {
		t.Error("nothing saved and no fleet: want no known-source check")
	}
	if solo := knownAtStart(snap, nil); !solo(saved) || solo(stranger) {
		t.Error("a sensor without a fleet: want the saved addresses known, and only them")
	}
}
