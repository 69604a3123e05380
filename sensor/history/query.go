package history

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Range is a time window; a zero Since means from the oldest record, a zero
// Until means now.
type Range struct {
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
}

// DefaultLimit bounds the events a query returns when it sets no limit.
const DefaultLimit = 10000

// HistoryQuery selects the events of one endpoint (by name or id) or of one
// MAC.
type HistoryQuery struct {
	Range
	Endpoint string     // endpoint name or id
	MAC      schema.MAC // used when Endpoint is empty
	Types    []schema.EventType
	Limit    int // the most recent Limit events are kept (default DefaultLimit)
}

// AlertQuery selects alerts (events of severity notice or worse).
type AlertQuery struct {
	Range
	Types    []schema.EventType
	Endpoint string // endpoint name or id, optional
	Limit    int
}

// TrafficQuery selects one MAC's per-minute traffic.
type TrafficQuery struct {
	Range
	MAC schema.MAC
}

// TrafficMinute is one MAC's traffic during one minute.
type TrafficMinute struct {
	MAC     schema.MAC `json:"mac"`
	Minute  time.Time  `json:"minute"`
	Packets uint64     `json:"packets"`
	Bytes   uint64     `json:"bytes"`
}

// Confidence values of a WhoAnswer.
const (
	// ConfidenceObserved: the MAC was seen using the IP over an interval
	// that contains the instant.
	ConfidenceObserved = "observed"
	// ConfidenceBetween: the same MAC was seen with the IP before and after.
	ConfidenceBetween = "between_sightings"
	// ConfidenceLastSeen: the MAC was the last seen with the IP before the
	// instant and no other MAC was seen with it since.
	ConfidenceLastSeen = "last_seen"
	// ConfidenceContested: the MAC was the last seen with the IP before the
	// instant, but another MAC was seen with it later.
	ConfidenceContested = "contested"
	// ConfidenceNone: no binding of the IP before the instant.
	ConfidenceNone = "none"
)

// WhoAnswer says which MAC and endpoint had an IP at an instant, the
// endpoint's health then and who was signed in then.
type WhoAnswer struct {
	IP         netip.Addr       `json:"ip"`
	At         time.Time        `json:"at"`
	Confidence string           `json:"confidence"`
	MAC        *schema.MAC      `json:"mac,omitempty"`
	Binding    *BindingInterval `json:"binding,omitempty"` // the latest interval starting at or before At
	Next       *BindingInterval `json:"next,omitempty"`    // the first interval starting after At
	Endpoint   *Registration    `json:"endpoint,omitempty"`
	// Status is the endpoint's last status transition at or before At.
	Status    *schema.Event `json:"status,omitempty"`
	Users     []string      `json:"users,omitempty"`
	Unmanaged *Station      `json:"unmanaged,omitempty"` // the MAC's inventory record that day, if it had no heartbeat
}

// lookback bounds how many days a reverse seek walks back.
func (s *Store) lookbackDays() uint32 { return uint32(s.opts.Retention/dayLen) + 1 }

func (s *Store) view(fn func(txn *badger.Txn) error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return s.db.View(fn)
}

// Endpoints returns the latest persisted state of every endpoint, by id.
func (s *Store) Endpoints() ([]schema.EndpointState, error) {
	snap, err := s.LoadSnapshot()
	if err != nil {
		return nil, err
	}
	if snap.Endpoints == nil {
		return []schema.EndpointState{}, nil
	}
	return snap.Endpoints, nil
}

// bounds clamps a range to the days present. ok is false when no day
// overlaps.
func (s *Store) bounds(txn *badger.Txn, r Range) (since, until time.Time, first, last uint32, ok bool) {
	until = r.Until
	if until.IsZero() {
		until = s.opts.Now()
	}
	since = r.Since
	oldest, newest, any := edgeDays(txn)
	if !any || since.After(until) {
		return since, until, 0, 0, false
	}
	first, last = max(dayOf(since), oldest), min(dayOf(until), newest)
	return since, until, first, last, first <= last
}

func edgeDays(txn *badger.Txn) (oldest, newest uint32, ok bool) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}})
	d, ok := firstDay(it, dayPrefix(0))
	it.Close()
	if !ok {
		return 0, 0, false
	}
	rit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}, Reverse: true})
	defer rit.Close()
	n, _ := firstDay(rit, []byte{prefixDay, 0xff, 0xff, 0xff, 0xff, 0xff})
	return d, n, true
}

