package capture

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"unsafe"
)

// stationKeepPeriods is how many hand-overs a worker remembers a station
// that has gone quiet (one minute at the default 1 s traffic period). A
// station it still remembers costs one cache line per frame; one it has
// forgotten costs an insertion on its next frame.
const stationKeepPeriods = 60

// station is what a worker touches for every frame a MAC sends: one cache
// line, the MAC and its counters for the current period. Everything else
// the MAC needs (addresses, host names, frames addressed to it) lives in a
// stationCold at the same index and is touched only when it changes.
type station struct {
	key         uint64 // MAC | macPresent; 0 marks a free slot
	packets     uint64 // frames sent in the current period
	bytes       uint64 // their wire length
	first, last int64  // Unix nanoseconds of the first and last of them
	lastIP      uint64 // ipMark of the source address last noted this period, 0 for none
	active      uint32 // the last period the station was listed in
	// arpIP is the sender address of the station's last ARP message this
	// period that named the station's own MAC as sender, 0 for none.
	arpIP  uint32
	listed bool // the station is in the dirty list of the current period
	_      [7]byte
}

// stationCold is the rarely touched rest of a station: its period's
// addresses, host names and frames addressed to it, and, across periods,
// when each of its source addresses was last reported as a binding. It is
// two cache lines; the first holds what noting a source address touches.
type stationCold struct {
	bound0 boundIP // the first address reported, kept across periods
	seen
	rxPackets, rxBytes uint64 // frames addressed to it (only when counting them)
	rxFirst, rxLast    int64
	bound              []boundIP // further addresses reported, kept across periods
}

// boundIP is a source address of a station (as an ipMark, 0 for none) and
// when the station's use of it was last reported as a traffic binding.
type boundIP struct {
	mark uint64
	at   int64 // Unix nanoseconds
}

// empty clears c for the next period, keeping the memory of its lists and
// what it has reported.
func (c *stationCold) empty() {
	c.seen.empty()
	*c = stationCold{seen: c.seen, bound0: c.bound0, bound: c.bound}
}

// forget clears what c has reported, for a new station in its slot.
func (c *stationCold) forget() {
	c.bound0, c.bound = boundIP{}, c.bound[:0]
}

// bindingDue records that the station sent from the address marked mark at
// ts and reports whether that use is to be reported as a traffic binding:
// the first time, then again once trafficRefresh has passed (or the clock
// stepped back). At most maxIPsPerMAC addresses are remembered; a new one
// beyond that replaces the one reported longest ago.
func (c *stationCold) bindingDue(mark uint64, ts int64) bool {
	switch c.bound0.mark {
	case mark:
		return c.bound0.due(ts)
	case 0:
		c.bound0 = boundIP{mark, ts}
		return true
	}
	oldest := &c.bound0
	for i := range c.bound {
		b := &c.bound[i]
		if b.mark == mark {
			return b.due(ts)
		}
		if b.at < oldest.at {
			oldest = b
		}
	}
	if len(c.bound) < maxIPsPerMAC-1 {
		c.bound = append(c.bound, boundIP{mark, ts})
	} else {
		*oldest = boundIP{mark, ts}
	}
	return true
}

// due reports whether the use b records is due for reporting again at ts,
// and if so makes ts its last report.
func (b *boundIP) due(ts int64) bool {
	if ts-b.at < int64(trafficRefresh) && ts >= b.at {
		return false
	}
	b.at = ts
	return true
}

// arpLen is the length of an ARP message for Ethernet and IPv4.
const arpLen = 28

