package capture

import (
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
)

// maxIPsPerMAC bounds the addresses remembered for one MAC in a period; a
// router forwards for many hosts, and its table must not grow without end.
const maxIPsPerMAC = 16

// macPresent marks a used slot; a MAC is 48 bits, so the key of
// 00:00:00:00:00:00 is still non-zero.
const macPresent = 1 << 63

// macStats is one MAC's accounting for a period: what a worker hands over
// for each active station, and what the reporter merges them into.
type macStats struct {
	key                uint64 // MAC | macPresent
	txPackets, txBytes uint64
	rxPackets, rxBytes uint64
	txFirst, txLast    int64 // Unix nanoseconds of the first and last frame it sent
	rxFirst, rxLast    int64 // same for frames addressed to it
	seen
}

// seen is what a MAC was seen with in a period besides its counts.
type seen struct {
	ips        []netip.Addr // source addresses used, at most maxIPsPerMAC
	ipOverflow uint64       // addresses not kept because ips was full
	hostnames  []string     // DHCP host names, rare
}

// empty clears s, keeping the memory of its lists.
func (s *seen) empty() {
	*s = seen{ips: s.ips[:0], hostnames: s.hostnames[:0]}
}

// macTable is an open-addressing hash table of macStats keyed by MAC. Its
// lookups allocate nothing; only growth does, and a table is reused period
// after period so it stops growing once it fits the network.
type macTable struct {
	slots   []int32 // index+1 into entries, 0 when empty
	shift   uint
	seed    uint64 // keys slotHash
	entries []macStats
}

func newMACTable(sizeHint int) *macTable {
	t := &macTable{seed: rand.Uint64()}
	t.resize(sizeHint)
	return t
}

func (t *macTable) resize(n int) {
	size, shift := tableSize(n)
	t.slots = make([]int32, size)
	t.shift = shift
	for i := range t.entries {
		t.place(t.entries[i].key, int32(i+1))
	}
}

func (t *macTable) hash(key uint64) uint64 { return slotHash(key, t.seed, t.shift) }

// tableSize is the slot count of an open-addressing table for n keys at
// half load (a power of two, at least 64) and the slotHash shift that
// spreads keys over it.
func tableSize(n int) (size int, shift uint) {
	size = 64
	for size < 2*n {
		size <<= 1
	}
	return size, uint(64 - bits.TrailingZeros(uint(size)))
}

// slotHash is where the search for key starts in a table of 2^(64-shift)
// slots: the top bits of MurmurHash3's finaliser of key xor the table's
// random seed. MACs are the keys, and any host can forge its source MAC:
// against a fixed function it could pick MACs that all start in the same
// few slots and make every lookup walk one long run of them. Not knowing
// the seed, it cannot.
func slotHash(key, seed uint64, shift uint) uint64 { return fmix64(key^seed) >> shift }

// fibSlot is Fibonacci hashing: the top 64-shift bits of key times 2^64
// over the golden ratio. Runs of neighbouring keys, such as the MACs of
// one batch of NICs or of virtual machines, land in slots spread as evenly
// as they can be, so more of them are found in the first slot searched
// than with any random-looking hash; but it is a fixed function, which
// forged MACs can defeat.
func fibSlot(key uint64, shift uint) uint64 { return (key * 0x9e3779b97f4a7c15) >> shift }

func (t *macTable) place(key uint64, idx int32) {
	mask := uint64(len(t.slots) - 1)
	for i := t.hash(key); ; i = (i + 1) & mask {
		if t.slots[i] == 0 {
			t.slots[i] = idx
			return
		}
	}
}

// index returns the position in entries of mac's stats, adding them.
func (t *macTable) index(mac uint64) int {
	key := mac | macPresent
	mask := uint64(len(t.slots) - 1)
	for i := t.hash(key); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return t.insert(key, i)
		}
		if t.entries[s-1].key == key {
			return int(s - 1)
		}
	}
}

func (t *macTable) insert(key uint64, slot uint64) int {
	n := len(t.entries)
	if n < cap(t.entries) {
		// Reuse the backing arrays of the entry this one replaces.
		t.entries = t.entries[:n+1]
		e := &t.entries[n]
		e.seen.empty()
		*e = macStats{key: key, seen: e.seen}
	} else {
		t.entries = append(t.entries, macStats{key: key})
	}
	if 2*(n+1) > len(t.slots) {
		t.resize(n + 1)
		return n
	}
	t.slots[slot] = int32(n + 1)
	return n
}

// reset empties the table, keeping its memory.
func (t *macTable) reset() {
	clear(t.slots)
	t.entries = t.entries[:0]
}

func (e *macStats) mac() uint64 { return e.key &^ macPresent }

// addIP records a source address, keeping at most maxIPsPerMAC.
func (e *seen) addIP(a netip.Addr) {
	if slices.Contains(e.ips, a) {
		return
	}
	if len(e.ips) >= maxIPsPerMAC {
		e.ipOverflow++
		return
	}
	e.ips = append(e.ips, a)
}

func (e *seen) addHostname(h string) {
	if h != "" && !slices.Contains(e.hostnames, h) && len(e.hostnames) < maxIPsPerMAC {
		e.hostnames = append(e.hostnames, h)
	}
}

// merge adds o's figures into e.
func (e *macStats) merge(o *macStats) {
	if o.txPackets > 0 {
		if e.txPackets == 0 || o.txFirst < e.txFirst {
			e.txFirst = o.txFirst
		}
		e.txLast = max(e.txLast, o.txLast)
	}
	if o.rxPackets > 0 {
		if e.rxPackets == 0 || o.rxFirst < e.rxFirst {
			e.rxFirst = o.rxFirst
		}
		e.rxLast = max(e.rxLast, o.rxLast)
	}
	e.txPackets += o.txPackets
	e.txBytes += o.txBytes
	e.rxPackets += o.rxPackets
	e.rxBytes += o.rxBytes
	for _, a := range o.ips {
		e.addIP(a)
	}
	e.ipOverflow += o.ipOverflow
	for _, h := range o.hostnames {
		e.addHostname(h)
	}
}

// mergeStations adds a worker's period figures into t.
func (t *macTable) mergeStations(ss []macStats) {
	for i := range ss {
		j := t.index(ss[i].mac())
		t.entries[j].merge(&ss[i])
	}
}
