package capture

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// send accounts one frame of n bytes from mac at ts, as the worker does.
func send(t *stationTable, mac uint64, n int, ts int64) {
	t.hot[t.list(mac, ts)].count(n, ts)
}

func byMAC(ss []macStats) map[uint64]macStats {
	m := make(map[uint64]macStats, len(ss))
	for _, s := range ss {
		m[s.mac()] = s
	}
	return m
}

func TestStationTableHandsOverEachActiveStationOnce(t *testing.T) {
	tab := newStationTable(4)
	const stations = 300 // several rebuilds from a 64-slot start
	for round := range 3 {
		for i := range stations {
			send(tab, uint64(i), 100, int64(1000+i))
			send(tab, uint64(i), 60, int64(500+i)) // out of order
		}
		if round == 1 {
			tab.cold[tab.list(7, 0)].addIP(netip.MustParseAddr("10.0.0.7"))
			tab.cold[tab.list(7, 0)].addIP(netip.MustParseAddr("10.0.0.7"))
		}
		out, _ := tab.handOver(nil, nil)
		if len(out) != stations {
			t.Fatalf("round %d: %d stations handed over, want %d", round, len(out), stations)
		}
		got := byMAC(out)
		for i := range stations {
			s, ok := got[uint64(i)]
			if !ok {
				t.Fatalf("round %d: station %d missing", round, i)
			}
			if s.txPackets != 2 || s.txBytes != 160 || s.txFirst != int64(500+i) || s.txLast != int64(1000+i) {
				t.Fatalf("round %d: station %d: %d packets, %d bytes, %d..%d; want 2, 160, %d..%d",
					round, i, s.txPackets, s.txBytes, s.txFirst, s.txLast, 500+i, 1000+i)
			}
		}
		wantIPs := 0
		if round == 1 {
			wantIPs = 1
		}
		if n := len(got[7].ips); n != wantIPs {
			t.Errorf("round %d: station 7 has %d addresses, want %d", round, n, wantIPs)
		}
	}
	// A period with no traffic hands over nothing.
	if out, _ := tab.handOver(nil, nil); len(out) != 0 {
		t.Errorf("a quiet period handed over %d stations", len(out))
	}
}

func TestStationTableForgetsQuietStationsInsteadOfGrowing(t *testing.T) {
	tab := newStationTable(0)
	size := len(tab.hot)
	// Fill the table to just under half with stations that then go quiet.
	for i := range size/2 - 1 {
		send(tab, uint64(i), 60, 1)
	}
	tab.handOver(nil, nil)
	for range stationKeepPeriods {
		tab.handOver(nil, nil)
	}
	// New stations push the table past half: the quiet ones are dropped
	// and the arrays keep their size.
	for i := range 8 {
		send(tab, uint64(1000+i), 60, 2)
	}
	if len(tab.hot) != size {
		t.Errorf("table grew to %d slots, want %d (quiet stations dropped)", len(tab.hot), size)
	}
	if tab.find(0) != -1 {
		t.Errorf("a station quiet for %d periods is still there", stationKeepPeriods)
	}
	out, _ := tab.handOver(nil, nil)
	if len(out) != 8 {
		t.Errorf("%d stations handed over after the rebuild, want 8", len(out))
	}
}

func TestStationTableKeepsRecentStationsWhenGrowing(t *testing.T) {
	tab := newStationTable(0)
	size := len(tab.hot)
	for i := range size {
		send(tab, uint64(i), 60, 1)
		if i == size/4 {
			tab.handOver(nil, nil) // the first quarter is recent, not listed
		}
	}
	if len(tab.hot) <= size {
		t.Fatalf("table of %d slots holds %d stations without growing", size, size)
	}
	for i := range size {
		if tab.find(uint64(i)) < 0 {
			t.Fatalf("station %d lost in a rebuild", i)
		}
	}
	out, _ := tab.handOver(nil, nil)
	if want := size - size/4 - 1; len(out) != want {
		t.Errorf("%d stations handed over, want %d (those listed since the last hand-over)", len(out), want)
	}
}

