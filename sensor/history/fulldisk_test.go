package history

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// TestFullDiskRefusesWritesAndLosesNothing fills the file system under the
// store. Badger writes through memory-mapped sparse files, and a write into
// one on a full file system kills the process with SIGBUS: the store must
// refuse writes with ErrDiskFull instead, keep what it could not write, and
// write it once there is room again.
func TestFullDiskRefusesWritesAndLosesNothing(t *testing.T) {
	mnt := testenv.Tmpfs(t, "48m")
	dir := filepath.Join(mnt, "history")
	now := at(12, 0)
	opts := tmpfsOptions(now)
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()

	seq := s.NextSeq()
	event := func() []schema.Event {
		ev := refusedPeer(seq, now, " "+strings.Repeat("x", 500))
		seq++
		return []schema.Event{ev}
	}
	binding := func(i int) []schema.Binding {
		return []schema.Binding{{MAC: schema.MAC{2, 0, 0, 0, 0, byte(i)}, IP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}),
			Source: "arp", Time: now.Add(time.Duration(i) * time.Second)}}
	}
	for range 100 {
		if err := s.Append(event(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddBindings(binding(1)); err != nil {
		t.Fatal(err)
	}

	// Another writer fills the file system to the last block.
	freeDisk := testenv.FillDisk(t, mnt)

	// Every write is refused, with an error that says what to do; the
	// process survives.
	refused := event()
	err = s.Append(refused, nil)
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "free disk space") {
		t.Fatalf("append on a full disk: %v, want ErrDiskFull saying what to do", err)
	}
	t.Logf("append on a full disk: %v", err)
	if err := s.AddBindings(binding(2)); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("add bindings on a full disk: %v, want ErrDiskFull", err)
	}
	if err := s.Flush(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("flush on a full disk: %v, want ErrDiskFull", err)
	}
	if other, err := Open(filepath.Join(mnt, "other"), opts); !errors.Is(err, ErrDiskFull) {
		if other != nil {
			other.Close()
		}
		t.Fatalf("open on a full disk: %v, want ErrDiskFull", err)
	}

	// Room again: the refused events go in as the daemon retries them, and
	// the held bindings with the next write.
	freeDisk()
	if err := s.Append(refused, nil); err != nil {
		t.Fatalf("append once there is room: %v", err)
	}
	if err := s.Flush(); err != nil {
		t.Fatalf("flush once there is room: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, opts); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Alerts(AlertQuery{Range: Range{Since: now.Add(-time.Hour), Until: now.Add(time.Hour)}, Types: []schema.EventType{schema.EventAuthFailed}})
	if err != nil || len(evs) != 101 {
		t.Fatalf("after reopening: %d events (%v), want 101", len(evs), err)
	}
	for i := 1; i <= 2; i++ {
		b := binding(i)[0]
		ans, err := s.Who(b.IP, b.Time)
		if err != nil || ans.MAC == nil || *ans.MAC != b.MAC {
			t.Errorf("who had %s at %s: %+v (%v), want %s", b.IP, b.Time, ans, err, b.MAC)
		}
	}
}

// TestCloseOnFullDiskLeavesTheLogToReplay closes the store while the disk
// is full: closing Badger would write a table through a memory-mapped file
// and die of SIGBUS, so Close refuses with ErrDiskFull and leaves the
// write-ahead log. A copy of the directory, opened once there is room,
// holds every event Append accepted.
func TestCloseOnFullDiskLeavesTheLogToReplay(t *testing.T) {
	testenv.RequireCommands(t, "cp")
	mnt := testenv.Tmpfs(t, "48m")
	now := at(12, 0)
	opts := tmpfsOptions(now)
	dir := filepath.Join(mnt, "history")
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		if err := s.Append([]schema.Event{refusedPeer(uint64(i), now, "")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	freeDisk := testenv.FillDisk(t, mnt)
	if err := s.Close(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("close on a full disk: %v, want ErrDiskFull", err)
	}
	freeDisk()
	// This process still holds the database's lock: open a copy, as the
	// next process would open the original.
	cp := filepath.Join(t.TempDir(), "history")
	if out, err := exec.Command("cp", "-a", dir, cp).CombinedOutput(); err != nil {
		t.Fatalf("copy the database: %v: %s", err, out)
	}
	if err := os.Remove(filepath.Join(cp, "LOCK")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	s2, err := Open(cp, opts)
	if err != nil {
		t.Fatalf("open after a close on a full disk: %v", err)
	}
	defer s2.Close()
	evs, err := s2.Alerts(AlertQuery{Range: Range{Since: now.Add(-time.Hour), Until: now.Add(time.Hour)}, Types: []schema.EventType{schema.EventAuthFailed}})
	if err != nil || len(evs) != 100 {
		t.Fatalf("recovered %d events (%v), want 100", len(evs), err)
	}
	if next := s2.NextSeq(); next != 101 {
		t.Errorf("next sequence after recovery %d, want 101", next)
	}
}

// tmpfsOptions sizes a store for a small tmpfs: small memtables and caches,
// an 8 MiB reserve, no pruning for space.
func tmpfsOptions(now time.Time) Options {
	return Options{
		Now: func() time.Time { return now }, MinFreeBytes: 1, MinFreeFraction: 1e-9,
		MemTableSize: 1 << 20, BlockCacheSize: 4 << 20, IndexCacheSize: 4 << 20, ReserveBytes: 8 << 20,
	}
}

// refusedPeer is auth_failed event seq, seq seconds after now, its reason
// followed by pad.
func refusedPeer(seq uint64, now time.Time, pad string) schema.Event {
	return schema.Event{Seq: seq, Time: now.Add(time.Duration(seq) * time.Second), Type: schema.EventAuthFailed,
		Severity: schema.SeverityWarning, Reason: "refused peer" + pad}
}
