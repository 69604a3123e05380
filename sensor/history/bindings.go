package history

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// BindingInterval says that MAC used IP from Start to End: the first and
// last observation of the pair (ARP, DHCP, NDP, a hello or traffic). An
// interval never spans two UTC days; a binding that lasts is recorded as one
// interval per day.
type BindingInterval struct {
	IP       netip.Addr `json:"ip"`
	MAC      schema.MAC `json:"mac"`
	Start    time.Time  `json:"start"`
	End      time.Time  `json:"end"`
	Sources  []string   `json:"sources,omitempty"`
	Hostname string     `json:"hostname,omitempty"`
}

// openBinding is the current interval of one IP, kept in memory so repeated
// observations extend it without a write each.
type openBinding struct {
	rec     BindingInterval
	day     uint32
	written time.Time // End as last written
	dirty   bool      // sources changed since written
}

// bindingWriteEvery: an open interval's end is rewritten at most this often.
const bindingWriteEvery = time.Minute

// maxHeldBindings bounds the observations kept in memory while the disk
// is full; beyond it the oldest are dropped, counted and logged.
const maxHeldBindings = 1 << 16

// AddBindings records IP<->MAC observations as validity intervals. While
// the disk is full it returns ErrDiskFull and holds the observations in
// memory (up to maxHeldBindings) until a later write finds room.
func (s *Store) AddBindings(bs []schema.Binding) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.roomToWrite(); err != nil {
		s.holdBindings(bs)
		return fmt.Errorf("add bindings: %w; %d observations wait in memory", err, len(s.heldBindings))
	}
	if err := s.addHeldBindings(); err != nil {
		return fmt.Errorf("add bindings: %w", err)
	}
	return s.writeBindings(bs)
}

func (s *Store) writeBindings(bs []schema.Binding) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, b := range bs {
		if err := s.observeBinding(wb, b); err != nil {
			return fmt.Errorf("add bindings: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("add bindings: %w", err)
	}
	return nil
}

// holdBindings keeps observations that could not be written.
func (s *Store) holdBindings(bs []schema.Binding) {
	s.heldBindings = append(s.heldBindings, bs...)
	if over := len(s.heldBindings) - maxHeldBindings; over > 0 {
		s.heldBindings = slices.Delete(s.heldBindings, 0, over)
		s.droppedBindings += uint64(over)
	}
}

// addHeldBindings writes the observations held while the disk was full.
func (s *Store) addHeldBindings() error {
	if len(s.heldBindings) == 0 {
		return nil
	}
	if err := s.writeBindings(s.heldBindings); err != nil {
		return err
	}
	if s.droppedBindings > 0 {
		s.log.Warn("IP bindings observed while the history disk was full were dropped: more than fit in memory",
			"dropped", s.droppedBindings, "kept", len(s.heldBindings))
	}
	s.heldBindings, s.droppedBindings = nil, 0
	return nil
}

func (s *Store) observeBinding(wb *badger.WriteBatch, b schema.Binding) error {
	ip := b.IP.Unmap()
	if !ip.IsValid() || b.MAC.IsZero() || b.MAC.IsGroup() || b.Time.IsZero() {
		return nil
	}
	t := b.Time.UTC()
	day := dayOf(t)
	if still := s.alerted[b.MAC]; still {
		st := s.station(day, b.MAC)
		st.addIP(ip)
		if b.Hostname != "" && !slices.Contains(st.Hostnames, b.Hostname) && len(st.Hostnames) < 8 {
			st.Hostnames = append(st.Hostnames, b.Hostname)
			st.dirty = true
		}
		if err := s.writeStation(wb, day, st); err != nil {
			return err
		}
	}
	o := s.bindings[ip]
	if o != nil && o.rec.MAC == b.MAC && o.day == day && !t.Before(o.rec.Start) {
		// The same holder seen again: extend the interval. The record is
		// rewritten at most once a minute (and at Flush); a new host name
		// is written at once.
		if t.After(o.rec.End) {
			o.rec.End = t
		}
		if b.Source != "" && !slices.Contains(o.rec.Sources, b.Source) {
			o.rec.Sources = append(o.rec.Sources, b.Source)
			o.dirty = true
		}
		if b.Hostname != "" && b.Hostname != o.rec.Hostname {
			o.rec.Hostname = b.Hostname
			return s.writeBinding(wb, o)
		}
		if o.rec.End.Sub(o.written) >= bindingWriteEvery {
			return s.writeBinding(wb, o)
		}
		return nil
	}
	n := &openBinding{day: day, rec: BindingInterval{IP: ip, MAC: b.MAC, Start: t, End: t, Hostname: b.Hostname}}
	if b.Source != "" {
		n.rec.Sources = []string{b.Source}
	}
	if o != nil && t.Before(o.rec.End) {
		// An observation older than the open interval: record it on its
		// own and keep the open one.
		return s.writeBinding(wb, n)
	}
	if o != nil && (o.dirty || !o.written.Equal(o.rec.End)) {
		if err := s.writeBinding(wb, o); err != nil {
			return err
		}
	}
	s.bindings[ip] = n
	return s.writeBinding(wb, n)
}

func bindingKey(day uint32, ip netip.Addr, start time.Time, m schema.MAC) []byte {
	k := put64(bindingPrefix(day, ip), nanos(start))
	return append(k, m[:]...)
}

func (s *Store) writeBinding(wb *badger.WriteBatch, o *openBinding) error {
	v, err := json.Marshal(&o.rec)
	if err != nil {
		return fmt.Errorf("encode binding: %w", err)
	}
	if err := wb.Set(bindingKey(o.day, o.rec.IP, o.rec.Start, o.rec.MAC), v); err != nil {
		return err
	}
	o.written = o.rec.End
	o.dirty = false
	return nil
}

// flushBindings writes open intervals whose end moved since their last
// write and forgets intervals of days before the previous one.
func (s *Store) flushBindings(wb *badger.WriteBatch, all bool) error {
	today := dayOf(s.opts.Now())
	for ip, o := range s.bindings {
		if o.dirty || !o.written.Equal(o.rec.End) {
			if err := s.writeBinding(wb, o); err != nil {
				return err
			}
		}
		if o.day+1 < today {
			delete(s.bindings, ip)
		}
	}
	return nil
}
