package capture

import (
	"testing"
	"time"
)

func TestFlowTableDueRefreshes(t *testing.T) {
	const every = int64(10 * time.Second)
	f := newFlowTable(64, time.Duration(every))
	const k = 0xabcdef12345678
	steps := []struct {
		ts   int64
		want bool
		why  string
	}{
		{100, true, "first packet"},
		{101, false, "right after"},
		{100 + every - 1, false, "just inside the refresh interval"},
		{100 + every, true, "refresh interval over"},
		{100 + every + 5, false, "reported again just now"},
		{50, true, "clock went backwards"},
		{51, false, "after the step back"},
	}
	for _, s := range steps {
		if got := f.due(k, s.ts); got != s.want {
			t.Errorf("%s (t=%d): due %v, want %v", s.why, s.ts, got, s.want)
		}
	}
	// Filling the bucket with other 5-tuples pushes the oldest out: it is
	// reported again, and the eviction is counted.
	b := uint64(k) &^ (1<<7 - 1) >> 7 << 7
	for i := range flowWays {
		f.due(b|uint64(i+1)<<60, 60+int64(i))
	}
	if f.evicted == 0 {
		t.Errorf("a full bucket evicted nothing")
	}
	if !f.due(k, 52) {
		t.Errorf("an evicted 5-tuple was not reported again")
	}
}

// TestFlowTableResistsCraftedTuples checks that 5-tuples chosen to share
// a bucket under the unkeyed hash do not share one in a worker's table:
// if they did, a host could push any flow out of the table (so its next
// datagram counts as a start again) or hide a flow start behind a tag.
func TestFlowTableResistsCraftedTuples(t *testing.T) {
	w := newWorker(Options{})
	h := Header{IPVersion: 4, Proto: ProtoUDP, HasPorts: true, Src4: 0xc0000201, Dst4: 0xc0000202, DstPort: 53}
	type tuple struct {
		dst  uint32
		port uint16
	}
	var crafted []tuple
	for dst := uint32(0xc0000200); dst < 0xc0000210 && len(crafted) < 2*flowWays; dst++ {
		for port := 0; port < 1<<16 && len(crafted) < 2*flowWays; port++ {
			h.Dst4, h.SrcPort = dst, uint16(port)
			if w.flows.bucket(flowHash(&h, 0)) == 0 {
				crafted = append(crafted, tuple{dst, uint16(port)})
			}
		}
	}
	if len(crafted) < 2*flowWays {
		t.Fatalf("found only %d 5-tuples sharing a bucket", len(crafted))
	}
	for pass := range 2 {
		for _, c := range crafted {
			h.Dst4, h.SrcPort = c.dst, c.port
			if start := w.flows.seen(flowHash(&h, w.seed), int64(pass)); start != (pass == 0) {
				t.Fatalf("pass %d, 5-tuple %+v: flow start %v", pass, c, start)
			}
		}
	}
	if w.flows.evicted != 0 {
		t.Errorf("%d live flows pushed out by crafted ones", w.flows.evicted)
	}
}