// repeatsARP reports whether frame, an ARP message the station sent (h
// its parsed header), claims for the station's own MAC the same IPv4
// address as the last one it sent in this period. Such a repeat adds
// nothing to the evidence the first one gave (the control-plane decoder
// reads nothing else from an ARP message), so it is not decoded again;
// an ARP sweep, thousands of requests a second from one sender, costs
// one decode a period. Anything else is noted and left to the decoder.
func (s *station) repeatsARP(frame []byte, h *Header) bool {
	if len(frame) < h.L3Offset+arpLen {
		return false
	}
	b := frame[h.L3Offset : h.L3Offset+arpLen]
	// Hardware type Ethernet, protocol IPv4, address lengths 6 and 4,
	// and the station itself as sender.
	if binary.BigEndian.Uint32(b[0:4]) != 0x00010800 || b[4] != 6 || b[5] != 4 || mac48(b[8:14]) != h.Src {
		return false
	}
	ip := binary.BigEndian.Uint32(b[14:18])
	if ip == 0 {
		return false
	}
	if s.arpIP == ip {
		return true
	}
	s.arpIP = ip
	return false
}

// count adds a frame of n bytes sent at ts to the station's period.
func (s *station) count(n int, ts int64) {
	if ts < s.first {
		s.first = ts
	}
	if ts > s.last {
		s.last = ts
	}
	s.packets++
	s.bytes += uint64(n)
}

// Compile-time check that a station is exactly one cache line.
var _ [64 - unsafe.Sizeof(station{})]byte
var _ [unsafe.Sizeof(station{}) - 64]byte

// Compile-time check that a stationCold is exactly two cache lines.
var _ [128 - unsafe.Sizeof(stationCold{})]byte
var _ [unsafe.Sizeof(stationCold{}) - 128]byte

// stationTable is a worker's table of the MACs it has seen, kept from one
// period to the next so that a station's first frame of a period costs no
// more than any other. It is open addressing with linear probing over the
// stations themselves, so a lookup touches one cache line (the stations
// are found in a cold cache more often than not: between two blocks of the
// ring the core runs other work). A dirty list names the stations active
// in the current period, so handing a period over walks only those.
// Stations quiet for stationKeepPeriods are dropped when the table would
// otherwise grow.
type stationTable struct {
	hot   []station
	cold  []stationCold
	mask  uint64
	shift uint
	seed  uint64 // keys slotHash and ipMark6
	// keyed makes slot use slotHash instead of fibSlot: set for good
	// once an insertion found its free slot more than maxRun slots past
	// where its search started.
	keyed  bool
	used   int
	dirty  []int32 // indexes of the stations listed this period
	period uint32  // periods handed over so far
}

func newStationTable(sizeHint int) *stationTable {
	t := &stationTable{seed: rand.Uint64()}
	t.alloc(sizeHint)
	return t
}

// alloc gives t empty arrays with room for n stations at half load.
func (t *stationTable) alloc(n int) {
	size, shift := tableSize(n)
	t.hot = make([]station, size)
	t.cold = make([]stationCold, size)
	t.mask = uint64(size - 1)
	t.shift = shift
	t.used = 0
}

// maxRun is the longest search for a free slot the station table takes
// before it changes to its keyed hash. With Fibonacci hashing at most half
// full, MACs that are not chosen against it come nowhere near: this is a
// host forging MACs, and a few such runs cost it a few cache lines per
// frame, not a table walk.
const maxRun = 24

// slot is where the search for key starts.
func (t *stationTable) slot(key uint64) uint64 {
	if t.keyed {
		return slotHash(key, t.seed, t.shift)
	}
	return fibSlot(key, t.shift)
}

// list returns the index of mac's station, adding it when new and putting
// it on the dirty list when this is its first frame of the period; ts is
// the frame's time.
func (t *stationTable) list(mac uint64, ts int64) int {
	key := mac | macPresent
	for i := t.slot(key); ; i = (i + 1) & t.mask {
		s := &t.hot[i]
		if s.key == key {
			if !s.listed {
				t.enlist(s, i, ts)
			}
			return int(i)
		}
		if s.key == 0 {
			return t.insert(key, i, ts)
		}
	}
}

func (t *stationTable) enlist(s *station, i uint64, ts int64) {
	s.listed = true
	s.first, s.last = ts, ts
	t.dirty = append(t.dirty, int32(i))
}