// udpFrom is a UDP datagram from macA at src.
func udpFrom(t *testing.T, src string) []byte {
	a := netip.MustParseAddr(src)
	ip := layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: a.AsSlice(), DstIP: net.IPv4(192, 0, 2, 99)}
	return serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, &ip, &layers.UDP{SrcPort: 9, DstPort: 9})
}

func TestTrafficBindingsRefreshEveryFiveMinutes(t *testing.T) {
	w := newWorker(Options{})
	const minute = int64(time.Minute)
	one, two := udpFrom(t, "192.0.2.1"), udpFrom(t, "192.0.2.2")
	var got []string
	period := func(ts int64, frames ...[]byte) {
		for _, f := range frames {
			w.packet(f, len(f), ts)
			w.packet(f, len(f), ts+1) // a second frame in the period changes nothing
		}
		p := w.take(nil, true)
		for _, e := range p.evidence {
			if e.Source != SourceTraffic || e.MAC != mac48(macA) {
				t.Fatalf("unexpected evidence %+v", e)
			}
			got = append(got, fmt.Sprintf("%d:%v", e.Time/minute, e.IP))
		}
	}
	period(0, one)        // first use: reported
	period(1*minute, one) // within 5 minutes: not again
	period(2*minute, two) // a second address: reported
	period(4*minute, one, two)
	period(5*minute, one, two) // the first address is due again
	period(1*minute, two)      // the clock stepped back: reported again
	want := []string{"0:192.0.2.1", "2:192.0.2.2", "5:192.0.2.1", "1:192.0.2.2"}
	if !slices.Equal(got, want) {
		t.Errorf("traffic bindings %v, want %v", got, want)
	}
}

func TestBindingMemoryIsBounded(t *testing.T) {
	var c stationCold
	for i := range maxIPsPerMAC + 1 { // the last replaces the first
		if !c.bindingDue(ipMark4(uint32(i)), int64(i)) {
			t.Fatalf("address %d: a new address was not due", i)
		}
	}
	if n := 1 + len(c.bound); n != maxIPsPerMAC {
		t.Fatalf("%d addresses remembered, want %d", n, maxIPsPerMAC)
	}
	if c.bindingDue(ipMark4(1), 100) {
		t.Error("an address still remembered was due again within the refresh")
	}
	if !c.bindingDue(ipMark4(0), 100) {
		t.Error("the address reported longest ago was not the one forgotten")
	}
}

func arpFrom(t *testing.T, frameSrc, sender net.HardwareAddr, ip string, vlan bool) []byte {
	a := netip.MustParseAddr(ip)
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: sender, SourceProtAddress: a.AsSlice(),
		DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: net.IPv4(192, 0, 2, 254).To4()}
	eth := &layers.Ethernet{SrcMAC: frameSrc, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	if vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		return serialize(t, eth, &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeARP}, arp)
	}
	return serialize(t, eth, arp)
}

