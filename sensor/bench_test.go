package sensor

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

const (
	benchEndpoints = 100_000
	benchMACs      = 2 * benchEndpoints
)

func benchMAC(i int) schema.MAC { return schema.MACFromUint64(0x020000000000 | uint64(i)) }

// populate enrolls n endpoints with two interfaces each; names are short so
// the memory figure is the correlator's own.
func populate(tb testing.TB, n int) (*Correlator, *ManualClock) {
	clock := &ManualClock{T: sensorStart.Add(-time.Hour)} // startup grace long over
	c, err := NewCorrelator(Config{}, clock)
	if err != nil {
		tb.Fatal(err)
	}
	clock.Set(sensorStart)
	for i := 0; i < n; i++ {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		_, err := c.Hello(schema.Hello{
			EndpointID: fmt.Sprint(i), Health: schema.HealthGreen,
			Interfaces: []schema.Interface{{MAC: benchMAC(2 * i), IPs: []netip.Addr{ip}}, {MAC: benchMAC(2*i + 1)}},
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return c, clock
}

// BenchmarkTraffic measures traffic-summary updates against 100k endpoints
// with 200k MACs, in batches as capture hands them over.
func BenchmarkTraffic(b *testing.B) {
	c, clock := populate(b, benchEndpoints)
	const batchSize = 4096
	batch := make([]schema.TrafficSummary, batchSize)
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += batchSize {
		now := clock.T.Add(time.Duration(done))
		for j := range batch {
			batch[j] = schema.TrafficSummary{MAC: benchMAC((next * 7919) % benchMACs), Packets: 3, Bytes: 900, FirstSeen: now, LastSeen: now}
			next++
		}
		c.Traffic(batch)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkTick measures one pass of the time-driven rules over 100k
// heartbeating endpoints.
func BenchmarkTick(b *testing.B) {
	c, clock := populate(b, benchEndpoints)
	clock.Advance(20 * time.Second)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clock.Advance(time.Millisecond)
		c.Tick()
	}
}

// BenchmarkHeartbeat measures heartbeats without a status change.
func BenchmarkHeartbeat(b *testing.B) {
	c, _ := populate(b, benchEndpoints)
	ids := make([]string, benchEndpoints)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Heartbeat(schema.Heartbeat{EndpointID: ids[i%benchEndpoints], Health: schema.HealthGreen}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryPerEndpoint reports the heap the correlator holds per
// endpoint (two interfaces, one IP, every MAC seen sending).
func BenchmarkMemoryPerEndpoint(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, clock := populate(b, benchEndpoints)
		batch := make([]schema.TrafficSummary, 0, benchMACs)
		for m := 0; m < benchMACs; m++ {
			batch = append(batch, schema.TrafficSummary{MAC: benchMAC(m), Packets: 1, Bytes: 64, FirstSeen: clock.T, LastSeen: clock.T})
		}
		c.Traffic(batch)
		batch = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/benchEndpoints, "bytes/endpoint")
		runtime.KeepAlive(c)
	}
}

// BenchmarkTrafficReference is the floor BenchmarkTraffic is compared with in
// BENCHMARKS.md: one map increment per summary over the same 200k MACs.
func BenchmarkTrafficReference(b *testing.B) {
	counts := make(map[schema.MAC]uint64, benchMACs)
	for m := 0; m < benchMACs; m++ {
		counts[benchMAC(m)] = 0
	}
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		counts[benchMAC((next*7919)%benchMACs)] += 3
		next++
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkSnapshot measures the minute's snapshot of 51,000 endpoints:
// copy is the part taken under the engine's lock, ordered the whole of it.
func BenchmarkSnapshot(b *testing.B) {
	c, _ := populate(b, 51000)
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = c.snapshot()
		}
	})
	b.Run("ordered", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_ = c.Snapshot()
		}
	})
}
