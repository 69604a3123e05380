package history

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// fillDays appends per events per day for days days ending at last, with
// incompressible details of pad bytes each.
func fillDays(t *testing.T, s *Store, last time.Time, days, per, pad int) {
	t.Helper()
	seq := s.NextSeq()
	buf := make([]byte, pad/2)
	for d := days - 1; d >= 0; d-- {
		ts := last.Add(-time.Duration(d) * dayLen)
		evs := make([]schema.Event, 0, per)
		for i := 0; i < per; i++ {
			rand.Read(buf)
			evs = append(evs, schema.Event{
				Seq: seq, Time: ts.Add(time.Duration(i) * time.Second), Type: schema.EventAuthFailed,
				Severity: schema.SeverityWarning, Reason: "refused peer",
				Details: &schema.AuthFailedDetails{Reason: hex.EncodeToString(buf)},
			})
			seq++
		}
		if err := s.Append(evs, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// dirSize returns the disk space the files under dir occupy.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512 // allocated, not apparent, size
			}
		}
		return nil
	})
	return n
}

func putAlertKey(t *testing.T, s *Store) {
	t.Helper()
	sp, err := s.Space("alert")
	if err == nil {
		err = sp.Update(func(b *Batch) error { return b.Set(sp, []byte("outbox/1"), []byte("pending")) })
	}
	if err != nil {
		t.Fatal(err)
	}
}

func alertKeyPresent(s *Store) bool {
	sp, err := s.Space("alert")
	if err != nil {
		return false
	}
	_, ok, err := sp.Get([]byte("outbox/1"))
	return ok && err == nil
}

func TestRetentionDropsWholeDaysAndFreesDisk(t *testing.T) {
	dir := t.TempDir()
	now := at(12, 0)
	s, err := Open(dir, Options{Now: func() time.Time { return now }, Retention: 10 * dayLen, MinFreeBytes: 1, MinFreeFraction: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putAlertKey(t, s)
	fillDays(t, s, now, 30, 200, 8000) // ~1.6 MB of incompressible events per day
	// Reopen so the memtables reach the LSM tree.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, s.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := dirSize(t, dir)
	days, _ := s.Days()
	if len(days) != 30 {
		t.Fatalf("%d days before retention, want 30", len(days))
	}
	res, err := s.Prune()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Expired) != 20 || len(res.ForSpace) != 0 {
		t.Fatalf("prune %+v: want 20 expired days", res)
	}
	days, _ = s.Days()
	if len(days) != 10 || !days[0].Equal(dayStart(dayOf(now.Add(-9*dayLen)))) {
		t.Fatalf("days after retention %v", days)
	}
	if !alertKeyPresent(s) {
		t.Fatal("retention touched the alert outbox")
	}
	got, _ := s.Alerts(AlertQuery{Range: Range{Since: now.Add(-40 * dayLen), Until: now.Add(dayLen)}, Limit: 1 << 20})
	if len(got) != 10*200 {
		t.Fatalf("%d alerts left, want %d", len(got), 10*200)
	}
	after := dirSize(t, dir)
	t.Logf("disk %d -> %d bytes", before, after)
	if after > before*6/10 {
		t.Errorf("retention freed too little disk: %d -> %d bytes", before, after)
	}
}

// TestDiskLowDropsOldestDays runs the store on a small tmpfs and asks for
// more free space than it has: the oldest days go first, the current day
// stays, and each drop raises a storage_low event.
func TestDiskLowDropsOldestDays(t *testing.T) {
	mnt := testenv.Tmpfs(t, "96m")
	now := at(12, 0)
	var alerts []schema.Event
	var s *Store
	opts := Options{
		Now: func() time.Time { return now }, MinFreeBytes: 1, MinFreeFraction: 1e-9,
		MemTableSize: 4 << 20, BlockCacheSize: 4 << 20, IndexCacheSize: 4 << 20,
		// As the daemon does: record the alert, which appends it to this store.
		OnStorageLow: func(ev schema.Event) {
			ev.Seq = s.NextSeq()
			if err := s.Append([]schema.Event{ev}, nil); err != nil {
				t.Errorf("append storage_low: %v", err)
			}
			alerts = append(alerts, ev)
		},
	}
	s, err := Open(filepath.Join(mnt, "history"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putAlertKey(t, s)
	fillDays(t, s, now, 6, 300, 8000) // ~2.4 MB per day
	if err := s.db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	free, total, err := freeSpace(mnt)
	if err != nil {
		t.Fatal(err)
	}
	// Demand 6 MB more than is free: a few days must go, never today.
	s.opts.MinFreeBytes = free + 6<<20
	res, err := s.Prune()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("free %d of %d; prune %+v", free, total, res)
	if len(res.ForSpace) == 0 || len(alerts) == 0 {
		t.Fatalf("nothing dropped for space: %+v, alerts %d", res, len(alerts))
	}
	days, _ := s.Days()
	if len(days) == 0 || !days[len(days)-1].Equal(dayStart(dayOf(now))) {
		t.Fatalf("days left %v: the current day must stay", days)
	}
	for i, d := range res.ForSpace {
		if want := dayStart(dayOf(now.Add(-5 * dayLen))).Add(time.Duration(i) * dayLen); !d.Equal(want) {
			t.Errorf("dropped %v as #%d, want oldest first (%v)", d, i, want)
		}
	}
	for _, ev := range alerts {
		if ev.Type != schema.EventStorageLow || ev.Reason == "" {
			t.Errorf("alert %+v", ev)
		}
	}
	if !alertKeyPresent(s) {
		t.Fatal("disk-low drop touched the alert outbox")
	}
	stored, err := s.Alerts(AlertQuery{Range: Range{Since: now.Add(-dayLen), Until: now.Add(dayLen)}, Types: []schema.EventType{schema.EventStorageLow}})
	if err != nil || len(stored) != len(alerts) {
		t.Errorf("storage_low alerts in history: %v, %d of %d", err, len(stored), len(alerts))
	}
}

func TestOpenLockedGivesClearError(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, at(12, 0))
	defer s.Close()
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

// TestRunFlushesAndPrunes runs the housekeeping loop briefly: it applies
// retention at once and persists traffic and states.
func TestRunFlushesAndPrunes(t *testing.T) {
	dir := t.TempDir()
	now := at(12, 0)
	s, err := Open(dir, Options{Now: func() time.Time { return now }, Retention: 2 * dayLen, MinFreeBytes: 1, MinFreeFraction: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fillDays(t, s, now, 5, 3, 10)
	if err := s.AddTraffic([]schema.TrafficSummary{{MAC: mac1, Packets: 4, Bytes: 400, FirstSeen: at(11, 0), LastSeen: at(11, 0)}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, time.Hour) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		days, _ := s.Days()
		tr, _ := s.Traffic(TrafficQuery{Range: Range{Since: at(10, 0), Until: at(12, 0)}, MAC: mac1})
		if len(days) == 2 && len(tr) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Run: days %v, traffic %v", days, tr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
