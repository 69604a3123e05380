package history_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/history/synth"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// benchEvents is one synthetic day of a 10,000-endpoint fleet (~43,000
// events: hellos, transitions, missing heartbeats, departures, no-heartbeat
// alerts).
func benchEvents(b *testing.B) []schema.Event {
	b.Helper()
	d := uint32(time.Now().Unix()/86400) - 1
	return synth.Config{Endpoints: 10000, Seed: 1}.DayEvents(d)
}

// benchOptions are the store options measured; TAPBEAT_BENCH_MEMTABLE_MIB
// overrides the memtable size.
func benchOptions() history.Options {
	var o history.Options
	if v, err := strconv.Atoi(os.Getenv("TAPBEAT_BENCH_MEMTABLE_MIB")); err == nil && v > 0 {
		o.MemTableSize = int64(v) << 20
	}
	return o
}

// BenchmarkIngest appends a fleet's day of events in batches, each batch
// synced to disk, as the daemon does. Each iteration first writes the same
// events to a bare Badger (same options, one JSON value per event, no
// indexes, same batches and syncs) as the reference, so the ratio
// store/reference holds on a shared, noisy machine.
func BenchmarkIngest(b *testing.B) {
	for _, n := range []int{1000, 4000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchIngest(b, n) })
	}
}

func benchIngest(b *testing.B, batch int) {
	evs := benchEvents(b)
	s, err := history.Open(b.TempDir(), benchOptions())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	mem := int64(8 << 20)
	if o := benchOptions(); o.MemTableSize > 0 {
		mem = o.MemTableSize
	}
	db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithLogger(nil).
		WithCompression(options.Snappy).WithIndexCacheSize(16 << 20).WithBlockCacheSize(32 << 20).
		WithMemTableSize(mem).WithNumMemtables(2).WithDetectConflicts(false))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	seq := uint64(1)
	var storeTime, refTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		first := seq
		t0 := time.Now()
		for j := 0; j < len(evs); j += batch {
			wb := db.NewWriteBatch()
			for k := j; k < min(j+batch, len(evs)); k++ {
				evs[k].Seq = seq
				seq++
				v, _ := json.Marshal(&evs[k])
				if err := wb.Set(binary.BigEndian.AppendUint64([]byte("e"), evs[k].Seq), v); err != nil {
					b.Fatal(err)
				}
			}
			if err := wb.Flush(); err != nil {
				b.Fatal(err)
			}
			if err := db.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		refTime += time.Since(t0)
		seq = first
		t0 = time.Now()
		for j := 0; j < len(evs); j += batch {
			part := evs[j:min(j+batch, len(evs))]
			for k := range part {
				part[k].Seq = seq
				seq++
			}
			if err := s.Append(part, nil); err != nil {
				b.Fatal(err)
			}
		}
		storeTime += time.Since(t0)
	}
	n := float64(len(evs) * b.N)
	b.ReportMetric(n/storeTime.Seconds(), "events/s")
	b.ReportMetric(n/refTime.Seconds(), "ref-events/s")
	b.ReportMetric(refTime.Seconds()/storeTime.Seconds(), "ratio")
	b.ReportMetric(0, "ns/op")
}
