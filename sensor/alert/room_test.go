package alert

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestNoRoomDeliversWithoutWriting: while the store reports no room (a
// full disk), the dispatcher goes on delivering what the outbox holds but
// neither saves its cursor nor deletes delivered entries; both happen once
// there is room again.
func TestNoRoomDeliversWithoutWriting(t *testing.T) {
	r := startRsyslog(t, nil)
	d := mustDest(t, fmt.Sprintf("tcp://127.0.0.1:%d?format=json", r.TCP))
	var full atomic.Bool
	room := func() error {
		if full.Load() {
			return errors.New("disk full")
		}
		return nil
	}
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{d}, Room: room},
		DispatcherOptions{Housekeeping: 50 * time.Millisecond})
	saved := func() uint64 {
		v, err := loadU64(space(t, db), cursorKey(d.Name))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	first := testEvents(1, 20)
	stage(t, db, run.ob, first)
	waitSeqs(t, r, seqs(first), 10*time.Second)
	waitFor(t, 10*time.Second, "cursor 20 saved and the outbox emptied", func() bool { return saved() == 20 && run.ob.Len() == 0 })

	// Staged just before the disk filled.
	full.Store(true)
	second := testEvents(21, 20)
	stage(t, db, run.ob, second)
	waitSeqs(t, r, seqs(second), 10*time.Second)
	waitFor(t, 10*time.Second, "cursor 40 in memory", func() bool { return run.dp.Stats()[0].Cursor == 40 })
	time.Sleep(300 * time.Millisecond) // several housekeeping rounds
	if got := saved(); got != 20 {
		t.Errorf("with no room the saved cursor moved to %d, want it left at 20", got)
	}
	if n := run.ob.Len(); n != 20 {
		t.Errorf("with no room the outbox holds %d entries, want the 20 delivered ones kept", n)
	}

	full.Store(false)
	stage(t, db, run.ob, testEvents(41, 1)) // delivery saves the cursor as it goes
	waitFor(t, 10*time.Second, "cursor 41 saved and the outbox emptied", func() bool { return saved() == 41 && run.ob.Len() == 0 })
}
