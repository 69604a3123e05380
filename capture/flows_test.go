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
