package history

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Options tunes a Store. Zero fields take the defaults noted.
type Options struct {
	// Retention is how long history is kept, in whole UTC days (default 90 days).
	Retention time.Duration
	// MinFreeBytes: when the file system holding the database has less free
	// space than this, the oldest days are dropped and OnStorageLow is called
	// (default 512 MiB).
	MinFreeBytes uint64
	// MinFreeFraction is the same threshold as a fraction of the file
	// system's size; the larger of the two applies (default 0.05), and
	// never less than ReserveBytes.
	MinFreeFraction float64
	// IndexCacheSize bounds the memory Badger spends on table indexes and
	// bloom filters (default 16 MiB; Badger's own default is unbounded).
	IndexCacheSize int64
	// BlockCacheSize bounds Badger's block cache (default 32 MiB).
	BlockCacheSize int64
	// MemTableSize is the size of each of Badger's two memtables (default
	// 8 MiB).
	MemTableSize int64
	// ReserveBytes: while the file system holding the database has less
	// free space than this, every write is refused with ErrDiskFull and
	// what it would have written stays in memory (default eight memtables
	// plus 32 MiB, 96 MiB with the default memtable). Badger writes its
	// log and new tables through memory-mapped files, and a store into one
	// on a full file system kills the process; the reserve leaves room for
	// the memtables and the flushes and compactions already under way.
	ReserveBytes uint64
	// Logger receives the store's and Badger's messages (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock used for retention (default time.Now).
	Now func() time.Time
	// OnStorageLow is called with a storage_low event (not yet numbered)
	// whenever days are dropped to keep disk free; the daemon records it
	// through sensor.Engine.Record so it becomes an alert.
	OnStorageLow func(schema.Event)
}

