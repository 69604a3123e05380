package alert

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/tapbeat/tapbeat/sensor/alert/syslog"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// DispatcherOptions configures a Dispatcher.
type DispatcherOptions struct {
	// OnLoss receives a schema.EventAlertsLost event (without a sequence
	// number) each time a destination loses alerts to the outbox limit; the
	// daemon wires it to Engine.Record. It is called from the dispatcher's
	// housekeeping goroutine with no dispatcher lock held.
	OnLoss func(schema.Event)
	// Logger receives delivery logs (slog.Default when nil).
	Logger *slog.Logger
	// Version is the product version written in CEF headers.
	Version string
	// MaxBackoff caps the wait between reconnection attempts (default 10s).
	MaxBackoff time.Duration
	// Housekeeping is how often delivered entries are deleted and the
	// outbox limit enforced (default 1s).
	Housekeeping time.Duration
	// Poll is how often an idle destination looks for new entries even
	// without a commit notification (default 1s).
	Poll time.Duration
}

// Dispatcher delivers the outbox to every destination, one goroutine each.
type Dispatcher struct {
	ob    *Outbox
	opts  DispatcherOptions
	log   *slog.Logger
	dests []*destState

	lastGen  uint64    // the outbox's Stage count at the last limit check (housekeeping only)
	genSince time.Time // when lastGen was first seen
}

// DestinationStats describes one destination's delivery state.
type DestinationStats struct {
	Name      string
	Cursor    uint64 // every alert up to this sequence number is delivered or skipped
	Delivered uint64 // alerts delivered since the dispatcher started
	Lost      uint64 // alerts lost to the outbox limit, over the outbox's life
	Connected bool
	LastError string // the last connection or delivery error, if any
}

type pend struct {
	seq uint64    // everything up to seq has been written
	sid uint32    // the sequenceId of the last message written up to seq
	n   uint64    // alerts written in this step
	at  time.Time // when
}

type destState struct {
	d    Destination
	wake chan struct{}

	mu        sync.Mutex
	cursor    uint64
	sid       uint32 // sequenceId of the last message submitted up to cursor (0: none yet)
	persisted uint64
	savedSID  uint32
	savedLost uint64
	floor     uint64 // entries up to here were dropped by the outbox limit
	lost      uint64
	delivered uint64
	connected bool
	lastErr   string
}

