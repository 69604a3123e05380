package lanzone

import (
	"testing"
	"time"
)

// The exported histogram puts each latency under the first bound above it
// and keeps the sum, so a scraper's percentiles match the listener's own.
func TestLatencyHistogram(t *testing.T) {
	l := &Listener{}
	for _, d := range []time.Duration{5 * time.Microsecond, time.Millisecond, time.Millisecond, 40 * time.Millisecond, time.Hour} {
		l.stats.latency.observe(d)
	}
	bounds, counts, sum := l.LatencyHistogram()
	if len(bounds) != len(counts) || len(bounds) == 0 {
		t.Fatalf("bounds %d, counts %d", len(bounds), len(counts))
	}
	if want := 5*time.Microsecond + 2*time.Millisecond + 40*time.Millisecond + time.Hour; sum != want {
		t.Errorf("sum %v, want %v", sum, want)
	}
	var n uint64
	for _, c := range counts {
		n += c
	}
	if n != 5 {
		t.Errorf("%d observations counted, want 5", n)
	}
	if counts[0] != 1 || counts[len(counts)-1] != 1 {
		t.Errorf("first bucket %d (want the 5 µs one), last %d (want the hour)", counts[0], counts[len(counts)-1])
	}
	if i := bucketOf(time.Millisecond); counts[i] != 2 || bounds[i] <= time.Millisecond || (i > 0 && bounds[i-1] > time.Millisecond) {
		t.Errorf("1 ms landed in bucket %d [%v, %v) with count %d", i, bounds[i-1], bounds[i], counts[i])
	}
	p50, p99, _, _ := l.stats.latency.summary()
	if p50 != bounds[bucketOf(time.Millisecond)] || p99 != bounds[len(bounds)-1] {
		t.Errorf("summary p50 %v p99 %v disagree with the buckets", p50, p99)
	}
	l.ResetLatency()
	if _, _, sum := l.LatencyHistogram(); sum != 0 {
		t.Errorf("sum %v after reset", sum)
	}
}
