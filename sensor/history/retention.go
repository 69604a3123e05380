package history

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Days returns the UTC days (their first instant) that hold history, oldest
// first.
func (s *Store) Days() ([]time.Time, error) {
	days, err := s.days()
	if err != nil {
		return nil, err
	}
	out := make([]time.Time, len(days))
	for i, d := range days {
		out[i] = dayStart(d)
	}
	return out, nil
}

// days lists the day numbers present by seeking from one day to the next.
func (s *Store) days() ([]uint32, error) {
	var out []uint32
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixDay}})
		defer it.Close()
		for it.Seek(dayPrefix(0)); it.Valid(); {
			d, ok := keyDay(it.Item().Key())
			if !ok {
				break
			}
			out = append(out, d)
			if d == ^uint32(0) {
				break
			}
			it.Seek(dayPrefix(d + 1))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list history days: %w", err)
	}
	return out, nil
}

// PruneResult says what a retention pass dropped.
type PruneResult struct {
	Expired   []time.Time `json:"expired,omitempty"`    // days older than the retention
	ForSpace  []time.Time `json:"for_space,omitempty"`  // days dropped to keep disk free
	FreeBytes uint64      `json:"free_bytes,omitempty"` // free space after the pass
}

// Prune drops whole days older than the retention, then, while the file
// system's free space is under the threshold, the oldest remaining days (the
// current day is never dropped). Each day dropped for space raises a
// storage_low event through Options.OnStorageLow.
func (s *Store) Prune() (PruneResult, error) {
	var alerts []schema.Event
	res, err := s.prune(&alerts)
	// Called without the lock: the callback may append to this store.
	for _, ev := range alerts {
		s.log.Warn("history storage low", "reason", ev.Reason)
		if s.opts.OnStorageLow != nil {
			s.opts.OnStorageLow(ev)
		}
	}
	return res, err
}

func (s *Store) prune(alerts *[]schema.Event) (PruneResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res PruneResult
	if s.closed {
		return res, ErrClosed
	}
	now := s.opts.Now()
	keepFrom := dayOf(now.Add(-s.opts.Retention)) + 1
	days, err := s.days()
	if err != nil {
		return res, err
	}
	for len(days) > 0 && days[0] < keepFrom {
		if err := s.dropDay(days[0]); err != nil {
			return res, err
		}
		res.Expired = append(res.Expired, dayStart(days[0]))
		days = days[1:]
	}
	today := dayOf(now)
	for {
		free, total, err := freeSpace(s.db.Opts().Dir)
		if err != nil {
			return res, fmt.Errorf("prune: %w", err)
		}
		res.FreeBytes = free
		need := max(s.opts.MinFreeBytes, uint64(s.opts.MinFreeFraction*float64(total)), s.opts.ReserveBytes)
		if free >= need {
			s.lowAlertAt = time.Time{}
			return res, nil
		}
		if len(days) == 0 || days[0] >= today {
			// Checked every minute: said once an hour while it lasts.
			if !s.lowAlertAt.IsZero() && now.Sub(s.lowAlertAt) < time.Hour {
				return res, nil
			}
			s.lowAlertAt = now
			ev := schema.Event{
				Time: now, Type: schema.EventStorageLow, Severity: schema.SeverityCritical,
				Reason: fmt.Sprintf("history disk has %d MiB free, under the %d MiB threshold, and only the current day is left to drop: free disk space or enlarge the volume",
					free>>20, need>>20),
				Details: &schema.StorageLowDetails{FreeBytes: free, ThresholdBytes: need},
			}
			*alerts = append(*alerts, ev)
			return res, nil
		}
		d := days[0]
		if err := s.dropDay(d); err != nil {
			return res, err
		}
		days = days[1:]
		res.ForSpace = append(res.ForSpace, dayStart(d))
		*alerts = append(*alerts, schema.Event{
			Time: now, Type: schema.EventStorageLow, Severity: schema.SeverityWarning,
			Reason: fmt.Sprintf("history disk has %d MiB free, under the %d MiB threshold: dropped the history of %s early",
				free>>20, need>>20, dayStart(d).Format(time.DateOnly)),
			Details: &schema.StorageLowDetails{DroppedDay: dayStart(d).Format(time.DateOnly), FreeBytes: free, ThresholdBytes: need},
		})
	}
}

// dropDay removes every record of one day and forgets cached state of it.
func (s *Store) dropDay(d uint32) error {
	if err := s.db.DropPrefix(dayPrefix(d)); err != nil {
		return fmt.Errorf("drop history of %s: %w", dayStart(d).Format(time.DateOnly), err)
	}
	for k := range s.stations {
		if k.day == d {
			delete(s.stations, k)
		}
	}
	for ip, o := range s.bindings {
		if o.day == d {
			delete(s.bindings, ip)
		}
	}
	s.log.Info("history day dropped", "day", dayStart(d).Format(time.DateOnly))
	return nil
}

// Run does the store's housekeeping until ctx ends: every minute (or every
// period if shorter) it writes closed traffic minutes, open binding
// intervals and changed endpoint states; every period it applies retention
// and the free-disk guard. Both run once at start.
func (s *Store) Run(ctx context.Context, period time.Duration) error {
	if period <= 0 {
		period = time.Hour
	}
	flushEvery := min(period, time.Minute)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	lastPrune := time.Time{}
	for {
		err := s.Flush()
		if err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("history flush", "err", err)
		}
		// A full disk is not left until the next period: dropping the
		// oldest days may make room now.
		if now := time.Now(); now.Sub(lastPrune) >= period || errors.Is(err, ErrDiskFull) {
			lastPrune = now
			if _, err := s.Prune(); err != nil && !errors.Is(err, ErrClosed) {
				s.log.Error("history retention", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
