package lanzone

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestAdmissionPrefixAndReserve(t *testing.T) {
	o := Options{MaxHandshakes: 8}
	o.defaults()
	a := newAdmission(&o)
	now := time.Unix(1_000_000, 0)
	known := netip.MustParseAddr("10.1.2.200")
	a.completed(known, now)

	// Sixteen unknown addresses of one /24 fill its share; the next is
	// refused however many addresses the network uses.
	var held []*ticket
	for i := range o.HandshakesPerPrefix {
		tk, why := a.enter(netip.AddrFrom4([4]byte{10, 1, 2, byte(i + 1)}), now)
		if tk == nil {
			t.Fatalf("address %d refused: %s", i, why)
		}
		held = append(held, tk)
	}
	if tk, why := a.enter(netip.MustParseAddr("10.1.2.99"), now); tk != nil || !strings.Contains(why, "10.1.2.0/24") {
		t.Fatalf("prefix share not enforced: ticket %v, reason %q", tk, why)
	}
	// Unknown sources take only the shared slots.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	taken := 0
	for _, tk := range held {
		if tk.slotWait(ctx) {
			taken++
		}
	}
	if want := cap(a.shared); taken != want {
		t.Fatalf("unknown sources took %d slots, want the %d shared ones", taken, want)
	}
	// A known address of the same network still gets in, on a reserved slot.
	tk, why := a.enter(known, now)
	if tk == nil {
		t.Fatalf("known address refused: %s", why)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if !tk.slotWait(ctx2) || tk.slot != a.reserve {
		t.Fatal("known address did not get a reserved slot while unknown ones held the shared slots")
	}
	tk.release()
	for _, h := range held {
		h.release()
		h.release() // twice is harmless
	}
	if n := a.nets[prefixOf(known)].pending; n != 0 {
		t.Fatalf("prefix count %d after every release, want 0", n)
	}
	if len(a.shared) != 0 || len(a.reserve) != 0 {
		t.Fatalf("slots still held: %d shared, %d reserved", len(a.shared), len(a.reserve))
	}
}

func TestAdmissionAddressRate(t *testing.T) {
	o := Options{HandshakeBurst: 3, HandshakeRate: 1}
	o.defaults()
	a := newAdmission(&o)
	now := time.Unix(1_000_000, 0)
	src := netip.MustParseAddr("2001:db8::1")
	for i := range 3 {
		tk, why := a.enter(src, now)
		if tk == nil {
			t.Fatalf("handshake %d refused: %s", i, why)
		}
		tk.release()
	}
	if tk, why := a.enter(src, now); tk != nil || why != "too many handshakes from this address" {
		t.Fatalf("burst not enforced: %v %q", tk, why)
	}
	if tk, _ := a.enter(src, now.Add(1100*time.Millisecond)); tk == nil {
		t.Fatal("token not refilled after a second")
	}
}

// An address an enrolled endpoint declared in the fleet's shared state is
// admitted as known at a sensor it never handshook with (failover, or
// this sensor's restart): not held to its network's share of unknown
// handshakes.
func TestAdmissionDeclaredSourceIsKnown(t *testing.T) {
	declared := netip.MustParseAddr("10.1.2.77")
	o := Options{MaxHandshakes: 8, KnownSource: func(a netip.Addr) bool { return a == declared }}
	o.defaults()
	a := newAdmission(&o)
	now := time.Unix(1_000_000, 0)
	for i := range o.HandshakesPerPrefix {
		if tk, why := a.enter(netip.AddrFrom4([4]byte{10, 1, 2, byte(i + 1)}), now); tk == nil {
			t.Fatalf("address %d refused: %s", i, why)
		}
	}
	if tk, _ := a.enter(netip.MustParseAddr("10.1.2.99"), now); tk != nil {
		t.Fatal("the network's share of unknown handshakes was not full")
	}
	tk, why := a.enter(declared, now)
	if tk == nil || !tk.known {
		t.Fatalf("declared address: ticket %+v, reason %q; want admitted as known", tk, why)
	}
}
