package alert

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Kill the collector, raise 1,000 alerts, restart it: every sequence id
// arrives.
func TestCollectorKilledAndRestarted(t *testing.T) {
	for _, scheme := range []string{"tcp", "tls"} {
		t.Run(scheme, func(t *testing.T) {
			var r *rsyslog
			url := ""
			if scheme == "tls" {
				c := newCerts(t, t.TempDir(), "")
				r = startRsyslog(t, &rsyslogTLS{certs: c, authMode: "anon"})
				url = tlsURL(r.TCP, c, "")
			} else {
				r = startRsyslog(t, nil)
				url = fmt.Sprintf("tcp://127.0.0.1:%d", r.TCP)
			}
			db := testDB(t, t.TempDir())
			run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{mustDest(t, url)}}, DispatcherOptions{})
			before := testEvents(1, 10)
			stage(t, db, run.ob, before)
			waitSeqs(t, r, seqs(before), 10*time.Second)

			r.kill()
			evs := testEvents(11, 1000)
			for i := 0; i < len(evs); i += 100 {
				stage(t, db, run.ob, evs[i:i+100])
			}
			waitFor(t, 5*time.Second, "the dispatcher to notice the dead collector", func() bool {
				return !run.dp.Stats()[0].Connected
			})
			if c := run.dp.Stats()[0].Cursor; c > 10 {
				t.Fatalf("cursor advanced to %d while the collector was dead", c)
			}
			r.start()
			ps := waitSeqs(t, r, append(seqs(before), seqs(evs)...), 20*time.Second)
			t.Logf("%d messages received for 1010 alerts (duplicates are allowed: delivery is at least once)", len(ps))
			waitFor(t, 5*time.Second, "cursor at 1010", func() bool { return run.dp.Stats()[0].Cursor == 1010 })
		})
	}
}

// Restart the sensor with undelivered alerts: they are delivered afterwards.
func TestSensorRestartDeliversBacklog(t *testing.T) {
	r := startRsyslog(t, nil)
	dbDir := t.TempDir()
	dests := []Destination{mustDest(t, fmt.Sprintf("tcp://127.0.0.1:%d?format=json", r.TCP))}

	db := testDB(t, dbDir)
	run := startDispatcher(t, db, OutboxOptions{Destinations: dests}, DispatcherOptions{})
	first := testEvents(1, 50)
	stage(t, db, run.ob, first)
	waitSeqs(t, r, seqs(first), 10*time.Second)
	waitFor(t, 5*time.Second, "cursor at 50", func() bool { return run.dp.Stats()[0].Cursor == 50 })
	r.kill()
	backlog := testEvents(51, 500)
	stage(t, db, run.ob, backlog)
	time.Sleep(300 * time.Millisecond)
	run.stop(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	r.start()
	db = testDB(t, dbDir)
	run = startDispatcher(t, db, OutboxOptions{Destinations: dests}, DispatcherOptions{})
	if run.ob.Len() < 500 {
		t.Fatalf("outbox reopened with %d entries, want the 500 undelivered", run.ob.Len())
	}
	waitSeqs(t, r, seqs(backlog), 15*time.Second)
	// The first 50 were confirmed before the restart and are not sent again.
	counts := map[uint64]int{}
	for _, p := range parseAll(t, r.messages()) {
		counts[p.seq]++
	}
	for s := uint64(1); s <= 50; s++ {
		if counts[s] != 1 {
			t.Errorf("seq %d received %d times, want once", s, counts[s])
		}
	}
}

// A collector that accepts connections and closes them at once never
// counts as delivered, though every write to it succeeds at first.
func TestClosingCollectorIsNotDelivery(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted sync.WaitGroup
	accepted.Add(1)
	go func() {
		once := sync.OnceFunc(accepted.Done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			once()
			time.Sleep(20 * time.Millisecond) // long enough for the sender's write to succeed
			c.Close()
		}
	}()
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{
		mustDest(t, "tcp://"+l.Addr().String()+"?confirm=200ms")}}, DispatcherOptions{})
	stage(t, db, run.ob, testEvents(1, 20))
	accepted.Wait()
	time.Sleep(time.Second)
	if st := run.dp.Stats()[0]; st.Cursor != 0 || st.Delivered != 0 || st.LastError == "" {
		t.Fatalf("stats %+v: a collector that closes is not a delivery", st)
	}
}