// NewDispatcher prepares delivery of ob's entries; Run starts it.
func NewDispatcher(ob *Outbox, opts DispatcherOptions) (*Dispatcher, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.Housekeeping <= 0 {
		opts.Housekeeping = time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	dp := &Dispatcher{ob: ob, opts: opts, log: opts.Logger}
	var wakers []chan struct{}
	for _, d := range ob.dests {
		s := &destState{d: d, wake: make(chan struct{}, 1)}
		var err error
		if s.cursor, err = loadU64(ob.sp, cursorKey(d.Name)); err != nil {
			return nil, fmt.Errorf("alert destination %s: load cursor: %w", d.Name, err)
		}
		if s.lost, err = loadU64(ob.sp, lostKey(d.Name)); err != nil {
			return nil, fmt.Errorf("alert destination %s: load loss counter: %w", d.Name, err)
		}
		sid, err := loadU64(ob.sp, sidKey(d.Name))
		if err != nil {
			return nil, fmt.Errorf("alert destination %s: load sequenceId: %w", d.Name, err)
		}
		s.sid = uint32(min(sid, MaxSequenceID))
		s.persisted, s.savedLost, s.savedSID = s.cursor, s.lost, s.sid
		dp.dests = append(dp.dests, s)
		wakers = append(wakers, s.wake)
	}
	ob.wakers.Store(&wakers)
	return dp, nil
}

// Stats returns each destination's delivery state.
func (dp *Dispatcher) Stats() []DestinationStats {
	out := make([]DestinationStats, 0, len(dp.dests))
	for _, s := range dp.dests {
		s.mu.Lock()
		out = append(out, DestinationStats{Name: s.d.Name, Cursor: s.cursor, Delivered: s.delivered,
			Lost: s.lost, Connected: s.connected, LastError: s.lastErr})
		s.mu.Unlock()
	}
	return out
}

// Run delivers until ctx ends, then persists every cursor and returns. It
// must return before the database is closed.
func (dp *Dispatcher) Run(ctx context.Context) error {
	if len(dp.dests) == 0 {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		dp.housekeep(ctx)
	}()
	for _, s := range dp.dests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dp.deliver(ctx, s)
		}()
	}
	wg.Wait()
	var err error
	for _, s := range dp.dests {
		if e := dp.persist(s); e != nil && err == nil {
			err = e
		}
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// deliver runs one destination: connect, send from the cursor, confirm,
// and on any failure reconnect and resend from the cursor.
func (dp *Dispatcher) deliver(ctx context.Context, s *destState) {
	log := dp.log.With("destination", s.d.Name)
	retry := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: dp.opts.MaxBackoff}
	for ctx.Err() == nil {
		cn, err := dial(ctx, &s.d)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.setErr(err)
			wait := retry.NextBackOff()
			log.Warn("alert destination unreachable; alerts wait in the outbox", "err", err, "retry_in", wait)
			sleep(ctx, wait)
			continue
		}
		s.mu.Lock()
		s.connected = true
		s.mu.Unlock()
		delivered, err := dp.session(ctx, s, cn)
		if err != nil && !delivered {
			err = refusedHint(&s.d, err)
		}
		cn.close()
		s.mu.Lock()
		s.connected = false
		s.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if delivered {
			retry.Reset()
		}
		s.setErr(err)
		wait := retry.NextBackOff()
		log.Warn("alert destination connection ended; unconfirmed alerts will be sent again", "err", err, "retry_in", wait)
		sleep(ctx, wait)
	}
}

func (s *destState) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// session sends over one connection until it fails or ctx ends. It reports
// whether any alert was confirmed.
func (dp *Dispatcher) session(ctx context.Context, s *destState, cn *conn) (bool, error) {
	f := Formatter{Format: s.d.Format, Facility: s.d.Facility, Hostname: s.d.Hostname,
		ProcID: strconv.Itoa(os.Getpid()), Version: dp.opts.Version}
	confirm := s.d.Confirm
	if !cn.stream {
		confirm = 0 // udp: nothing to wait for; relp: acknowledged
	}
	// Messages are numbered on from the confirmed cursor, so one sent again
	// after a reconnect or restart keeps its sequenceId.
	s.mu.Lock()
	next, sid := s.cursor, s.sid
	s.mu.Unlock()
	var (
		pending   []pend
		buf, msg  []byte
		msgs      [][]byte
		confirmed bool
		poll      = time.NewTicker(dp.opts.Poll)
		timer     = time.NewTimer(time.Hour)
		retries   int       // reads that found a staged batch not yet committed
		saved     time.Time // when the cursor was last persisted
	)
	defer poll.Stop()
	defer timer.Stop()
	for {
		s.mu.Lock()
		next = max(next, s.floor)
		s.mu.Unlock()
		ents, last, err := dp.ob.read(next, s.d.Batch, s.d.Filter)
		if err != nil {
			return confirmed, err
		}
		s.mu.Lock()
		floor := s.floor
		s.mu.Unlock()
		buf = buf[:0]
		msgs = msgs[:0]
		var n uint64
		for i := range ents {
			if ents[i].seq <= floor {
				continue
			}
			start := len(buf)
			if buf, err = f.append(buf, &ents[i].ev, ents[i].details, NextSequenceID(sid)); err != nil {
				buf = buf[:start]
				dp.log.Error("alert cannot be formatted; skipped", "destination", s.d.Name, "seq", ents[i].seq, "err", err)
				continue
			}
			if cn.udp() && len(buf)-start > maxDatagram {
				dp.log.Error("alert too large for one UDP datagram; skipped (use tcp, tls or relp for large alerts)",
					"destination", s.d.Name, "seq", ents[i].seq, "bytes", len(buf)-start)
				buf = buf[:start]
				continue
			}
			n++
			sid = NextSequenceID(sid)
			if cn.stream {
				// Frame in place: the length prefix goes before the message.
				msg = append(msg[:0], buf[start:]...)
				buf = syslog.AppendOctetCounted(buf[:start], msg)
			} else {
				msgs = append(msgs, buf[start:])
			}
		}
		if err := cn.send(buf, msgs, s.d.Timeout); err != nil {
			return confirmed, fmt.Errorf("send: %w", err)
		}
		progressed := last > next
		if progressed {
			next = last
			pending = append(pending, pend{seq: last, sid: sid, n: n, at: time.Now()})
		}
		if len(pending) > 0 {
			var c bool
			pending, c = dp.confirm(s, cn, pending, confirm)
			confirmed = confirmed || c
		}
		if progressed {
			retries = 0
			if time.Since(saved) >= persistEvery {
				if err := dp.persist(s); err != nil {
					return confirmed, err
				}
				saved = time.Now()
			}
			continue
		}
		if err := dp.persist(s); err != nil {
			return confirmed, err
		}
		saved = time.Now()
		var tc <-chan time.Time
		switch {
		case next < dp.ob.staged.Load() && retries < maxRetries:
			// Staged but not yet committed: look again shortly.
			retries++
			timer.Reset(time.Millisecond)
			tc = timer.C
		case len(pending) > 0:
			timer.Reset(time.Until(pending[0].at.Add(confirm)))
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return confirmed, ctx.Err()
		case <-cn.dead:
			return confirmed, cn.deadErr()
		case <-s.wake:
			retries = 0
		case <-poll.C:
		case <-tc:
		}
	}
}

