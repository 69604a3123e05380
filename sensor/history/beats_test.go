package history

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// storedRecord reads the state record of id as written on disk.
func storedRecord(t *testing.T, s *Store, id string) (schema.EndpointState, bool) {
	t.Helper()
	var st schema.EndpointState
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(prefixState + id))
		if err == badger.ErrKeyNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(v []byte) error { return decodeState(v, &st) })
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, found
}

func beatRecordsOnDisk(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixBeats)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func loaded(t *testing.T, s *Store) map[string]schema.EndpointState {
	t.Helper()
	snap, err := s.LoadSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]schema.EndpointState{}
	for _, st := range snap.Endpoints {
		out[st.ID] = st
	}
	return out
}

// save saves a snapshot of eps, failing the test if it is not saved.
func save(t *testing.T, s *Store, eps ...schema.EndpointState) {
	t.Helper()
	if err := s.SaveSnapshot(sensor.Snapshot{NextSeq: 1, Endpoints: eps}); err != nil {
		t.Fatal(err)
	}
}

func green(id string, since, hb time.Time) schema.EndpointState {
	return schema.EndpointState{ID: id, Name: "host-" + id, Org: "Example", Health: schema.HealthGreen,
		Status: schema.StatusGreen, StatusSince: since, LastHeartbeat: hb, Connected: true,
		Interfaces: []schema.Interface{{Name: "eth0", MAC: schema.MustParseMAC("02:00:00:00:00:0a")}},
		Users:      []string{"alice"}}
}

// TestSnapshotWritesWhatChanged: a snapshot rewrites the record of an
// endpoint that changed, carries a newer last heartbeat alone in the beat
// records, drops removed endpoints, and a reopened store restores the
// newest of each, across snapshots that bring nothing new.
func TestSnapshotWritesWhatChanged(t *testing.T) {
	dir := t.TempDir()
	t0 := at(9, 0)
	s := openTest(t, dir, t0)
	a, b, c := green("ep-a", t0, t0), green("ep-b", t0, t0), green("ep-c", t0, t0)
	save(t, s, a, b, c)
	// A minute on: A only heartbeated, B turned yellow, C was removed.
	t1 := t0.Add(time.Minute)
	a.LastHeartbeat = t1
	b.LastHeartbeat, b.Health, b.Status, b.StatusSince = t1, schema.HealthYellow, schema.StatusYellow, t1
	save(t, s, a, b)
	if rec, _ := storedRecord(t, s, "ep-a"); !rec.LastHeartbeat.Equal(t0) {
		t.Errorf("A's record was rewritten for a heartbeat alone: last heartbeat %v, want the first save's %v", rec.LastHeartbeat, t0)
	}
	if rec, _ := storedRecord(t, s, "ep-b"); rec.Status != schema.StatusYellow || !rec.LastHeartbeat.Equal(t1) {
		t.Errorf("B's record after its change: %s, last heartbeat %v", rec.Status, rec.LastHeartbeat)
	}
	if _, ok := storedRecord(t, s, "ep-c"); ok {
		t.Error("removed C still has a state record")
	}
	// Another minute with nothing new: A's beat must survive the rewrite
	// of the beat records.
	save(t, s, a, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, t1)
	got := loaded(t, s)
	if len(got) != 2 || !got["ep-a"].LastHeartbeat.Equal(t1) || got["ep-b"].Status != schema.StatusYellow {
		t.Fatalf("reopened: %+v, want A heartbeating at %v and B yellow, no C", got, t1)
	}
	// Reopened, a snapshot that brings nothing new keeps A's beat too.
	save(t, s, a, b)
	s.Close()
	s = openTest(t, dir, t1)
	if got := loaded(t, s)["ep-a"]; !got.LastHeartbeat.Equal(t1) {
		t.Errorf("A's last heartbeat after a quiet snapshot and a reopen: %v, want %v", got.LastHeartbeat, t1)
	}
	s.Close()
}