func TestRepeatedARPClaimsAreDecodedOncePerPeriod(t *testing.T) {
	w := newWorker(Options{})
	macC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0c}
	one, two := arpFrom(t, macA, macA, "192.0.2.1", false), arpFrom(t, macA, macA, "192.0.2.2", false)
	tagged := arpFrom(t, macA, macA, "192.0.2.1", true)
	proxy := arpFrom(t, macA, macC, "192.0.2.3", false) // sent by A on behalf of C
	period := func(frames ...[]byte) []string {
		for i, f := range frames {
			w.packet(f, len(f), int64(i))
		}
		var got []string
		for _, e := range w.take(nil, true).evidence {
			if e.Source == SourceARP {
				got = append(got, fmt.Sprintf("%012x=%v@%d", e.MAC, e.IP, e.Time))
			}
		}
		return got
	}
	a1, a2, c3 := "02000000000a=192.0.2.1", "02000000000a=192.0.2.2", "02000000000c=192.0.2.3"
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   []string
	}{
		{"repeats", [][]byte{one, one, tagged, one}, []string{a1 + "@0"}},
		{"the next period", [][]byte{one, one}, []string{a1 + "@0"}},
		{"a new claim each time the address changes", [][]byte{one, two, two, one}, []string{a1 + "@0", a2 + "@1", a1 + "@3"}},
		{"another sender's claims are always decoded", [][]byte{proxy, proxy, one, one}, []string{c3 + "@0", c3 + "@1", a1 + "@2"}},
	} {
		if got := period(tc.frames...); !slices.Equal(got, tc.want) {
			t.Errorf("%s: ARP evidence %v, want %v", tc.name, got, tc.want)
		}
	}
}

// craftedMACs returns n MACs an attacker who knows the code would pick to
// pile up in one spot of a table hashed by multiplying with the golden
// ratio constant (Fibonacci hashing, unkeyed): steps d whose product
// with the constant lies closest to a multiple of 2^64.
func craftedMACs(n int) []uint64 {
	const k = 0x9e3779b97f4a7c15
	best, step := uint64(1<<63), uint64(1)
	for d := uint64(1); d < 1<<22; d++ {
		p := d * k
		if p > 1<<63 {
			p = -p
		}
		if p < best {
			best, step = p, d
		}
	}
	macs := make([]uint64, n)
	for i := range macs {
		macs[i] = 0x020000000000 + uint64(i)*step
	}
	return macs
}

// TestTablesResistCraftedMACs checks that MACs chosen to collide under a
// public hash function spread out in the worker's station table (which
// changes to its keyed hash when they pile up) and the reporter's table
// (always keyed): otherwise a host forging source MACs could turn every
// lookup into a walk along one long run of slots.
func TestTablesResistCraftedMACs(t *testing.T) {
	macs := craftedMACs(4096)
	st := newStationTable(initialStations)
	mt := newMACTable(256)
	for _, m := range macs {
		st.list(m, 1)
		mt.index(m)
	}
	longest := func(name string, slots int, home func(key uint64) uint64, at func(key uint64) uint64) {
		most := uint64(0)
		for _, m := range macs {
			key := m | macPresent
			most = max(most, (at(key)-home(key))&uint64(slots-1))
		}
		if most > 64 {
			t.Errorf("%s: a lookup walks %d slots past where it starts, want a short run", name, most)
		}
	}
	if !st.keyed {
		t.Error("the station table kept its fixed hash under forged MACs")
	}
	longest("station table", len(st.hot), st.slot, func(key uint64) uint64 { return uint64(st.find(key &^ macPresent)) })
	longest("report table", len(mt.slots), mt.hash, func(key uint64) uint64 {
		for i := mt.hash(key); ; i = (i + 1) & uint64(len(mt.slots)-1) {
			if s := mt.slots[i]; s != 0 && mt.entries[s-1].key == key {
				return i
			}
		}
	})
}

// TestStationTableKeepsFibonacciHashingForOrdinaryMACs checks that MACs
// nobody chose against the fixed hash, a run of neighbours and a spread of
// vendors' addresses, keep the faster fixed hash.
func TestStationTableKeepsFibonacciHashingForOrdinaryMACs(t *testing.T) {
	for name, mac := range map[string]func(i int) uint64{
		"neighbours": func(i int) uint64 { return 0x025b00000000 + uint64(i) },
		"vendors":    func(i int) uint64 { return uint64(i%7)*0x0d5a1e000000 + fmix64(uint64(i))&0xffffff },
	} {
		st := newStationTable(initialStations)
		for i := range 8000 {
			st.list(mac(i), 1)
		}
		if st.keyed {
			t.Errorf("%s: the station table changed to its keyed hash", name)
		}
	}
}