// How often a busy destination persists its cursor, and how many times an
// idle one looks again for a staged batch that is not yet committed.
const (
	persistEvery = 100 * time.Millisecond
	maxRetries   = 200
)

// maxDatagram is the largest syslog message sent over UDP (the IPv4 UDP
// payload limit).
const maxDatagram = 65507

// driftChecks is how many housekeeping periods without a Stage call make
// the outbox count trust the database over its own tally.
const driftChecks = 10

// trimChunk bounds how many entries one pass of the outbox limit reads.
const trimChunk = 50_000

// confirm advances the in-memory cursor over the pending writes that the
// connection has outlived by the confirm delay.
func (dp *Dispatcher) confirm(s *destState, cn *conn, pending []pend, confirm time.Duration) ([]pend, bool) {
	if !cn.alive() {
		return pending, false
	}
	cut := time.Now().Add(-confirm)
	i := 0
	var n uint64
	for i < len(pending) && !pending[i].at.After(cut) {
		n += pending[i].n
		i++
	}
	if i == 0 {
		return pending, false
	}
	seq, sid := pending[i-1].seq, pending[i-1].sid
	s.mu.Lock()
	if seq > s.cursor {
		s.cursor, s.sid = seq, sid
	}
	s.delivered += n
	s.mu.Unlock()
	return append(pending[:0], pending[i:]...), true
}

func (dp *Dispatcher) persist(s *destState) error {
	s.mu.Lock()
	cur, lost, sid, done := s.cursor, s.lost, s.sid, s.cursor == s.persisted && s.lost == s.savedLost && s.sid == s.savedSID
	s.mu.Unlock()
	if done {
		return nil
	}
	if !dp.ob.hasRoom() {
		// Delivery goes on; the cursor is saved once there is room. A
		// restart meanwhile resends from the last saved one.
		return nil
	}
	sp := dp.ob.sp
	err := sp.Update(func(b *history.Batch) error {
		if err := b.Set(sp, cursorKey(s.d.Name), u64(cur)); err != nil {
			return err
		}
		if err := b.Set(sp, sidKey(s.d.Name), u64(uint64(sid))); err != nil {
			return err
		}
		return b.Set(sp, lostKey(s.d.Name), u64(lost))
	})
	if err != nil {
		return fmt.Errorf("alert destination %s: persist cursor %d: %w", s.d.Name, cur, err)
	}
	s.mu.Lock()
	if cur >= s.persisted {
		s.persisted, s.savedSID = cur, sid
	}
	s.savedLost = max(s.savedLost, lost)
	s.mu.Unlock()
	return nil
}