func firstDay(it *badger.Iterator, seek []byte) (uint32, bool) {
	it.Seek(seek)
	if !it.Valid() {
		return 0, false
	}
	return keyDay(it.Item().Key())
}

// scanIndex calls fn for each entry (prefix time8 seq8) in the range,
// oldest first, day by day.
func scanIndex(txn *badger.Txn, since, until time.Time, first, last uint32, prefixOf func(uint32) []byte, fn func(item *badger.Item) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}})
	defer it.Close()
	lo, hi := nanos(since), nanos(until)
	for d := first; d <= last; d++ {
		p := prefixOf(d)
		for it.Seek(put64(bytes.Clone(p), lo)); it.ValidForPrefix(p); it.Next() {
			k := it.Item().Key()
			if len(k) != len(p)+16 {
				continue
			}
			t, _ := indexTail(k)
			if t > hi {
				break
			}
			if err := fn(it.Item()); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeValue decodes an event stored under its primary key: by sequence
// ('e') or in its endpoint's index ('n', behind a flag byte).
func decodeValue(item *badger.Item) (schema.Event, error) {
	var ev schema.Event
	k := item.Key()
	err := item.Value(func(v []byte) error {
		if len(k) > 5 && k[5] == kindEndpoint {
			if len(v) == 0 {
				return errors.New("empty record")
			}
			ev.Transition = v[0] == flagTransition
			v = v[1:]
		}
		return json.Unmarshal(v, &ev)
	})
	if err != nil {
		return ev, fmt.Errorf("decode event %x: %w", k, err)
	}
	return ev, nil
}

// entryEvent returns the event of a primary record or of an index entry
// (whose value is the primary key).
func entryEvent(txn *badger.Txn, item *badger.Item) (schema.Event, error) {
	k := item.Key()
	if len(k) > 5 && (k[5] == kindEndpoint || k[5] == kindEvent) {
		return decodeValue(item)
	}
	primary, err := item.ValueCopy(nil)
	if err != nil {
		return schema.Event{}, fmt.Errorf("read index: %w", err)
	}
	p, err := txn.Get(primary)
	if err != nil {
		return schema.Event{}, fmt.Errorf("read event %x: %w", primary, err)
	}
	return decodeValue(p)
}

// resolveEndpoint returns the ids an endpoint name or id designates.
func resolveEndpoint(txn *badger.Txn, nameOrID string) []string {
	ids := []string{nameOrID}
	p := []byte(prefixName + strings.ToLower(nameOrID) + "\x00")
	it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		id := string(it.Item().Key()[len(p):])
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

func keepTypes(types []schema.EventType, ev *schema.Event) bool {
	return len(types) == 0 || slices.Contains(types, ev.Type)
}

// sortEvents orders events by time then sequence and drops duplicates.
func sortEvents(evs []schema.Event) []schema.Event {
	slices.SortFunc(evs, func(a, b schema.Event) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	return slices.CompactFunc(evs, func(a, b schema.Event) bool { return a.Seq == b.Seq })
}

func lastN(evs []schema.Event, n int) []schema.Event {
	if n <= 0 {
		n = DefaultLimit
	}
	if len(evs) > n {
		return evs[len(evs)-n:]
	}
	return evs
}

// History returns the events of an endpoint (all its ids if a name matches
// several) or of a MAC, oldest first.
func (s *Store) History(q HistoryQuery) ([]schema.Event, error) {
	if q.Endpoint == "" && q.MAC.IsZero() {
		return nil, errors.New("history: name an endpoint or a MAC")
	}
	out := []schema.Event{}
	err := s.view(func(txn *badger.Txn) error {
		since, until, first, last, ok := s.bounds(txn, q.Range)
		if !ok {
			return nil
		}
		var prefixes []func(uint32) []byte
		if q.Endpoint != "" {
			for _, id := range resolveEndpoint(txn, q.Endpoint) {
				prefixes = append(prefixes, func(d uint32) []byte { return idPrefix(d, kindEndpoint, id) })
			}
		}
		keep := func(ev *schema.Event) bool { return keepTypes(q.Types, ev) }
		if q.Endpoint == "" {
			// Events without an endpoint are indexed by MAC; events of the
			// endpoints that owned the MAC meanwhile come from their index.
			prefixes = append(prefixes, func(d uint32) []byte { return macPrefix(d, kindMAC, q.MAC) })
			for _, id := range s.ownersDuring(txn, q.MAC, since, until, first, last) {
				prefixes = append(prefixes, func(d uint32) []byte { return idPrefix(d, kindEndpoint, id) })
			}
			keep = func(ev *schema.Event) bool { return keepTypes(q.Types, ev) && slices.Contains(ev.MACs, q.MAC) }
		}
		for _, p := range prefixes {
			err := scanIndex(txn, since, until, first, last, p, func(item *badger.Item) error {
				ev, err := entryEvent(txn, item)
				if err != nil {
					return err
				}
				if keep(&ev) {
					out = append(out, ev)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history query: %w", err)
	}
	if len(out) > 0 {
		out = sortEvents(out)
	}
	return lastN(out, q.Limit), nil
}

// ownersDuring returns the endpoints that owned MAC m at since or at any
// time up to until, from hellos and daily checkpoints.
func (s *Store) ownersDuring(txn *badger.Txn, m schema.MAC, since, until time.Time, first, last uint32) []string {
	var ids []string
	add := func(v []byte) {
		if len(v) > 0 && !slices.Contains(ids, string(v)) {
			ids = append(ids, string(v))
		}
	}
	rit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}, Reverse: true})
	if _, v, ok := seekBack(rit, since, s.lookbackDays(), func(d uint32) []byte { return macPrefix(d, kindOwner, m) }); ok {
		add(v)
	}
	rit.Close()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}})
	defer it.Close()
	hi := nanos(until)
	for d := first; d <= last; d++ {
		p := macPrefix(d, kindOwner, m)
		for it.Seek(put64(bytes.Clone(p), nanos(since))); it.ValidForPrefix(p); it.Next() {
			k := it.Item().Key()
			if len(k) == len(p)+8 && beUint64(k[len(p):]) > hi {
				break
			}
			_ = it.Item().Value(func(v []byte) error { add(v); return nil })
		}
	}
	return ids
}

// Alerts returns alerts in the range, oldest first, optionally of given
// types and of one endpoint.
func (s *Store) Alerts(q AlertQuery) ([]schema.Event, error) {
	out := []schema.Event{}
	err := s.view(func(txn *badger.Txn) error {
		since, until, first, last, ok := s.bounds(txn, q.Range)
		if !ok {
			return nil
		}
		collect := func(item *badger.Item) error {
			ev, err := entryEvent(txn, item)
			if err != nil {
				return err
			}
			if ev.IsAlert() && keepTypes(q.Types, &ev) {
				out = append(out, ev)
			}
			return nil
		}
		switch {
		case q.Endpoint != "":
			for _, id := range resolveEndpoint(txn, q.Endpoint) {
				if err := scanIndex(txn, since, until, first, last, func(d uint32) []byte { return idPrefix(d, kindEndpoint, id) }, collect); err != nil {
					return err
				}
			}
		case len(q.Types) > 0:
			for _, t := range q.Types {
				if err := scanIndex(txn, since, until, first, last, func(d uint32) []byte { return idPrefix(d, kindAlert, string(t)) }, collect); err != nil {
					return err
				}
			}
		default:
			// Every alert type: walk the whole alert index of each day.
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}})
			defer it.Close()
			lo, hi := nanos(since), nanos(until)
			for d := first; d <= last; d++ {
				p := kindPrefix(d, kindAlert)
				for it.Seek(p); it.ValidForPrefix(p); it.Next() {
					t, _ := indexTail(it.Item().Key())
					if t < lo || t > hi {
						continue
					}
					if err := collect(it.Item()); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alerts query: %w", err)
	}
	out = sortEvents(out)
	return lastN(out, q.Limit), nil
}

// seekBack finds, walking back at most days days from at's day, the last
// entry under prefixOf(day) whose 8 bytes after the prefix (a time) are at
// or before at. It returns the key and a copy of the value.
func seekBack(it *badger.Iterator, at time.Time, days uint32, prefixOf func(uint32) []byte) (key, val []byte, ok bool) {
	d0 := dayOf(at)
	for i := uint32(0); i <= days && i <= d0; i++ {
		d := d0 - i
		p := prefixOf(d)
		seek := upper(p)
		if i == 0 {
			seek = upper(put64(bytes.Clone(p), nanos(at)))
		}
		it.Seek(seek)
		if it.ValidForPrefix(p) {
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return nil, nil, false
			}
			return item.KeyCopy(nil), v, true
		}
	}
	return nil, nil, false
}

// seekBackTransition finds, walking back at most days days, the last event
// of an endpoint at or before at that changed its status.
func seekBackTransition(it *badger.Iterator, at time.Time, days uint32, id string) (schema.Event, bool, error) {
	d0 := dayOf(at)
	for i := uint32(0); i <= days && i <= d0; i++ {
		d := d0 - i
		p := idPrefix(d, kindEndpoint, id)
		seek := upper(p)
		if i == 0 {
			seek = upper(put64(bytes.Clone(p), nanos(at)))
		}
		for it.Seek(seek); it.ValidForPrefix(p); it.Next() {
			item := it.Item()
			match := false
			_ = item.Value(func(v []byte) error { match = len(v) > 0 && v[0] == flagTransition; return nil })
			if match {
				ev, err := decodeValue(item)
				return ev, err == nil, err
			}
		}
	}
	return schema.Event{}, false, nil
}

// decodeRegistration decodes a registry record: a Registration's JSON or
// the key of a hello event.
func decodeRegistration(txn *badger.Txn, v []byte) (Registration, error) {
	var reg Registration
	if len(v) > 0 && v[0] == '{' {
		if err := json.Unmarshal(v, &reg); err != nil {
			return reg, fmt.Errorf("decode registration: %w", err)
		}
		return reg, nil
	}
	item, err := txn.Get(v)
	if err != nil {
		return reg, fmt.Errorf("read hello %x: %w", v, err)
	}
	ev, err := decodeValue(item)
	if err != nil {
		return reg, err
	}
	h := helloDetails(&ev)
	return Registration{EndpointID: ev.EndpointID, Name: ev.EndpointName, Org: ev.Org, Interfaces: h.Interfaces, Users: h.Users, Time: ev.Time, Seq: ev.Seq}, nil
}

// Who answers which MAC and endpoint had ip at the instant at, how healthy
// the endpoint was then and who was signed in. Every step is an index seek.
func (s *Store) Who(ip netip.Addr, at time.Time) (WhoAnswer, error) {
	ip = ip.Unmap()
	ans := WhoAnswer{IP: ip, At: at, Confidence: ConfidenceNone}
	if !ip.IsValid() {
		return ans, errors.New("who: no IP address given")
	}
	back := s.lookbackDays()
	err := s.view(func(txn *badger.Txn) error {
		rit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}, Reverse: true})
		defer rit.Close()
		if _, v, ok := seekBack(rit, at, back, func(d uint32) []byte { return bindingPrefix(d, ip) }); ok {
			var b BindingInterval
			if err := json.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("decode binding: %w", err)
			}
			ans.Binding = &b
		}
		// The first interval after the instant, within a week.
		fit := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}})
		for d := dayOf(at); d <= dayOf(at)+7; d++ {
			p := bindingPrefix(d, ip)
			seek := p
			if d == dayOf(at) {
				seek = put64(bytes.Clone(p), nanos(at)+1)
			}
			fit.Seek(seek)
			if fit.ValidForPrefix(p) {
				var b BindingInterval
				if err := fit.Item().Value(func(v []byte) error { return json.Unmarshal(v, &b) }); err == nil {
					ans.Next = &b
				}
				break
			}
		}
		fit.Close()
		if ans.Binding == nil {
			return nil
		}
		b := ans.Binding
		m := b.MAC
		ans.MAC = &m
		switch {
		case !at.After(b.End):
			ans.Confidence = ConfidenceObserved
		case ans.Next != nil && ans.Next.MAC == b.MAC:
			ans.Confidence = ConfidenceBetween
		case ans.Next != nil:
			ans.Confidence = ConfidenceContested
		default:
			ans.Confidence = ConfidenceLastSeen
		}
		// The endpoint that owned the MAC then.
		_, v, ok := seekBack(rit, at, back, func(d uint32) []byte { return macPrefix(d, kindOwner, m) })
		if ok && len(v) > 0 {
			id := string(v)
			if _, rv, ok := seekBack(rit, at, back, func(d uint32) []byte { return idPrefix(d, kindRegistry, id) }); ok {
				reg, err := decodeRegistration(txn, rv)
				if err != nil {
					return err
				}
				ans.Endpoint = &reg
				ans.Users = reg.Users
			} else {
				ans.Endpoint = &Registration{EndpointID: id}
			}
			ev, ok, err := seekBackTransition(rit, at, back, id)
			if err != nil {
				return err
			}
			if ok {
				ans.Status = &ev
			}
		}
		if _, known := s.alertedState(m); known {
			item, err := txn.Get(stationKeyBytes(dayOf(at), m))
			if err == nil {
				var st Station
				if item.Value(func(v []byte) error { return json.Unmarshal(v, &st) }) == nil {
					ans.Unmanaged = &st
				}
			}
		}
		return nil
	})
	if err != nil {
		return ans, fmt.Errorf("who %s at %s: %w", ip, at.Format(time.RFC3339), err)
	}
	return ans, nil
}

