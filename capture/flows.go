package capture

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// flowWays is the associativity of the flow table.
const flowWays = 4

// flowBucket is one cache line: a tag and the last-packet time of each
// way. The tag is the 5-tuple's 64-bit hash (with the low bit set; 0 means
// empty) and stands for the 5-tuple itself: two live 5-tuples of one bucket
// share a tag with odds of about 2^-50, and the cost of that is one flow
// start not reported. Not storing keys keeps every lookup to one line.
type flowBucket struct {
	tag  [flowWays]uint64
	last [flowWays]int64 // Unix nanoseconds of the last packet
}

// flowTable remembers recently active UDP (and heartbeat-channel TCP)
// 5-tuples so only the first datagram after an idle period counts as a flow
// start. It is a set-associative cache: a 5-tuple can live in one of
// flowWays slots of its bucket, so lookups cost a hash and at most four
// compares, and the table never grows. When a bucket is full of live
// 5-tuples the least recently active one is evicted (and counted): it will
// count as a new flow if it speaks again, which errs on the side of
// checking a policy once more.
type flowTable struct {
	buckets []flowBucket
	mask    uint64 // len(buckets) - 1
	idle    int64
	evicted uint64 // live 5-tuples pushed out by new ones
}

func newFlowTable(size int, idle time.Duration) *flowTable {
	n := 1
	for n*flowWays < size {
		n <<= 1
	}
	return &flowTable{
		buckets: make([]flowBucket, n),
		mask:    uint64(n - 1),
		idle:    int64(idle),
	}
}

// fmix64 is MurmurHash3's 64-bit finaliser.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	return h ^ h>>33
}

// flowHash hashes the 5-tuple of h, keyed with seed.
func flowHash(h *Header, seed uint64) uint64 {
	ports := uint64(h.SrcPort)<<24 | uint64(h.DstPort)<<8 | uint64(h.Proto)
	if h.IPVersion == 4 {
		return fmix64(fmix64(uint64(h.Src4)<<32|uint64(h.Dst4)^seed) ^ ports)
	}
	x := fmix64(binary.LittleEndian.Uint64(h.Src6[:8]) ^ ports ^ seed)
	x = fmix64(x ^ binary.LittleEndian.Uint64(h.Src6[8:]))
	x = fmix64(x ^ binary.LittleEndian.Uint64(h.Dst6[:8]))
	return fmix64(x ^ binary.LittleEndian.Uint64(h.Dst6[8:]) ^ 6)
}

// bucket is where the 5-tuple hashed to h lives.
func (f *flowTable) bucket(h uint64) uint64 { return (h >> 7) & f.mask }

// seen records a packet of the 5-tuple hashed to h at ts and reports
// whether it starts a flow.
func (f *flowTable) seen(h uint64, ts int64) bool {
	b, tag := &f.buckets[f.bucket(h)], h|1
	i := b.find(tag)
	if i < 0 {
		f.put(b, tag, ts)
		return true
	}
	start := ts-b.last[i] > f.idle
	b.last[i] = max(b.last[i], ts)
	return start
}

// find is written out for four ways: these array lengths stop the build
// if flowWays changes.
var _ [flowWays - 4][4 - flowWays]struct{}

// find returns the way holding tag, or -1. The four compares make a mask
// without branches: which way matches is as good as random, so branching
// on each compare mispredicted often.
func (b *flowBucket) find(tag uint64) int {
	m := b2u(b.tag[0] == tag) | b2u(b.tag[1] == tag)<<1 | b2u(b.tag[2] == tag)<<2 | b2u(b.tag[3] == tag)<<3
	if m == 0 {
		return -1
	}
	return bits.TrailingZeros(m)
}

// put stores tag at ts in b's first empty way, or in place of its least
// recently active one, counting an eviction when that one was still live.
func (f *flowTable) put(b *flowBucket, tag uint64, ts int64) {
	v, oldest := 0, b.age(0)
	if a := b.age(1); a < oldest {
		v, oldest = 1, a
	}
	if a := b.age(2); a < oldest {
		v, oldest = 2, a
	}
	if b.age(3) < oldest {
		v = 3
	}
	if b.tag[v] != 0 && ts-b.last[v] <= f.idle {
		f.evicted++
	}
	b.tag[v], b.last[v] = tag, ts
}

// age orders way i for replacement: its last-packet time, and an empty
// way before every live one. Compiled without branches, as are put's
// comparisons of the four.
func (b *flowBucket) age(i int) int64 {
	a := b.last[i]
	if b.tag[i] == 0 {
		a = math.MinInt64
	}
	return a
}

// b2u is 1 for true and 0 for false, without a branch.
func b2u(c bool) uint {
	if c {
		return 1
	}
	return 0
}

// due records a packet of the 5-tuple hashed to h at ts and reports
// whether the 5-tuple is new or was last reported at least f.idle ago (or
// in the future: a clock step); when it reports, ts becomes the time it was
// last reported. This is the heartbeat-channel refresh: unlike seen, a
// steady stream of packets is reported again every f.idle.
func (f *flowTable) due(h uint64, ts int64) bool {
	b, tag := &f.buckets[f.bucket(h)], h|1
	i := b.find(tag)
	if i < 0 {
		f.put(b, tag, ts)
		return true
	}
	if ts-b.last[i] < f.idle && ts >= b.last[i] {
		return false
	}
	b.last[i] = ts
	return true
}

// v4mapped writes a as an IPv4-mapped IPv6 address (::ffff:a) to dst,
// as two 8-byte stores.
func v4mapped(dst *[16]byte, a uint32) {
	binary.LittleEndian.PutUint64(dst[:8], 0)
	binary.BigEndian.PutUint64(dst[8:], 0xffff<<32|uint64(a))
}

func addrOf4(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// flowRec is a flow start as the hot path records it: no pointers, so
// queued flow starts cost the garbage collector nothing.
type flowRec struct {
	src, dst     uint64 // MACs
	srcIP, dstIP [16]byte
	v4           bool
	proto        uint8
	dstPort      uint16
	ts           int64
}

// appendFlow appends the flow start of the frame h to fs at ts. It fills
// the new record in place: building it on the stack and copying it in
// stalled on the copy's loads of the fields just stored.
func appendFlow(fs []flowRec, h *Header, ts int64) []flowRec {
	n := len(fs)
	fs = slices.Grow(fs, 1)[:n+1]
	f := &fs[n]
	f.src, f.dst, f.proto, f.dstPort, f.ts = h.Src, h.Dst, h.Proto, h.DstPort, ts
	f.v4 = h.IPVersion == 4
	if f.v4 {
		v4mapped(&f.srcIP, h.Src4)
		v4mapped(&f.dstIP, h.Dst4)
	} else {
		f.srcIP, f.dstIP = h.Src6, h.Dst6
	}
	return fs
}

// flow converts the record for the sink.
func (f *flowRec) flow() schema.Flow {
	out := schema.Flow{
		SrcMAC:  schema.MACFromUint64(f.src),
		DstMAC:  schema.MACFromUint64(f.dst),
		SrcIP:   netip.AddrFrom16(f.srcIP),
		DstIP:   netip.AddrFrom16(f.dstIP),
		Proto:   f.proto,
		DstPort: f.dstPort,
		Time:    time.Unix(0, f.ts).UTC(),
	}
	if f.v4 {
		out.SrcIP, out.DstIP = out.SrcIP.Unmap(), out.DstIP.Unmap()
	}
	return out
}
