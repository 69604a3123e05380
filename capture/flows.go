package capture

import (
	"net/netip"
	"time"

	"github.com/tapbeat/tapbeat/sensor"
)

// flowKey is a 5-tuple with IPv4 addresses stored as IPv4-mapped IPv6.
type flowKey struct {
	src, dst         [16]byte
	srcPort, dstPort uint16
	proto            uint8
}

// flowTable remembers recently active UDP (and heartbeat-channel TCP)
// 5-tuples so only the first datagram after an idle period counts as a flow
// start. It holds at most max entries; when full, new 5-tuples are reported
// every time (a policy check too many beats one missed) and counted.
type flowTable struct {
	last    map[flowKey]int64 // Unix nanoseconds of the last packet
	max     int
	idle    int64
	full    uint64 // packets of untracked 5-tuples because the table was full
	evicted uint64
}

func newFlowTable(max int, idle time.Duration) *flowTable {
	return &flowTable{last: make(map[flowKey]int64, max), max: max, idle: int64(idle)}
}

// seen records a packet of k at ts and reports whether it starts a flow.
func (f *flowTable) seen(k *flowKey, ts int64) bool {
	prev, ok := f.last[*k]
	if ok {
		f.last[*k] = ts
		return ts-prev > f.idle
	}
	if len(f.last) >= f.max {
		f.full++
		return true
	}
	f.last[*k] = ts
	return true
}

// expire forgets 5-tuples idle at now.
func (f *flowTable) expire(now int64) {
	for k, t := range f.last {
		if now-t > f.idle {
			delete(f.last, k)
			f.evicted++
		}
	}
}

func v4mapped(dst *[16]byte, a uint32) {
	*dst = [16]byte{10: 0xff, 11: 0xff, 12: byte(a >> 24), 13: byte(a >> 16), 14: byte(a >> 8), 15: byte(a)}
}

func addrOf4(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// flowOf builds the sensor.Flow for h at ts.
func flowOf(h *Header, ts int64) sensor.Flow {
	f := sensor.Flow{
		SrcMAC:  sensor.MACFromUint64(h.Src),
		DstMAC:  sensor.MACFromUint64(h.Dst),
		Proto:   h.Proto,
		DstPort: h.DstPort,
		Time:    time.Unix(0, ts).UTC(),
	}
	if h.IPVersion == 4 {
		f.SrcIP, f.DstIP = addrOf4(h.Src4), addrOf4(h.Dst4)
	} else {
		f.SrcIP, f.DstIP = netip.AddrFrom16(h.Src6), netip.AddrFrom16(h.Dst6)
	}
	return f
}