// Past the outbox limit the oldest undelivered alerts are dropped, counted,
// persisted, logged and alerted; the newest are still delivered.
func TestOutboxLimitLoss(t *testing.T) {
	r := startRsyslog(t, nil)
	r.kill()
	dbDir := t.TempDir()
	db := testDB(t, dbDir)
	dests := []Destination{mustDest(t, fmt.Sprintf("tcp://127.0.0.1:%d?name=siem", r.TCP))}
	var mu sync.Mutex
	var lossEvents []schema.Event
	onLoss := func(ev schema.Event) {
		mu.Lock()
		defer mu.Unlock()
		lossEvents = append(lossEvents, ev)
	}
	run := startDispatcher(t, db, OutboxOptions{Destinations: dests, MaxEntries: 100},
		DispatcherOptions{OnLoss: onLoss, Housekeeping: 50 * time.Millisecond})
	evs := testEvents(1, 250)
	stage(t, db, run.ob, evs)
	waitFor(t, 5*time.Second, "the loss event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lossEvents) > 0
	})
	mu.Lock()
	loss := lossEvents[0]
	mu.Unlock()
	if d, ok := loss.Details.(*schema.AlertsLostDetails); loss.Type != schema.EventAlertsLost || !loss.IsAlert() || !ok ||
		*d != (schema.AlertsLostDetails{Destination: "siem", Lost: 150, FirstSeq: 1, LastSeq: 150, LostTotal: 150}) {
		t.Errorf("loss event %+v", loss)
	}
	if st := run.dp.Stats()[0]; st.Lost != 150 || st.Cursor != 150 {
		t.Errorf("stats %+v, want 150 lost", st)
	}
	if n := run.ob.Len(); n != 100 {
		t.Errorf("outbox holds %d, want the limit 100", n)
	}
	run.stop(t)
	db.Close()
	r.start()
	db = testDB(t, dbDir)
	run = startDispatcher(t, db, OutboxOptions{Destinations: dests, MaxEntries: 1000}, DispatcherOptions{})
	if st := run.dp.Stats()[0]; st.Lost != 150 {
		t.Errorf("loss counter after restart %d, want 150", st.Lost)
	}
	// The daemon records the loss event; it is an alert like any other.
	loss.Seq = 251
	stage(t, db, run.ob, []schema.Event{loss})
	want := append(seqs(evs[150:]), 251)
	ps := waitSeqs(t, r, want, 10*time.Second)
	for _, p := range ps {
		if p.seq <= 150 {
			t.Errorf("dropped alert %d delivered", p.seq)
		}
		if p.seq == 251 && (p.sd("type") != "alerts_lost" || p.sd("d.lost") != "150") {
			t.Errorf("loss alert fields: %q", p.raw)
		}
	}
}

// An alert too large for a UDP datagram is skipped with a logged error
// instead of blocking every later alert.
func TestUDPOversizedAlertSkipped(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{
		mustDest(t, "udp://"+pc.LocalAddr().String())}}, DispatcherOptions{})
	evs := testEvents(1, 2)
	evs[0].Reason = strings.Repeat("x", 70000)
	stage(t, db, run.ob, evs)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1<<17)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if p := parseAll(t, []string{string(buf[:n])})[0]; p.seq != 2 {
		t.Errorf("first datagram is seq %d, want 2", p.seq)
	}
	waitFor(t, 2*time.Second, "cursor past both", func() bool { return run.dp.Stats()[0].Cursor == 2 })
}

// A collector that stops reading never holds up Stage: the outbox absorbs
// the backlog, and once the collector reads again everything arrives.
func TestStalledCollectorDoesNotBlockStage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	resume := make(chan struct{})
	got := make(chan uint64, 1<<16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				<-resume
				r := bufio.NewReader(c)
				for {
					ls, err := r.ReadString(' ')
					if err != nil {
						return
					}
					n, _ := strconv.Atoi(strings.TrimSpace(ls))
					msg := make([]byte, n)
					if _, err := io.ReadFull(r, msg); err != nil {
						return
					}
					p := parseAll(t, []string{string(msg)})[0]
					got <- p.seq
				}
			}()
		}
	}()
	db := testDB(t, t.TempDir())
	run := startDispatcher(t, db, OutboxOptions{Destinations: []Destination{
		mustDest(t, "tcp://"+l.Addr().String()+"?timeout=30s")}}, DispatcherOptions{})
	// About 30 MB of messages: more than the socket buffers hold, so the
	// sender is stuck in a write while Stage goes on.
	const total = 40000
	for i := 0; i < total; i += 500 {
		stage(t, db, run.ob, testEvents(uint64(i+1), 500))
	}
	waitFor(t, 5*time.Second, "the sender to fill the socket buffers", func() bool {
		return run.dp.Stats()[0].Connected
	})
	close(resume)
	seen := map[uint64]bool{}
	timeout := time.After(30 * time.Second)
	for len(seen) < total {
		select {
		case s := <-got:
			seen[s] = true
		case <-timeout:
			t.Fatalf("received %d of %d alerts", len(seen), total)
		}
	}
}

// The limit holds for batches flushed well after Stage, and the count
// recovers from batches that were cancelled.
func TestOutboxLimitWithSlowAndCancelledBatches(t *testing.T) {
	db := testDB(t, t.TempDir())
	var mu sync.Mutex
	var lost []schema.Event
	run := startDispatcher(t, db, OutboxOptions{MaxEntries: 10, Destinations: []Destination{
		mustDest(t, fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t, "tcp")))}},
		DispatcherOptions{Housekeeping: 20 * time.Millisecond, OnLoss: func(ev schema.Event) {
			mu.Lock()
			lost = append(lost, ev)
			mu.Unlock()
		}})
	errCancel := errors.New("cancelled")
	sp := space(t, db)
	if err := sp.Update(func(b *history.Batch) error {
		if err := run.ob.Stage(b, testEvents(1, 30)); err != nil {
			return err
		}
		return errCancel
	}); !errors.Is(err, errCancel) {
		t.Fatalf("cancelled batch: %v", err)
	}
	waitFor(t, 5*time.Second, "the count to drop the cancelled batch", func() bool { return run.ob.Len() == 0 })

	if err := sp.Update(func(b *history.Batch) error {
		if err := run.ob.Stage(b, testEvents(31, 30)); err != nil {
			return err
		}
		time.Sleep(60 * time.Millisecond) // several limit checks before the batch is applied
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the loss event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(lost) > 0
	})
	mu.Lock()
	if len(lost) != 1 || lost[0].Details.(*schema.AlertsLostDetails).Lost != 20 {
		t.Errorf("loss events %+v, want one for 20 alerts", lost)
	}
	mu.Unlock()
	if n, err := run.ob.committed(); err != nil || n != 10 {
		t.Errorf("outbox holds %d (%v), want 10", n, err)
	}
}