func (o Options) withDefaults() Options {
	if o.Retention <= 0 {
		o.Retention = 90 * dayLen
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = 512 << 20
	}
	if o.MinFreeFraction <= 0 {
		o.MinFreeFraction = 0.05
	}
	if o.IndexCacheSize <= 0 {
		o.IndexCacheSize = 16 << 20
	}
	if o.BlockCacheSize <= 0 {
		o.BlockCacheSize = 32 << 20
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = 8 << 20
	}
	if o.ReserveBytes == 0 {
		o.ReserveBytes = 8*uint64(o.MemTableSize) + 32<<20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// ErrLocked is returned by Open when another process (normally the running
// daemon) holds the database.
var ErrLocked = errors.New("history database is in use by another process (is the tapbeat daemon running?)")

// ErrClosed is returned by a Store used after Close.
var ErrClosed = errors.New("history store is closed")

// ErrDiskFull is returned by a Store's writes while the file system
// holding the database has less free space than Options.ReserveBytes.
var ErrDiskFull = errors.New("history disk is full")

// Registration is an endpoint registry snapshot: what an endpoint declared
// in a hello (or what the sensor knew of it at a daily checkpoint).
type Registration struct {
	EndpointID string             `json:"endpoint_id"`
	Name       string             `json:"name"`
	Org        string             `json:"org,omitempty"`
	Interfaces []schema.Interface `json:"interfaces,omitempty"`
	Users      []string           `json:"users,omitempty"`
	Time       time.Time          `json:"time"`
	Seq        uint64             `json:"seq,omitempty"` // the hello's event, 0 for a checkpoint
}

// Store is tapbeat's history database. Its methods are safe for concurrent
// use; writes are serialised.
type Store struct {
	db   *badger.DB
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	closed bool
	// lowAlertAt is when storage_low last said only the current day is
	// left to drop; zero once there is room again.
	lowAlertAt time.Time
	nextSeq    uint64
	states     map[string]*schema.EndpointState
	dirty      map[string]bool // states changed since persisted; false: removed
	// beaten: states whose last heartbeat is newer in memory than in their
	// stored record; the beat records carry it (beats.go).
	beaten      map[string]struct{}
	beatRecords int                 // beat records stored
	inSnapshot  map[string]struct{} // SaveSnapshot's scratch set, kept to reuse its memory
	// lastEvent is the newest event time appended.
	lastEvent time.Time
	// alerted: MACs reported as no_heartbeat; true while still unmanaged,
	// false once an endpoint claimed them.
	alerted    map[schema.MAC]bool
	checkpoint map[string]uint32 // last day a registry checkpoint was written, per endpoint
	bindings   map[netip.Addr]*openBinding
	traffic    rollup
	stations   map[stationKey]*Station
	// heldBindings wait for room on a full disk; droppedBindings counts
	// those that did not fit.
	heldBindings    []schema.Binding
	droppedBindings uint64
}

// Open opens (creating if needed) the history database in dir. If the
// previous process was killed, Badger replays its write-ahead log. Opening a
// database another process holds fails with ErrLocked; opening on a file
// system with less free space than Options.ReserveBytes fails with
// ErrDiskFull.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("history: create %s: %w", dir, err)
	}
	// Opening replays the write-ahead log into a new memory-mapped one: on
	// a full disk that would kill the process rather than fail.
	if err := checkRoom(dir, opts.ReserveBytes); err != nil {
		return nil, fmt.Errorf("open history: %w, and opening may replay the write-ahead log: free disk space or enlarge the volume", err)
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{opts.Logger}).
		WithCompression(options.Snappy).
		WithIndexCacheSize(opts.IndexCacheSize).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithMemTableSize(opts.MemTableSize).
		WithValueThreshold(min(1<<20, opts.MemTableSize/10)).
		WithNumMemtables(2).
		WithNumLevelZeroTables(3).
		WithBaseTableSize(2 << 20).
		WithNumLevelZeroTablesStall(8).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithSyncWrites(false).
		WithDetectConflicts(false)
	// Badger doubles the table size at each level below the base by
	// default; a table builder holds twice its table in memory, so deep
	// levels of a large history would cost hundreds of MiB per compaction.
	// Keep every table at the base size.
	bo.TableSizeMultiplier = 1
	db, err := badger.Open(bo)
	if err != nil {
		if strings.Contains(err.Error(), "Cannot acquire directory lock") {
			return nil, fmt.Errorf("open history %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("open history %s: %w", dir, err)
	}
	s := &Store{
		db: db, opts: opts, log: opts.Logger, nextSeq: 1,
		states:     map[string]*schema.EndpointState{},
		dirty:      map[string]bool{},
		beaten:     map[string]struct{}{},
		inSnapshot: map[string]struct{}{},
		alerted:    map[schema.MAC]bool{},
		checkpoint: map[string]uint32{},
		bindings:   map[netip.Addr]*openBinding{},
		traffic:    newRollup(),
		stations:   map[stationKey]*Station{},
	}
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open history %s: %w", dir, err)
	}
	return s, nil
}

// load reads the undated records into memory, then replays the events
// appended after the states were last persisted.
func (s *Store) load() error {
	var stateSeq uint64
	var stateTime time.Time
	var beats [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		if item, err := txn.Get([]byte(keyStateSeq)); err == nil {
			_ = item.Value(func(v []byte) error {
				if len(v) == 16 {
					stateSeq = binary.BigEndian.Uint64(v)
					stateTime = time.Unix(0, int64(binary.BigEndian.Uint64(v[8:])))
				}
				return nil
			})
		}
		if item, err := txn.Get([]byte(keyNextSeq)); err == nil {
			if err := item.Value(func(v []byte) error {
				if len(v) == 8 {
					s.nextSeq = binary.BigEndian.Uint64(v)
				}
				return nil
			}); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("read next sequence: %w", err)
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("s/"), PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := string(item.Key())
			switch {
			case strings.HasPrefix(k, prefixState):
				var st schema.EndpointState
				if err := item.Value(func(v []byte) error { return decodeState(v, &st) }); err != nil {
					return fmt.Errorf("decode %s: %w", k, err)
				}
				s.states[st.ID] = &st
			case strings.HasPrefix(k, prefixBeats):
				s.beatRecords++
				v, err := item.ValueCopy(nil)
				if err != nil {
					return fmt.Errorf("read %q: %w", k, err)
				}
				beats = append(beats, v)
			case strings.HasPrefix(k, prefixAlerted):
				m, err := schema.ParseMAC(k[len(prefixAlerted):])
				if err != nil {
					continue
				}
				var still bool
				_ = item.Value(func(v []byte) error { still = len(v) == 0 || v[0] == 'u'; return nil })
				s.alerted[m] = still
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, v := range beats {
		// A damaged beat record costs only the newest last heartbeats.
		if err := decodeBeats(v, s.applyBeat); err != nil {
			s.log.Warn("history: a record of last heartbeats is damaged; the endpoints' states keep their older ones", "err", err)
		}
	}
	if stateSeq+1 >= s.nextSeq {
		return nil
	}
	return s.replayStates(stateSeq, stateTime)
}

// replayStates applies to the latest states the endpoint events after seq
// `after`, looking from the day before `since` (the newest event time when
// the states were persisted) on.
func (s *Store) replayStates(after uint64, since time.Time) error {
	days, err := s.days()
	if err != nil {
		return err
	}
	from := uint32(0)
	if after > 0 && dayOf(since) > 0 {
		from = dayOf(since) - 1
	}
	var evs []schema.Event
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}})
		defer it.Close()
		for _, d := range days {
			if d < from {
				continue
			}
			p := kindPrefix(d, kindEndpoint)
			for it.Seek(p); it.ValidForPrefix(p); it.Next() {
				item := it.Item()
				if _, seq := indexTail(item.Key()); seq <= after {
					continue
				}
				ev, err := decodeValue(item)
				if err != nil {
					return fmt.Errorf("replay event: %w", err)
				}
				evs = append(evs, ev)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild endpoint states: %w", err)
	}
	slices.SortFunc(evs, func(a, b schema.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	for i := range evs {
		s.applyState(&evs[i])
	}
	if len(evs) > 0 {
		s.log.Info("history: endpoint states rebuilt from events", "events", len(evs), "after_seq", after)
	}
	return nil
}

// Size returns the bytes the database takes on disk: its LSM tree and its
// value log.
func (s *Store) Size() (lsm, vlog int64) { return s.db.Size() }

// Close flushes the traffic minutes and binding intervals still in memory
// and closes the database. On a full disk it returns ErrDiskFull and leaves
// the database to be recovered from its write-ahead log by the next Open in
// a new process.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	ferr := s.flushLocked(true) // refused on a full disk
	s.closed = true
	if errors.Is(ferr, ErrDiskFull) {
		// Closing Badger writes its memtable into a new table through a
		// memory-mapped file, which on a full disk kills the process.
		// Leave the database open instead: its write-ahead log holds every
		// write that returned nil and is replayed at the next open, as
		// after a crash. The process is expected to exit.
		return fmt.Errorf("close history: left open, to be recovered from its write-ahead log at the next start: %w", ferr)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close history: %w", err)
	}
	return ferr
}

// NextSeq returns the sequence number after the highest event stored.
func (s *Store) NextSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextSeq
}

// Append writes events, the records derived from them (indexes, registry
// snapshots from hellos, bindings, the unmanaged inventory) and whatever
// stage adds to spaces (the alert outbox's entries), in one write batch, then syncs the database to disk. When
// Append returns nil the events survive a crash. Events must carry the
// sequence numbers the correlator gave them. The latest state of each
// endpoint is updated in memory and persisted periodically (Flush,
// SaveSnapshot, Close); after a crash Open rebuilds it from the events.
func (s *Store) Append(evs []schema.Event, stage func(*Batch) error) error {
	for i := range evs {
		if evs[i].Seq == 0 {
			return fmt.Errorf("append: event %d of %d (%s) has no sequence number: record it through the engine first", i+1, len(evs), evs[i].Type)
		}
		if evs[i].Time.IsZero() {
			return fmt.Errorf("append: event seq %d (%s) has no time", evs[i].Seq, evs[i].Type)
		}
	}
	// Encoding is the costliest part of staging and needs no lock: spread
	// it over the CPUs.
	enc, err := encodeEvents(evs)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.roomToWrite(); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	maxSeq := uint64(0)
	for i := range evs {
		if err := s.stageEvent(wb, &evs[i], enc[i]); err != nil {
			return fmt.Errorf("append seq %d: %w", evs[i].Seq, err)
		}
		maxSeq = max(maxSeq, evs[i].Seq)
	}
	next := max(s.nextSeq, maxSeq+1)
	if err := wb.Set([]byte(keyNextSeq), binary.BigEndian.AppendUint64(nil, next)); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	if stage != nil {
		if err := stage(&Batch{wb: wb, s: s}); err != nil {
			return fmt.Errorf("append: stage: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("append: write: %w", err)
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("append: sync: %w", err)
	}
	s.nextSeq = next
	return nil
}

// stageStates writes the endpoint states changed since the last call and
// the sequence number they reflect.
func (s *Store) stageStates(wb *badger.WriteBatch) error {
	for id, present := range s.dirty {
		k := []byte(prefixState + id)
		delete(s.beaten, id)
		if !present {
			if err := wb.Delete(k); err != nil {
				return fmt.Errorf("persist states: %w", err)
			}
			continue
		}
		b, err := encodeState(s.states[id])
		if err != nil {
			return fmt.Errorf("persist states: encode state of %s: %w", id, err)
		}
		if err := wb.Set(k, b); err != nil {
			return fmt.Errorf("persist states: %w", err)
		}
	}
	clear(s.dirty)
	return wb.Set([]byte(keyStateSeq), s.stateMark())
}

// stateMark is the value of keyStateSeq: the last sequence number the
// persisted states reflect and the newest event time then.
func (s *Store) stateMark() []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), s.nextSeq-1)
	return binary.BigEndian.AppendUint64(v, nanos(s.lastEvent))
}

// storedState is an EndpointState as stored: its health may be unknown yet
// (a hello seen, no report), which schema.Health does not encode.
type storedState struct {
	schema.EndpointState
	Health string `json:"health,omitempty"`
}

func encodeState(st *schema.EndpointState) ([]byte, error) {
	w := storedState{EndpointState: *st}
	if st.Health.Valid() {
		w.Health = st.Health.String()
	}
	return json.Marshal(&w)
}

func decodeState(b []byte, st *schema.EndpointState) error {
	var w storedState
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*st = w.EndpointState
	st.Health = 0
	if w.Health != "" {
		h, err := schema.ParseHealth(w.Health)
		if err != nil {
			return err
		}
		st.Health = h
	}
	return nil
}

func (s *Store) state(id string) *schema.EndpointState {
	st := s.states[id]
	if st == nil {
		st = &schema.EndpointState{ID: id}
		s.states[id] = st
	}
	s.dirty[id] = true
	return st
}

// applyState folds an event into the in-memory latest states: the status
// the correlator decided on a transition, what a hello declared, whether
// the endpoint is connected.
func (s *Store) applyState(ev *schema.Event) {
	if ev.EndpointID == "" {
		return
	}
	switch {
	case ev.Type == schema.EventEndpointRemoved:
		delete(s.states, ev.EndpointID)
		s.dirty[ev.EndpointID] = false
	case ev.Transition:
		st := s.state(ev.EndpointID)
		st.Name, st.Org = ev.EndpointName, ev.Org
		st.Status, st.StatusSince = ev.Status, ev.Time.UTC()
		if h := ev.Status.Health(); h != 0 {
			st.Health = h
			if ev.Time.After(st.LastHeartbeat) {
				st.LastHeartbeat = ev.Time.UTC()
			}
			st.Connected = true
		}
	case ev.Type == schema.EventEndpointHello:
		h := helloDetails(ev)
		st := s.state(ev.EndpointID)
		st.Name, st.Org = ev.EndpointName, ev.Org
		st.Interfaces, st.Users = h.Interfaces, h.Users
		st.Connected = true
		if st.Status == "" {
			st.Status = ev.Status
		}
		if ev.Time.After(st.LastHeartbeat) {
			st.LastHeartbeat = ev.Time.UTC()
		}
	case ev.Type == schema.EventEndpointDisconnected:
		s.state(ev.EndpointID).Connected = false
	}
}

// The first byte of an endpoint event's stored value: whether the event
// changed the endpoint's status.
const (
	flagTransition byte = 't'
	flagOther      byte = '-'
)

// encodeEvents returns the stored value of each event (its JSON, behind a
// flag byte for endpoint events), encoded in parallel for large batches.
func encodeEvents(evs []schema.Event) ([][]byte, error) {
	out := make([][]byte, len(evs))
	workers := min(runtime.GOMAXPROCS(0), len(evs)/64+1)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(evs); i += workers {
				b, err := json.Marshal(&evs[i])
				if err != nil {
					errs[w] = fmt.Errorf("append: encode event seq %d: %w", evs[i].Seq, err)
					return
				}
				if evs[i].EndpointID != "" {
					v := make([]byte, 1+len(b))
					v[0] = flagOther
					if evs[i].Transition {
						v[0] = flagTransition
					}
					copy(v[1:], b)
					b = v
				}
				out[i] = b
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (s *Store) stageEvent(wb *badger.WriteBatch, ev *schema.Event, v []byte) error {
	day := dayOf(ev.Time)
	var primary []byte
	if ev.EndpointID != "" {
		// An endpoint's events are stored under its index, in time order.
		primary = indexKey(idPrefix(day, kindEndpoint, ev.EndpointID), ev.Time, ev.Seq)
		if err := wb.Set(primary, v); err != nil {
			return err
		}
	} else {
		// Other events by sequence, indexed by the MACs they name.
		primary = eventKey(day, ev.Seq)
		if err := wb.Set(primary, v); err != nil {
			return err
		}
		for _, m := range ev.MACs {
			if err := wb.Set(indexKey(macPrefix(day, kindMAC, m), ev.Time, ev.Seq), primary); err != nil {
				return err
			}
		}
	}
	if ev.IsAlert() {
		if err := wb.Set(indexKey(idPrefix(day, kindAlert, string(ev.Type)), ev.Time, ev.Seq), primary); err != nil {
			return err
		}
	}
	if ev.Time.After(s.lastEvent) {
		s.lastEvent = ev.Time
	}
	switch ev.Type {
	case schema.EventEndpointHello:
		if err := s.stageHello(wb, ev, day, primary); err != nil {
			return err
		}
	case schema.EventEndpointRemoved:
		for _, m := range ev.MACs {
			if err := wb.Set(put64(macPrefix(day, kindOwner, m), nanos(ev.Time)), nil); err != nil {
				return err
			}
		}
	case schema.EventNoHeartbeat:
		if err := s.stageNoHeartbeat(wb, ev, day); err != nil {
			return err
		}
	}
	s.applyState(ev)
	return nil
}

func (s *Store) stageNoHeartbeat(wb *badger.WriteBatch, ev *schema.Event, day uint32) error {
	d, _ := ev.Details.(*schema.NoHeartbeatDetails)
	if d == nil {
		d = &schema.NoHeartbeatDetails{}
	}
	for _, m := range ev.MACs {
		s.alerted[m] = true
		if err := wb.Set([]byte(prefixAlerted+m.String()), []byte{'u'}); err != nil {
			return err
		}
		st := s.station(day, m)
		st.observe(ev.Time)
		if t := d.FirstSeen; !t.IsZero() && (st.FirstSeen.IsZero() || t.Before(st.FirstSeen)) {
			st.FirstSeen = t.UTC()
		}
		for _, ip := range ev.IPs {
			st.addIP(ip)
		}
		st.Packets += d.Packets
		st.Bytes += d.Bytes
		// Addresses and DHCP host names seen before the verdict.
		for _, o := range s.bindings {
			if o.rec.MAC == m {
				st.addIP(o.rec.IP)
				if h := o.rec.Hostname; h != "" && !slices.Contains(st.Hostnames, h) {
					st.Hostnames = append(st.Hostnames, h)
				}
			}
		}
		if err := s.writeStation(wb, day, st); err != nil {
			return err
		}
	}
	return nil
}

// helloDetails returns what an endpoint_hello event declared.
func helloDetails(ev *schema.Event) *schema.HelloDetails {
	if h, ok := ev.Details.(*schema.HelloDetails); ok {
		return h
	}
	return &schema.HelloDetails{}
}

func (s *Store) stageHello(wb *badger.WriteBatch, ev *schema.Event, day uint32, primary []byte) error {
	if ev.EndpointID == "" {
		return nil
	}
	h := helloDetails(ev)
	ifaces := h.Interfaces
	reg := Registration{EndpointID: ev.EndpointID, Name: ev.EndpointName, Org: ev.Org,
		Interfaces: ifaces, Users: h.Users, Time: ev.Time.UTC(), Seq: ev.Seq}
	if err := s.writeRegistration(wb, day, &reg, primary); err != nil {
		return err
	}
	if old := s.states[ev.EndpointID]; old == nil || old.Name != ev.EndpointName {
		if old != nil && old.Name != "" {
			if err := wb.Delete([]byte(prefixName + strings.ToLower(old.Name) + "\x00" + ev.EndpointID)); err != nil {
				return err
			}
		}
		if ev.EndpointName != "" {
			if err := wb.Set([]byte(prefixName+strings.ToLower(ev.EndpointName)+"\x00"+ev.EndpointID), nil); err != nil {
				return err
			}
		}
	}
	for _, itf := range ifaces {
		if still, ok := s.alerted[itf.MAC]; ok && still {
			s.alerted[itf.MAC] = false
			if err := wb.Set([]byte(prefixAlerted+itf.MAC.String()), []byte{'c'}); err != nil {
				return err
			}
		}
		for _, ip := range itf.IPs {
			if err := s.observeBinding(wb, schema.Binding{MAC: itf.MAC, IP: ip, Source: "hello", Time: ev.Time}); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeRegistration stages a registry snapshot and the MAC owner records.
// A registry record's value is the Registration's JSON, or for a hello the
// key of the hello event, which holds the same facts.
func (s *Store) writeRegistration(wb *badger.WriteBatch, day uint32, reg *Registration, helloKey []byte) error {
	b := helloKey
	if b == nil {
		var err error
		if b, err = json.Marshal(reg); err != nil {
			return fmt.Errorf("encode registration: %w", err)
		}
	}
	k := put64(idPrefix(day, kindRegistry, reg.EndpointID), nanos(reg.Time))
	if err := wb.Set(k, b); err != nil {
		return err
	}
	for _, itf := range reg.Interfaces {
		if itf.MAC.IsZero() {
			continue
		}
		if err := wb.Set(put64(macPrefix(day, kindOwner, itf.MAC), nanos(reg.Time)), []byte(reg.EndpointID)); err != nil {
			return err
		}
	}
	s.checkpoint[reg.EndpointID] = day
	return nil
}

// SaveSnapshot persists the correlator's state: the latest state of every
// endpoint (last heartbeat times included) and the next sequence number. The
// daemon calls it periodically, not per heartbeat. A state is rewritten only
// when it changed; a state that changed only by a newer heartbeat keeps its
// record, and the heartbeat goes into the packed beat records (beats.go).
// The first snapshot of each UTC day also writes a registry checkpoint per
// endpoint, so that forensic lookups find who owned what within a day of any
// instant.
func (s *Store) SaveSnapshot(snap sensor.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.roomToWrite(); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	now := s.opts.Now()
	day := dayOf(now)
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	// A state written whole is not compared again until it changes: if
	// this save does not reach the disk, the next one must write it.
	var wrote, removed []string
	saved := false
	defer func() {
		if saved {
			return
		}
		for _, id := range wrote {
			s.dirty[id] = true
		}
		for _, id := range removed {
			s.dirty[id] = false
		}
	}()
	clear(s.inSnapshot)
	for i := range snap.Endpoints {
		st := &snap.Endpoints[i]
		s.inSnapshot[st.ID] = struct{}{}
		old := s.states[st.ID]
		_, dirty := s.dirty[st.ID]
		switch {
		case old != nil && !dirty && sameButBeat(old, st):
			if st.LastHeartbeat.After(old.LastHeartbeat) {
				old.LastHeartbeat = st.LastHeartbeat
				s.beaten[st.ID] = struct{}{}
			}
		default:
			b, err := encodeState(st)
			if err != nil {
				return fmt.Errorf("save snapshot: encode %s: %w", st.ID, err)
			}
			if err := wb.Set([]byte(prefixState+st.ID), b); err != nil {
				return fmt.Errorf("save snapshot: %w", err)
			}
			c := *st
			c.Interfaces = slices.Clone(st.Interfaces)
			c.Users = slices.Clone(st.Users)
			c.Reasons = slices.Clone(st.Reasons)
			s.states[st.ID] = &c
			delete(s.beaten, st.ID)
			wrote = append(wrote, st.ID)
		}
		if s.checkpoint[st.ID] != day {
			reg := Registration{EndpointID: st.ID, Name: st.Name, Org: st.Org, Interfaces: st.Interfaces, Users: st.Users, Time: now.UTC()}
			if err := s.writeRegistration(wb, day, &reg, nil); err != nil {
				return fmt.Errorf("save snapshot: %w", err)
			}
		}
	}
	clear(s.dirty)
	for id := range s.states {
		if _, ok := s.inSnapshot[id]; !ok {
			delete(s.states, id)
			delete(s.beaten, id)
			removed = append(removed, id)
			if err := wb.Delete([]byte(prefixState + id)); err != nil {
				return fmt.Errorf("save snapshot: %w", err)
			}
		}
	}
	beats := make([]beat, 0, len(s.beaten))
	for id := range s.beaten {
		beats = append(beats, beat{id, s.states[id].LastHeartbeat})
	}
	if err := s.stageBeats(wb, beats); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	for _, m := range snap.Alerted {
		if _, ok := s.alerted[m]; !ok {
			s.alerted[m] = true
			if err := wb.Set([]byte(prefixAlerted+m.String()), []byte{'u'}); err != nil {
				return fmt.Errorf("save snapshot: %w", err)
			}
		}
	}
	if snap.NextSeq > s.nextSeq {
		s.nextSeq = snap.NextSeq
	}
	if err := wb.Set([]byte(keyNextSeq), binary.BigEndian.AppendUint64(nil, s.nextSeq)); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	if err := wb.Set([]byte(keyStateSeq), s.stateMark()); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	ts, _ := now.UTC().MarshalText()
	if err := wb.Set([]byte(keySnapshotTime), ts); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("save snapshot: sync: %w", err)
	}
	saved = true
	return nil
}

// LoadSnapshot returns the state to restore the correlator with: every
// endpoint's latest state, the next sequence number (past every event ever
// appended) and the MACs already reported without heartbeat.
func (s *Store) LoadSnapshot() (sensor.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return sensor.Snapshot{}, ErrClosed
	}
	snap := sensor.Snapshot{NextSeq: s.nextSeq}
	for _, st := range s.states {
		c := *st
		c.Interfaces = slices.Clone(st.Interfaces)
		c.Users = slices.Clone(st.Users)
		c.Reasons = slices.Clone(st.Reasons)
		snap.Endpoints = append(snap.Endpoints, c)
	}
	slices.SortFunc(snap.Endpoints, func(a, b schema.EndpointState) int { return strings.Compare(a.ID, b.ID) })
	for m := range s.alerted {
		snap.Alerted = append(snap.Alerted, m)
	}
	slices.SortFunc(snap.Alerted, func(a, b schema.MAC) int { return cmp.Compare(a.Uint64(), b.Uint64()) })
	return snap, nil
}

// badgerLogger sends Badger's messages to slog; its chatty info level goes
// to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
