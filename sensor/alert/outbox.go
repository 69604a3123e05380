package alert

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"

	"github.com/tapbeat/tapbeat/sensor"
)

// Badger keys owned by this package, all under KeyPrefix:
//
//	x/alert/o/SEQ   outbox entry: the event in the binary form of codec.go (SEQ is 8 bytes big-endian)
//	x/alert/c/NAME  destination cursor: every entry up to this SEQ is delivered or skipped
//	x/alert/l/NAME  alerts the destination lost to the outbox limit (uint64)
const KeyPrefix = "x/alert/"

var (
	outboxPrefix = []byte(KeyPrefix + "o/")
	cursorPrefix = []byte(KeyPrefix + "c/")
	lostPrefix   = []byte(KeyPrefix + "l/")
	sidPrefix    = []byte(KeyPrefix + "i/")
)

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

// Outbox is the durable queue of alerts waiting for delivery, kept in Badger
// beside the history. Stage is safe for concurrent use.
type Outbox struct {
	db    *badger.DB
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

// NewOutbox opens the outbox kept in db. A destination seen for the first
// time starts after the newest entry already in the outbox (it receives
// alerts raised from now on); the cursors of destinations no longer
// configured are deleted, so they no longer hold entries back.
func NewOutbox(db *badger.DB, opts OutboxOptions) (*Outbox, error) {
	o := &Outbox{db: db, dests: opts.Destinations, max: opts.MaxEntries, log: opts.Logger, full: make(chan struct{}, 1), room: opts.Room}
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
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: outboxPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			last = outboxSeq(it.Item().Key())
		}
		it2 := txn.NewIterator(badger.IteratorOptions{Prefix: cursorPrefix})
		defer it2.Close()
		for it2.Rewind(); it2.Valid(); it2.Next() {
			cursors[string(it2.Item().Key()[len(cursorPrefix):])] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert outbox: read: %w", err)
	}
	o.count.Store(n)
	err = db.Update(func(txn *badger.Txn) error {
		for _, d := range o.dests {
			if !cursors[d.Name] {
				if err := txn.Set(append(bytes.Clone(cursorPrefix), d.Name...), u64(last)); err != nil {
					return err
				}
			}
		}
		for name := range cursors {
			if !names[name] {
				o.log.Warn("alert destination no longer configured: its cursor is deleted and its undelivered alerts will not be sent", "destination", name)
				if err := txn.Delete(append(bytes.Clone(cursorPrefix), name...)); err != nil {
					return err
				}
				if err := txn.Delete(append(bytes.Clone(sidPrefix), name...)); err != nil {
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

// Stage adds to wb every event in evs that some destination wants, so the
// alerts are written in the same batch as the events themselves. The batch
// must be flushed in sequence order (one writer), since a destination never
// goes back before its cursor.
func (o *Outbox) Stage(wb *badger.WriteBatch, evs []sensor.Event) error {
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
		if err := wb.Set(outboxKey(ev.Seq), v); err != nil {
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
	return nil
}

// Hold queues evs for delivery from memory: the daemon calls it when the
// history (and so Stage) cannot write for lack of disk space, so alerts,
// storage_low included, still reach the collectors. Once the events are
// written, Stage them as usual and call Release; destinations that already
// delivered them from memory have moved their cursors past them. At most
// the outbox limit is held; past it the oldest held alerts are dropped and
// their number returned.
func (o *Outbox) Hold(evs []sensor.Event) (dropped int) {
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
		if len(ev.Details) > 0 {
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
	return dropped
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

func (o *Outbox) wanted(ev *sensor.Event) bool {
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
	ev      sensor.Event
	details string // ev.Details as JSON
}

// read returns up to n entries after seq that f accepts, and the last
// sequence number it examined (entries f rejected up to there are skipped).
func (o *Outbox) read(after uint64, n int, f Filter) ([]entry, uint64, error) {
	var out []entry
	last := after
	exhausted := false
	err := o.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: outboxPrefix, PrefetchValues: true, PrefetchSize: min(n, 256)})
		defer it.Close()
		scanned := 0
		defer func() { exhausted = !it.Valid() }()
		for it.Seek(outboxKey(after + 1)); it.Valid() && len(out) < n && scanned < 8*n; it.Next() {
			scanned++
			item := it.Item()
			seq := outboxSeq(item.Key())
			var e entry
			if err := item.Value(func(v []byte) (err error) {
				e.details, err = decodeEventDetails(v, &e.ev, false)
				return err
			}); err != nil {
				o.log.Error("alert outbox: undecodable entry skipped", "seq", seq, "err", err)
				last = seq
				continue
			}
			last = seq
			if f.Match(&e.ev) {
				e.seq = seq
				out = append(out, e)
			}
		}
		return nil
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
	var keys [][]byte
	err := o.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: outboxPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if outboxSeq(k) > seq {
				break
			}
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	wb := o.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return 0, err
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	o.count.Add(-int64(len(keys)))
	return len(keys), nil
}

// oldest returns the sequence number of the k-th oldest entry (1-based)
// and the entries up to it, decoded only enough to filter.
func (o *Outbox) oldest(k int) ([]entry, error) {
	var out []entry
	err := o.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: outboxPrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < k; it.Next() {
			var e entry
			e.seq = outboxSeq(it.Item().Key())
			if err := it.Item().Value(func(v []byte) error { return decodeEvent(v, &e.ev) }); err != nil {
				e.ev.Severity = sensor.SeverityEmergency // undecodable: count it as lost for everyone
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// committed counts the entries committed to the database. It may be
// lower than Len, which also counts entries staged in batches not yet
// flushed.
func (o *Outbox) committed() (int64, error) {
	var n int64
	err := o.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: outboxPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}

func loadU64(db *badger.DB, key []byte) (uint64, error) {
	var v uint64
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error {
			if len(b) != 8 {
				return fmt.Errorf("key %q: want 8 bytes, found %d", key, len(b))
			}
			v = binary.BigEndian.Uint64(b)
			return nil
		})
	})
	return v, err
}

// hasRoom tells whether the outbox may write to the database now.
func (o *Outbox) hasRoom() bool { return o.room == nil || o.room() == nil }
