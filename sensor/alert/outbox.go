package alert

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// SpaceName is the history key space (history.Store.Space) the outbox
// keeps its keys in:
//
//	o/SEQ   outbox entry: the event in the binary form of codec.go (SEQ is 8 bytes big-endian)
//	c/NAME  destination cursor: every entry up to this SEQ is delivered or skipped
//	l/NAME  alerts the destination lost to the outbox limit (uint64)
//	i/NAME  the RFC 5424 sequenceId of the last message up to the cursor (uint64)
const SpaceName = "alert"

var (
	outboxPrefix = []byte("o/")
	cursorPrefix = []byte("c/")
	lostPrefix   = []byte("l/")
	sidPrefix    = []byte("i/")
)

func cursorKey(name string) []byte { return append(bytes.Clone(cursorPrefix), name...) }
func lostKey(name string) []byte   { return append(bytes.Clone(lostPrefix), name...) }
func sidKey(name string) []byte    { return append(bytes.Clone(sidPrefix), name...) }

// scanEntries calls fn with the outbox entries from sequence number `from`
// on, in order, until fn returns false.
func (o *Outbox) scanEntries(from uint64, withValues bool, fn func(seq uint64, v []byte) (bool, error)) error {
	return o.sp.Scan(outboxKey(from), withValues, func(k, v []byte) (bool, error) {
		if !bytes.HasPrefix(k, outboxPrefix) {
			return false, nil
		}
		return fn(outboxSeq(k), v)
	})
}

func outboxKey(seq uint64) []byte {
	k := make([]byte, len(outboxPrefix)+8)
	copy(k, outboxPrefix)
	binary.BigEndian.PutUint64(k[len(outboxPrefix):], seq)
	return k
}