func (t *stationTable) insert(key uint64, i uint64, ts int64) int {
	if !t.keyed && (i-t.slot(key))&t.mask > maxRun {
		t.keyed = true
		t.rebuild()
		return t.list(key&^macPresent, ts)
	}
	if 2*(t.used+1) > len(t.hot) {
		t.rebuild()
		return t.list(key&^macPresent, ts)
	}
	t.used++
	t.hot[i] = station{key: key}
	t.cold[i].empty()
	t.cold[i].forget()
	t.enlist(&t.hot[i], i, ts)
	return int(i)
}

// rebuild moves the stations worth keeping (listed this period, or active
// within stationKeepPeriods) into fresh arrays, twice as large when more
// than a quarter of the current ones would still be in use.
func (t *stationTable) rebuild() {
	keep := 0
	for i := range t.hot {
		if t.hot[i].key != 0 && t.worthKeeping(&t.hot[i]) {
			keep++
		}
	}
	oldHot, oldCold := t.hot, t.cold
	size := len(oldHot)
	if 4*(keep+1) > size {
		size *= 2
	}
	t.alloc(size / 2)
	t.dirty = t.dirty[:0]
	for i := range oldHot {
		s := &oldHot[i]
		if s.key == 0 || !t.worthKeeping(s) {
			continue
		}
		j := t.slot(s.key)
		for t.hot[j].key != 0 {
			j = (j + 1) & t.mask
		}
		t.hot[j], t.cold[j] = *s, oldCold[i]
		t.used++
		if s.listed {
			t.dirty = append(t.dirty, int32(j))
		}
	}
}

func (t *stationTable) worthKeeping(s *station) bool {
	return s.listed || t.period-s.active < stationKeepPeriods
}

// find returns the index of mac's station, or -1.
func (t *stationTable) find(mac uint64) int {
	key := mac | macPresent
	for i := t.slot(key); ; i = (i + 1) & t.mask {
		switch t.hot[i].key {
		case key:
			return int(i)
		case 0:
			return -1
		}
	}
}

// ipMark stands for a source address in station.lastIP: an IPv4 address
// exactly, an IPv6 address by a 63-bit hash keyed with seed (a host that
// knew the hash could pick a second address that passes for its first,
// and go unnoted). It is never 0.
func ipMark4(a uint32) uint64 { return 1<<32 | uint64(a) }

func ipMark6(a *[16]byte, seed uint64) uint64 {
	return fmix64(binary.LittleEndian.Uint64(a[:8])^fmix64(binary.LittleEndian.Uint64(a[8:])^seed)) | 1<<63
}

// handOver appends the period's figures of every listed station to out
// (their addresses to ips, which out's entries then share), resets them,
// and starts the next period.
func (t *stationTable) handOver(out []macStats, ips []netip.Addr) ([]macStats, []netip.Addr) {
	for _, i := range t.dirty {
		s, c := &t.hot[i], &t.cold[i]
		e := macStats{
			key:       s.key,
			txPackets: s.packets, txBytes: s.bytes,
			rxPackets: c.rxPackets, rxBytes: c.rxBytes,
			rxFirst: c.rxFirst, rxLast: c.rxLast,
		}
		e.ipOverflow = c.ipOverflow
		if s.packets > 0 {
			e.txFirst, e.txLast = s.first, s.last
		}
		if len(c.ips) > 0 {
			n := len(ips)
			ips = append(ips, c.ips...)
			e.ips = ips[n:len(ips):len(ips)]
		}
		if len(c.hostnames) > 0 {
			e.hostnames = slices.Clone(c.hostnames)
		}
		out = append(out, e)
		s.packets, s.bytes, s.lastIP, s.arpIP, s.listed = 0, 0, 0, 0, false
		s.active = t.period
		c.empty()
	}
	t.dirty = t.dirty[:0]
	t.period++
	return out, ips
}