// TestBeatRecordsFollowTheFleet: beats of thousands of endpoints spread
// over several records; once the states are rewritten whole, the records
// are deleted, and none is left behind.
func TestBeatRecordsFollowTheFleet(t *testing.T) {
	dir := t.TempDir()
	t0 := at(9, 0)
	s := openTest(t, dir, t0)
	defer s.Close()
	n := 2*beatsPerRecord + 10
	snap := sensor.Snapshot{NextSeq: 1}
	for i := range n {
		snap.Endpoints = append(snap.Endpoints, green(fmt.Sprintf("ep-%05d", i), t0, t0))
	}
	if err := s.SaveSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if got := beatRecordsOnDisk(t, s); got != 0 {
		t.Errorf("first save: %d beat records, want 0", got)
	}
	for i := range snap.Endpoints {
		snap.Endpoints[i].LastHeartbeat = t0.Add(time.Minute)
	}
	if err := s.SaveSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if got := beatRecordsOnDisk(t, s); got != 3 {
		t.Errorf("%d heartbeats alone: %d beat records, want 3", n, got)
	}
	// Every endpoint changes status: the records carry the beats, the beat
	// records go.
	for i := range snap.Endpoints {
		snap.Endpoints[i].Status, snap.Endpoints[i].StatusSince = schema.StatusYellow, t0.Add(2*time.Minute)
	}
	if err := s.SaveSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if got := beatRecordsOnDisk(t, s); got != 0 {
		t.Errorf("after every state was rewritten: %d beat records left, want 0", got)
	}
	for id, st := range loaded(t, s) {
		if !st.LastHeartbeat.Equal(t0.Add(time.Minute)) {
			t.Fatalf("%s: last heartbeat %v", id, st.LastHeartbeat)
		}
	}
}

// TestDamagedBeatRecord: a damaged beat record costs the newest last
// heartbeats, says so, and the store opens.
func TestDamagedBeatRecord(t *testing.T) {
	dir := t.TempDir()
	t0 := at(9, 0)
	s := openTest(t, dir, t0)
	a := green("ep-a", t0, t0)
	save(t, s, a)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(beatKey(0), []byte{1, 2, 3}) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var logged bytes.Buffer
	s, err := Open(dir, Options{Now: func() time.Time { return t0 }, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatalf("a damaged beat record stops the store from opening: %v", err)
	}
	defer s.Close()
	if got := loaded(t, s)["ep-a"]; !got.LastHeartbeat.Equal(t0) {
		t.Errorf("last heartbeat %v, want the state record's %v", got.LastHeartbeat, t0)
	}
	if !strings.Contains(logged.String(), "damaged") {
		t.Errorf("nothing said about the damaged record: %q", logged.String())
	}
}

// TestBeatsRoundTrip: beats decode as encoded, and a record cut anywhere
// but between entries is refused.
func TestBeatsRoundTrip(t *testing.T) {
	in := []beat{{"a", at(1, 0)}, {strings.Repeat("x", 300), at(2, 30)}, {"", at(3, 0)}}
	var out []beat
	if err := decodeBeats(encodeBeats(in), func(id string, t time.Time) { out = append(out, beat{id, t}) }); err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("%d beats back, want %d", len(out), len(in))
	}
	for i := range in {
		if out[i].id != in[i].id || !out[i].at.Equal(in[i].at) {
			t.Errorf("beat %d: %+v, want %+v", i, out[i], in[i])
		}
	}
	b := encodeBeats(in)
	for cut := 1; cut < len(b); cut++ {
		err := decodeBeats(b[:cut], func(string, time.Time) {})
		whole := cut == 10 || cut == 10+8+2+300
		if whole != (err == nil) {
			t.Errorf("cut at %d of %d: err %v", cut, len(b), err)
		}
	}
}

// TestSnapshotNotSavedIsWrittenAgain: a save that fails after changed
// states were taken in leaves them to be written whole by the next one,
// not compared away as already stored.
func TestSnapshotNotSavedIsWrittenAgain(t *testing.T) {
	dir := t.TempDir()
	t0 := at(9, 0)
	s := openTest(t, dir, t0)
	a := green("ep-a", t0, t0)
	save(t, s, a)
	a.Status, a.StatusSince = schema.StatusYellow, t0.Add(time.Minute)
	// An id longer than Badger takes as a key fails the save after A.
	bad := green(strings.Repeat("x", 70000), t0, t0)
	if err := s.SaveSnapshot(sensor.Snapshot{NextSeq: 1, Endpoints: []schema.EndpointState{a, bad}}); err == nil {
		t.Fatal("a save with a 70,000-byte key succeeded")
	}
	save(t, s, a)
	if rec, _ := storedRecord(t, s, "ep-a"); rec.Status != schema.StatusYellow {
		t.Errorf("A's record after a failed save and a good one: %s, want yellow", rec.Status)
	}
	s.Close()
}
