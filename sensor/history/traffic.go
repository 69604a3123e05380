package history

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

type minuteKey struct {
	mac    schema.MAC
	minute uint32 // unix minutes
}

type counts struct{ packets, bytes uint64 }

// rollup accumulates traffic per MAC per minute until the minute closes.
type rollup struct {
	m            map[minuteKey]*counts
	maxMinute    uint32
	flushedBelow uint32 // minutes below this were flushed at least once
}

func newRollup() rollup { return rollup{m: map[minuteKey]*counts{}} }

// Station is one entry of the unmanaged inventory for a day: a MAC that sent
// traffic and was reported as having no heartbeat.
type Station struct {
	MAC       schema.MAC   `json:"mac"`
	FirstSeen time.Time    `json:"first_seen"`
	LastSeen  time.Time    `json:"last_seen"`
	IPs       []netip.Addr `json:"ips,omitempty"`
	Hostnames []string     `json:"hostnames,omitempty"` // DHCP host names
	Packets   uint64       `json:"packets"`
	Bytes     uint64       `json:"bytes"`
	dirty     bool
}

func (st *Station) observe(t time.Time) {
	t = t.UTC()
	if st.FirstSeen.IsZero() || t.Before(st.FirstSeen) {
		st.FirstSeen = t
		st.dirty = true
	}
	if t.After(st.LastSeen) {
		st.LastSeen = t
		st.dirty = true
	}
}

func (st *Station) addIP(a netip.Addr) {
	a = a.Unmap()
	if a.IsValid() && !slices.Contains(st.IPs, a) && len(st.IPs) < 16 {
		st.IPs = append(st.IPs, a)
		st.dirty = true
	}
}

// merge folds another day's record of the same MAC into st.
func (st *Station) merge(o *Station) {
	if !o.FirstSeen.IsZero() {
		st.observe(o.FirstSeen)
	}
	if !o.LastSeen.IsZero() {
		st.observe(o.LastSeen)
	}
	for _, a := range o.IPs {
		st.addIP(a)
	}
	for _, h := range o.Hostnames {
		if !slices.Contains(st.Hostnames, h) {
			st.Hostnames = append(st.Hostnames, h)
		}
	}
	st.Packets += o.Packets
	st.Bytes += o.Bytes
}

type stationKey struct {
	day uint32
	mac schema.MAC
}

func stationKeyBytes(day uint32, m schema.MAC) []byte { return macPrefix(day, kindUnmanaged, m) }

// station returns the day's inventory record of m, reading it from disk
// the first time.
func (s *Store) station(day uint32, m schema.MAC) *Station {
	k := stationKey{day, m}
	if st := s.stations[k]; st != nil {
		return st
	}
	st := &Station{MAC: m}
	_ = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(stationKeyBytes(day, m))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, st) })
	})
	s.stations[k] = st
	return st
}

func (s *Store) writeStation(wb *badger.WriteBatch, day uint32, st *Station) error {
	if !st.dirty {
		return nil
	}
	v, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode station: %w", err)
	}
	if err := wb.Set(stationKeyBytes(day, st.MAC), v); err != nil {
		return err
	}
	st.dirty = false
	return nil
}

// AddTraffic accounts per-MAC traffic summaries into per-minute rollups
// (by the minute of each summary's LastSeen). A minute is written once a
// summary two minutes later arrives, or at Flush/Close.
func (s *Store) AddTraffic(batch []schema.TrafficSummary) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	advanced := false
	for i := range batch {
		t := &batch[i]
		if t.MAC.IsZero() || t.MAC.IsGroup() {
			continue
		}
		last := t.LastSeen
		if last.IsZero() {
			last = s.opts.Now()
		}
		minute := uint32(last.Unix() / 60)
		k := minuteKey{t.MAC, minute}
		c := s.traffic.m[k]
		if c == nil {
			c = &counts{}
			s.traffic.m[k] = c
		}
		c.packets += t.Packets
		c.bytes += t.Bytes
		if minute > s.traffic.maxMinute {
			s.traffic.maxMinute = minute
			advanced = true
		}
		if still := s.alerted[t.MAC]; still {
			st := s.station(dayOf(last), t.MAC)
			if !t.FirstSeen.IsZero() && dayOf(t.FirstSeen) == dayOf(last) {
				st.observe(t.FirstSeen)
			}
			st.observe(last)
			st.Packets += t.Packets
			st.Bytes += t.Bytes
			st.dirty = true
			for _, a := range t.IPs {
				st.addIP(a)
			}
		}
	}
	if advanced && s.traffic.maxMinute > 1 {
		return s.flushTraffic(s.traffic.maxMinute - 1)
	}
	return nil
}

func trafficKey(m schema.MAC, minute uint32) []byte {
	k := macPrefix(dayOf(time.Unix(int64(minute)*60, 0)), kindTraffic, m)
	return binary.BigEndian.AppendUint32(k, minute)
}

// flushTraffic writes the minutes below `below` and the dirty inventory
// records.
func (s *Store) flushTraffic(below uint32) error {
	if err := s.roomToWrite(); err != nil {
		return fmt.Errorf("flush traffic: %w", err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	if err := s.stageTraffic(wb, below); err != nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("flush traffic: %w", err)
	}
	return nil
}

func (s *Store) stageTraffic(wb *badger.WriteBatch, below uint32) error {
	for k, c := range s.traffic.m {
		if k.minute >= below {
			continue
		}
		key := trafficKey(k.mac, k.minute)
		p, b := c.packets, c.bytes
		if k.minute < s.traffic.flushedBelow {
			// A late report for a minute already written: add to it.
			err := s.db.View(func(txn *badger.Txn) error {
				item, err := txn.Get(key)
				if err != nil {
					return err
				}
				return item.Value(func(v []byte) error {
					if len(v) == 16 {
						p += binary.BigEndian.Uint64(v)
						b += binary.BigEndian.Uint64(v[8:])
					}
					return nil
				})
			})
			if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
				return fmt.Errorf("flush traffic: %w", err)
			}
		}
		v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), p)
		v = binary.BigEndian.AppendUint64(v, b)
		if err := wb.Set(key, v); err != nil {
			return fmt.Errorf("flush traffic: %w", err)
		}
		delete(s.traffic.m, k)
	}
	s.traffic.flushedBelow = max(s.traffic.flushedBelow, below)
	today := dayOf(s.opts.Now())
	for k, st := range s.stations {
		if err := s.writeStation(wb, k.day, st); err != nil {
			return fmt.Errorf("flush inventory: %w", err)
		}
		if k.day+1 < today {
			delete(s.stations, k)
		}
	}
	return nil
}

// Flush writes the traffic minutes that have closed by the store's clock
// and the open binding intervals. The maintenance loop calls it; Close
// flushes everything.
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.flushLocked(false)
}

func (s *Store) flushLocked(all bool) error {
	below := uint32(s.opts.Now().Unix()/60) - 1
	if all {
		below = ^uint32(0)
	}
	if err := s.roomToWrite(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if err := s.addHeldBindings(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	if err := s.stageTraffic(wb, below); err != nil {
		return err
	}
	if err := s.flushBindings(wb, all); err != nil {
		return fmt.Errorf("flush bindings: %w", err)
	}
	if err := s.stageStates(wb); err != nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