// housekeep deletes entries every destination has passed and enforces the
// outbox limit.
func (dp *Dispatcher) housekeep(ctx context.Context) {
	t := time.NewTicker(dp.opts.Housekeeping)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-dp.ob.full:
		}
		for dp.ob.Len() > dp.ob.max && ctx.Err() == nil {
			dropped, err := dp.trim()
			if err != nil {
				dp.log.Error("alert outbox: enforcing the limit failed", "err", err)
			}
			if err != nil || dropped == 0 {
				break
			}
		}
		if err := dp.collect(); err != nil {
			dp.log.Error("alert outbox: deleting delivered alerts failed", "err", err)
		}
	}
}

// collect deletes the entries every destination has passed.
func (dp *Dispatcher) collect() error {
	low := uint64(1<<64 - 1)
	for _, s := range dp.dests {
		s.mu.Lock()
		low = min(low, s.cursor)
		s.mu.Unlock()
	}
	_, err := dp.ob.deleteThrough(low)
	return err
}

// trim drops the oldest entries beyond the limit, counting for each
// destination the alerts it wanted and had not confirmed.
func (dp *Dispatcher) trim() (int, error) {
	gen := dp.ob.stages.Load()
	staged := dp.ob.count.Load()
	if staged <= int64(dp.ob.max) {
		return 0, nil
	}
	n, err := dp.ob.committed()
	if err != nil {
		return 0, err
	}
	excess := min(n-int64(dp.ob.max), trimChunk)
	if excess <= 0 {
		// The count includes batches staged but not yet flushed, and
		// batches that were cancelled. When nothing has been staged for
		// driftChecks housekeeping periods, nothing is in flight: correct
		// it. (Correcting too early only delays the limit by one batch.)
		if gen != dp.lastGen {
			dp.lastGen, dp.genSince = gen, time.Now()
		} else if time.Since(dp.genSince) >= driftChecks*dp.opts.Housekeeping {
			dp.ob.count.CompareAndSwap(staged, n)
		}
		return 0, nil
	}
	ents, err := dp.ob.oldest(int(excess))
	if err != nil || len(ents) == 0 {
		return 0, err
	}
	through := ents[len(ents)-1].seq
	var events []schema.Event
	for _, s := range dp.dests {
		var n, first, last uint64
		s.mu.Lock()
		for i := range ents {
			if ents[i].seq > s.cursor && s.d.Filter.Match(&ents[i].ev) {
				if n == 0 {
					first = ents[i].seq
				}
				last = ents[i].seq
				n++
			}
		}
		s.cursor = max(s.cursor, through)
		s.floor = max(s.floor, through)
		s.lost += n
		total := s.lost
		s.mu.Unlock()
		if err := dp.persist(s); err != nil {
			return 0, err
		}
		if n == 0 {
			continue
		}
		dp.log.Error("alert outbox full: oldest undelivered alerts dropped", "destination", s.d.Name,
			"lost", n, "first_seq", first, "last_seq", last, "lost_total", total, "max_entries", dp.ob.max)
		events = append(events, schema.Event{
			Time:     time.Now(),
			Type:     schema.EventAlertsLost,
			Severity: schema.SeverityError,
			Reason: fmt.Sprintf("alert destination %s lost %d undelivered alerts (sequence %d to %d): the outbox reached its limit of %d entries while the collector was unreachable or slow",
				s.d.Name, n, first, last, dp.ob.max),
			Details: &schema.AlertsLostDetails{Destination: s.d.Name, Lost: n, FirstSeq: first, LastSeq: last, LostTotal: total},
		})
	}
	dropped, err := dp.ob.deleteThrough(through)
	if err != nil {
		return dropped, err
	}
	if dp.opts.OnLoss != nil {
		for _, ev := range events {
			dp.opts.OnLoss(ev)
		}
	}
	return dropped, nil
}