func outboxSeq(key []byte) uint64 {
	return binary.BigEndian.Uint64(key[len(outboxPrefix):])
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// DefaultMaxEntries is the default outbox limit.
const DefaultMaxEntries = 1_000_000

// OutboxOptions configures an Outbox.
type OutboxOptions struct {
	// Destinations are the configured collectors. An event is staged when
	// at least one destination's filter accepts it; each destination keeps
	// its own cursor under its Name.
	Destinations []Destination
	// MaxEntries bounds the outbox (DefaultMaxEntries when 0). Past it, the
	// oldest undelivered entries are dropped and counted as lost.
	MaxEntries int
	// Logger receives the outbox's logs (slog.Default when nil).
	Logger *slog.Logger
	// Room, when set, is asked before each write the outbox and its
	// dispatcher make on their own (delivery cursors, deleting delivered
	// entries); while it returns an error those writes are skipped and
	// made later. The history store's full-disk guard goes here.
	Room func() error
}

// Outbox is the durable queue of alerts waiting for delivery, kept in a
// key space of the history database. Stage is safe for concurrent use.
type Outbox struct {
	sp    *history.Space
	dests []Destination
	max   int
	log   *slog.Logger
	count atomic.Int64 // entries staged and not yet deleted (approximate until committed)
	full  chan struct{}
	room  func() error

	memMu sync.Mutex
	mem   []entry // alerts held in memory while the disk cannot take them, in sequence order

	staged atomic.Uint64                   // highest sequence number staged
	stages atomic.Uint64                   // Stage calls that staged something
	wakers atomic.Pointer[[]chan struct{}] // the dispatcher's, woken on Stage
}

// NewOutbox opens the outbox kept in sp. A destination seen for the first
// time starts after the newest entry already in the outbox (it receives
// alerts raised from now on); the cursors of destinations no longer
// configured are deleted, so they no longer hold entries back.
func NewOutbox(sp *history.Space, opts OutboxOptions) (*Outbox, error) {
	o := &Outbox{sp: sp, dests: opts.Destinations, max: opts.MaxEntries, log: opts.Logger, full: make(chan struct{}, 1), room: opts.Room}
	if o.max <= 0 {
		o.max = DefaultMaxEntries
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	names := map[string]bool{}
	for _, d := range o.dests {
		if names[d.Name] {
			return nil, fmt.Errorf("alert outbox: two destinations are named %q: give one a distinct name= option", d.Name)
		}
		names[d.Name] = true
	}
	var n int64
	var last uint64
	cursors := map[string]bool{}
	err := o.scanEntries(0, false, func(seq uint64, _ []byte) (bool, error) {
		n++
		last = seq
		return true, nil
	})
	if err == nil {
		err = sp.Scan(cursorPrefix, false, func(k, _ []byte) (bool, error) {
			if !bytes.HasPrefix(k, cursorPrefix) {
				return false, nil
			}
			cursors[string(k[len(cursorPrefix):])] = true
			return true, nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("alert outbox: read: %w", err)
	}
	o.count.Store(n)
	err = sp.Update(func(b *history.Batch) error {
		for _, d := range o.dests {
			if !cursors[d.Name] {
				if err := b.Set(sp, cursorKey(d.Name), u64(last)); err != nil {
					return err
				}
			}
		}
		for name := range cursors {
			if !names[name] {
				o.log.Warn("alert destination no longer configured: its cursor is deleted and its undelivered alerts will not be sent", "destination", name)
				if err := b.Delete(sp, cursorKey(name)); err != nil {
					return err
				}
				if err := b.Delete(sp, sidKey(name)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert outbox: initialise cursors: %w", err)
	}
	return o, nil
}

// Stage adds to b every event in evs that some destination wants, so the
// alerts are written in the same batch as the events themselves (the stage
// function of history.Store.Append). Batches must be applied in sequence
// order (one writer), since a destination never goes back before its
// cursor.
func (o *Outbox) Stage(b *history.Batch, evs []schema.Event) error {
	var staged int64
	var top uint64
	for i := range evs {
		ev := &evs[i]
		if !o.wanted(ev) {
			continue
		}
		v, err := encodeEvent(nil, ev)
		if err != nil {
			return fmt.Errorf("alert outbox: encode event %d: %w", ev.Seq, err)
		}
		if err := b.Set(o.sp, outboxKey(ev.Seq), v); err != nil {
			return fmt.Errorf("alert outbox: stage event %d: %w", ev.Seq, err)
		}
		staged++
		top = max(top, ev.Seq)
	}
	if staged == 0 {
		return nil
	}
	o.stages.Add(1)
	if o.count.Add(staged) > int64(o.max) {
		select {
		case o.full <- struct{}{}:
		default:
		}
	}
	o.announce(top)
	return nil
}

// Hold queues evs for delivery from memory: the daemon calls it when the
// history (and so Stage) cannot write for lack of disk space, so alerts,
// storage_low included, still reach the collectors. Once the events are
// written, Stage them as usual and call Release; destinations that already
// delivered them from memory have moved their cursors past them. At most
// the outbox limit is held; past it the oldest held alerts are dropped and
// their number returned.
func (o *Outbox) Hold(evs []schema.Event) (dropped int) {
	o.memMu.Lock()
	var top uint64
	for i := range evs {
		ev := &evs[i]
		if !o.wanted(ev) {
			continue
		}
		if n := len(o.mem); n > 0 && o.mem[n-1].seq >= ev.Seq {
			continue // already held
		}
		e := entry{seq: ev.Seq, ev: *ev}
		if ev.Details != nil {
			if b, err := json.Marshal(ev.Details); err == nil {
				e.details = string(b)
			}
		}
		o.mem = append(o.mem, e)
		top = ev.Seq
	}
	if over := len(o.mem) - o.max; over > 0 {
		o.mem = append(o.mem[:0], o.mem[over:]...)
		dropped = over
	}
	o.memMu.Unlock()
	if top == 0 {
		return dropped
	}
	o.announce(top)
	return dropped
}

// announce raises the highest staged sequence to top and wakes every
// destination.
func (o *Outbox) announce(top uint64) {
	for {
		cur := o.staged.Load()
		if top <= cur || o.staged.CompareAndSwap(cur, top) {
			break
		}
	}
	if w := o.wakers.Load(); w != nil {
		for _, c := range *w {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
}

// Release forgets held alerts up to and including seq (they are written).
func (o *Outbox) Release(seq uint64) {
	o.memMu.Lock()
	defer o.memMu.Unlock()
	i := 0
	for i < len(o.mem) && o.mem[i].seq <= seq {
		i++
	}
	o.mem = append(o.mem[:0], o.mem[i:]...)
}

// Held returns how many alerts wait in memory.
func (o *Outbox) Held() int {
	o.memMu.Lock()
	defer o.memMu.Unlock()
	return len(o.mem)
}

// readHeld appends held alerts after seq that f accepts, up to n in out.
func (o *Outbox) readHeld(out []entry, after uint64, n int, f Filter) ([]entry, uint64) {
	last := after
	o.memMu.Lock()
	defer o.memMu.Unlock()
	for _, e := range o.mem {
		if len(out) >= n {
			break
		}
		if e.seq <= after {
			continue
		}
		last = e.seq
		if f.Match(&e.ev) {
			out = append(out, e)
		}
	}
	return out, last
}

func (o *Outbox) wanted(ev *schema.Event) bool {
	for i := range o.dests {
		if o.dests[i].Filter.Match(ev) {
			return true
		}
	}
	return false
}

// Len returns the number of entries in the outbox.
func (o *Outbox) Len() int { return int(o.count.Load()) }

// Destinations returns the configured destinations.
func (o *Outbox) Destinations() []Destination { return o.dests }

// entry is an outbox entry read back.
type entry struct {
	seq     uint64
	ev      schema.Event
	details string // ev.Details as JSON
}

// read returns up to n entries after seq that f accepts, and the last
// sequence number it examined (entries f rejected up to there are skipped).
func (o *Outbox) read(after uint64, n int, f Filter) ([]entry, uint64, error) {
	var out []entry
	last := after
	scanned := 0
	exhausted := true // the scan reached the end of the written entries
	err := o.scanEntries(after+1, true, func(seq uint64, v []byte) (bool, error) {
		scanned++
		last = seq
		var e entry
		var err error
		if e.details, err = decodeEventDetails(v, &e.ev, false); err != nil {
			o.log.Error("alert outbox: undecodable entry skipped", "seq", seq, "err", err)
		} else if f.Match(&e.ev) {
			e.seq = seq
			out = append(out, e)
		}
		more := len(out) < n && scanned < 8*n
		exhausted = more
		return more, nil
	})
	if err != nil {
		return nil, after, fmt.Errorf("alert outbox: read after %d: %w", after, err)
	}
	// Held alerts come after everything written: read them once the
	// written ones are all read.
	if exhausted && len(out) < n {
		out, last = o.readHeld(out, last, n, f)
	}
	return out, last, nil
}

// deleteThrough deletes every entry up to and including seq, and returns
// how many it deleted.
func (o *Outbox) deleteThrough(seq uint64) (int, error) {
	if !o.hasRoom() {
		return 0, nil // delivered entries stay until there is room to delete them
	}
	var seqs []uint64
	err := o.scanEntries(0, false, func(s uint64, _ []byte) (bool, error) {
		if s > seq {
			return false, nil
		}
		seqs = append(seqs, s)
		return true, nil
	})
	if err != nil || len(seqs) == 0 {
		return 0, err
	}
	err = o.sp.Update(func(b *history.Batch) error {
		for _, s := range seqs {
			if err := b.Delete(o.sp, outboxKey(s)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	keys := seqs
	o.count.Add(-int64(len(keys)))
	return len(keys), nil
}

// oldest returns the sequence number of the k-th oldest entry (1-based)
// and the entries up to it, decoded only enough to filter.
func (o *Outbox) oldest(k int) ([]entry, error) {
	var out []entry
	if k <= 0 {
		return nil, nil
	}
	err := o.scanEntries(0, true, func(seq uint64, v []byte) (bool, error) {
		e := entry{seq: seq}
		if err := decodeEvent(v, &e.ev); err != nil {
			e.ev.Severity = schema.SeverityEmergency // undecodable: count it as lost for everyone
		}
		out = append(out, e)
		return len(out) < k, nil
	})
	return out, err
}

// committed counts the entries committed to the database. It may be
// lower than Len, which also counts entries staged in batches not yet
// flushed.
func (o *Outbox) committed() (int64, error) {
	var n int64
	err := o.scanEntries(0, false, func(uint64, []byte) (bool, error) {
		n++
		return true, nil
	})
	return n, err
}

func loadU64(sp *history.Space, key []byte) (uint64, error) {
	b, ok, err := sp.Get(key)
	if err != nil || !ok {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("key %q: want 8 bytes, found %d", key, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// hasRoom tells whether the outbox may write to the database now.
func (o *Outbox) hasRoom() bool { return o.room == nil || o.room() == nil }
