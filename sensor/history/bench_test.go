package history_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/history/synth"
)

// benchEvents is one synthetic day of a 10,000-endpoint fleet (~55,000
// events: hellos, transitions, missing heartbeats, departures, no-heartbeat
// alerts).
func benchEvents(b *testing.B) []sensor.Event {
	b.Helper()
	d := uint32(time.Now().Unix()/86400) - 1
	return synth.Config{Endpoints: 10000, Seed: 1}.DayEvents(d)
}

// benchBatches are the Append batch sizes measured: the daemon appends what
// is queued, so heavier ingest means larger batches.
var benchBatches = []int{1000, 4000}

// BenchmarkIngest appends a fleet's day of events in batches, each batch
// synced to disk, as the daemon does.
func BenchmarkIngest(b *testing.B) {
	for _, n := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchIngest(b, n) })
	}
}

func benchIngest(b *testing.B, benchBatch int) {
	evs := benchEvents(b)
	s, err := history.Open(b.TempDir(), history.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	seq := uint64(1)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for j := 0; j < len(evs); j += benchBatch {
			batch := evs[j:min(j+benchBatch, len(evs))]
			for k := range batch {
				batch[k].Seq = seq
				seq++
			}
			if err := s.Append(batch, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(evs)*b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkIngestReference is the floor to compare BenchmarkIngest with:
// the same events written by a bare Badger (same options) as one JSON value
// each, no indexes, same batches and syncs.
func BenchmarkIngestReference(b *testing.B) {
	for _, n := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchReference(b, n) })
	}
}

func benchReference(b *testing.B, benchBatch int) {
	evs := benchEvents(b)
	db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithLogger(nil).
		WithCompression(options.Snappy).WithIndexCacheSize(16 << 20).
		WithBlockCacheSize(32 << 20).WithMemTableSize(16 << 20).WithNumMemtables(3).WithDetectConflicts(false))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	seq := uint64(1)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for j := 0; j < len(evs); j += benchBatch {
			wb := db.NewWriteBatch()
			for k := j; k < min(j+benchBatch, len(evs)); k++ {
				evs[k].Seq = seq
				v, _ := json.Marshal(&evs[k])
				if err := wb.Set(binary.BigEndian.AppendUint64([]byte("e"), seq), v); err != nil {
					b.Fatal(err)
				}
				seq++
			}
			if err := wb.Flush(); err != nil {
				b.Fatal(err)
			}
			if err := db.Sync(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(evs)*b.N)/time.Since(start).Seconds(), "events/s")
}