func (s *Store) alertedState(m schema.MAC) (still, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	still, known = s.alerted[m]
	return still, known
}

// Traffic returns one MAC's per-minute traffic in the range, oldest first.
// Minutes still in memory (not yet closed) are not included.
func (s *Store) Traffic(q TrafficQuery) ([]TrafficMinute, error) {
	out := []TrafficMinute{}
	err := s.view(func(txn *badger.Txn) error {
		since, until, first, last, ok := s.bounds(txn, q.Range)
		if !ok {
			return nil
		}
		lo, hi := uint32(max(since.Unix(), 0)/60), uint32(until.Unix()/60)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}})
		defer it.Close()
		for d := first; d <= last; d++ {
			p := macPrefix(d, kindTraffic, q.MAC)
			seek := append(bytes.Clone(p), byte(lo>>24), byte(lo>>16), byte(lo>>8), byte(lo))
			for it.Seek(seek); it.ValidForPrefix(p); it.Next() {
				k := it.Item().Key()
				if len(k) != len(p)+4 {
					continue
				}
				minute := uint32(k[len(p)])<<24 | uint32(k[len(p)+1])<<16 | uint32(k[len(p)+2])<<8 | uint32(k[len(p)+3])
				if minute > hi {
					break
				}
				tm := TrafficMinute{MAC: q.MAC, Minute: time.Unix(int64(minute)*60, 0).UTC()}
				err := it.Item().Value(func(v []byte) error {
					if len(v) == 16 {
						tm.Packets = beUint64(v)
						tm.Bytes = beUint64(v[8:])
					}
					return nil
				})
				if err != nil {
					return err
				}
				out = append(out, tm)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("traffic query: %w", err)
	}
	return out, nil
}

func beUint64(b []byte) uint64 {
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}

// Unmanaged returns the stations that sent traffic without heartbeat in the
// range (whole UTC days), merged over the days, by MAC.
func (s *Store) Unmanaged(r Range) ([]Station, error) {
	byMAC := map[schema.MAC]*Station{}
	err := s.view(func(txn *badger.Txn) error {
		since, until, first, last, ok := s.bounds(txn, r)
		if !ok {
			return nil
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}})
		defer it.Close()
		for d := first; d <= last; d++ {
			p := kindPrefix(d, kindUnmanaged)
			for it.Seek(p); it.ValidForPrefix(p); it.Next() {
				var st Station
				if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &st) }); err != nil {
					return fmt.Errorf("decode station: %w", err)
				}
				if st.LastSeen.Before(since) || st.FirstSeen.After(until) {
					continue
				}
				if cur := byMAC[st.MAC]; cur != nil {
					cur.merge(&st)
				} else {
					byMAC[st.MAC] = &st
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("unmanaged query: %w", err)
	}
	out := make([]Station, 0, len(byMAC))
	for _, st := range byMAC {
		st.dirty = false
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b Station) int { return cmp.Compare(a.MAC.Uint64(), b.MAC.Uint64()) })
	return out, nil
}
