package alert

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

func TestNextSequenceIDWraps(t *testing.T) {
	for _, c := range []struct{ in, want uint32 }{{0, 1}, {1, 2}, {MaxSequenceID - 1, MaxSequenceID}, {MaxSequenceID, 1}} {
		if got := NextSequenceID(c.in); got != c.want {
			t.Errorf("after %d: %d, want %d", c.in, got, c.want)
		}
	}
}

// TestSequenceIDsPerDestination delivers to a real rsyslog over two
// destinations, one with a type filter, across a restart of the sensor's
// dispatcher (the database closed and opened again) and a restart of the
// collector. Each destination's sequenceIds must run 1, 2, 3, ... over
// exactly the alerts it was sent, without a gap; a message sent twice keeps
// its number.
func TestSequenceIDsPerDestination(t *testing.T) {
	r := startRsyslog(t, nil)
	dir := t.TempDir()
	open := func() *history.Store {
		db, err := history.Open(dir, history.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	filtered := fmt.Sprintf("tcp://127.0.0.1:%d?name=filtered&hostname=dest-filtered&types=heartbeat_missing,no_heartbeat&confirm=100ms", r.TCP)
	all := fmt.Sprintf("tcp://127.0.0.1:%d?name=all&hostname=dest-all&confirm=100ms", r.TCP)
	oo := OutboxOptions{Destinations: []Destination{mustDest(t, filtered), mustDest(t, all)}}
	wantFiltered := func(ev *schema.Event) bool {
		return ev.Type == schema.EventHeartbeatMissing || ev.Type == schema.EventNoHeartbeat
	}
	var sent []schema.Event
	send := func(db *history.Store, run *running, first uint64) {
		evs := testEvents(first, 20)
		stage(t, db, run.ob, evs)
		sent = append(sent, evs...)
	}

	db := open()
	run := startDispatcher(t, db, oo, DispatcherOptions{})
	send(db, run, 1)
	waitSeqs(t, r, seqs(sent), 15*time.Second)

	// The sensor restarts.
	run.stop(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open()
	defer db.Close()
	run = startDispatcher(t, db, oo, DispatcherOptions{})
	send(db, run, 21)
	waitSeqs(t, r, seqs(sent), 15*time.Second)

	// The collector restarts; alerts raised meanwhile wait in the outbox.
	r.kill()
	send(db, run, 41)
	time.Sleep(300 * time.Millisecond)
	r.start()
	send(db, run, 61)
	waitSeqs(t, r, seqs(sent), 30*time.Second)
	// The filtered destination has its own connection: wait for it too.
	var nFiltered int
	for i := range sent {
		if wantFiltered(&sent[i]) {
			nFiltered++
		}
	}
	var ps []parsed
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ps = parseAll(t, r.messages())
		got := map[uint64]bool{}
		for _, p := range ps {
			if p.m.Hostname != nil && *p.m.Hostname == "dest-filtered" {
				got[p.seq] = true
			}
		}
		if len(got) >= nFiltered || time.Now().After(deadline) {
			break
		}
	}
	run.stop(t)

	bySeq := byEvent(sent)
	for _, dest := range []struct {
		host string
		want func(*schema.Event) bool
	}{{"dest-filtered", wantFiltered}, {"dest-all", func(*schema.Event) bool { return true }}} {
		var wantSeqs []uint64
		for i := range sent {
			if dest.want(&sent[i]) {
				wantSeqs = append(wantSeqs, sent[i].Seq)
			}
		}
		sidOf := map[uint64]uint64{} // event number -> sequenceId
		seqOf := map[uint64]uint64{} // sequenceId -> event number
		dups := 0
		for _, p := range ps {
			if p.m.Hostname == nil || *p.m.Hostname != dest.host {
				continue
			}
			if ev := bySeq[p.seq]; ev == nil || !dest.want(ev) {
				t.Fatalf("%s received event %d, which its filter rejects", dest.host, p.seq)
			}
			if s, ok := sidOf[p.seq]; ok {
				dups++
				if s != p.sid {
					t.Errorf("%s: event %d sent again as sequenceId %d, first as %d", dest.host, p.seq, p.sid, s)
				}
			}
			if e, ok := seqOf[p.sid]; ok && e != p.seq {
				t.Errorf("%s: sequenceId %d used for events %d and %d", dest.host, p.sid, e, p.seq)
			}
			sidOf[p.seq], seqOf[p.sid] = p.sid, p.seq
		}
		// Every wanted event arrived, numbered 1..n in event order.
		for i, seq := range wantSeqs {
			if sid, ok := sidOf[seq]; !ok || sid != uint64(i+1) {
				t.Errorf("%s: event %d has sequenceId %d (received %v), want %d", dest.host, seq, sid, ok, i+1)
			}
		}
		sids := make([]uint64, 0, len(seqOf))
		for s := range seqOf {
			sids = append(sids, s)
		}
		slices.Sort(sids)
		if len(sids) != len(wantSeqs) || sids[0] != 1 || sids[len(sids)-1] != uint64(len(wantSeqs)) {
			t.Errorf("%s: sequenceIds %v, want 1..%d without a gap", dest.host, sids, len(wantSeqs))
		}
		t.Logf("%s: %d alerts, sequenceIds 1..%d contiguous, %d sent again", dest.host, len(wantSeqs), len(sids), dups)
	}
}
