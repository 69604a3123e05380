package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// The spill file keeps the events a full disk kept out of history when the
// sensor stops. It is written with plain appends (no memory-mapped file, so
// a full disk is an error, not a crash) into the space history keeps in
// reserve, and stored in history at the next start.
const spillFile = "history-spill.jsonl"

func spillPath(dir string) string { return filepath.Join(dir, spillFile) }

// spillHeld writes the held events to the spill file after one last try to
// store them, and says how many it kept.
func (s *Sensor) spillHeld(dir string) {
	if len(s.held) == 0 {
		return
	}
	s.storeAndForward(nil)
	if len(s.held) == 0 {
		return
	}
	// held includes a spill file read at start and not yet stored: the
	// new file replaces it whole (written beside it, then renamed).
	p := spillPath(dir)
	tmp := p + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		w := bufio.NewWriter(f)
		enc := json.NewEncoder(w)
		for i := range s.held {
			if err = enc.Encode(&s.held[i]); err != nil {
				break
			}
		}
		if err == nil {
			err = w.Flush()
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, p)
		}
		if err != nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		s.log.Error("history disk full and the spill file could not be written: events held in memory are lost",
			"events", len(s.held), "first_seq", s.held[0].Seq, "last_seq", s.held[len(s.held)-1].Seq, "spill", p, "err", err)
		return
	}
	s.log.Warn("history disk full: events that waited in memory were kept in the spill file and will be stored at the next start",
		"events", len(s.held), "first_seq", s.held[0].Seq, "last_seq", s.held[len(s.held)-1].Seq, "spill", p,
		"dropped_while_waiting", s.heldLost)
	s.held = nil
}

// loadSpill stores the events of a spill file in history (alerts included,
// so they are delivered) and removes it. It returns the events it stored.
func (s *Sensor) loadSpill(dir string) ([]schema.Event, error) {
	p := spillPath(dir)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spill file: %w", err)
	}
	defer f.Close()
	var evs []schema.Event
	dec := json.NewDecoder(bufio.NewReader(f))
	for dec.More() {
		var ev schema.Event
		if err := dec.Decode(&ev); err != nil {
			// A torn last line (power loss while spilling) ends the file.
			s.log.Error("spill file: unreadable record; the rest is skipped", "spill", p, "err", err)
			break
		}
		if n := len(evs); n == 0 || ev.Seq > evs[n-1].Seq {
			evs = append(evs, ev)
		}
	}
	if len(evs) == 0 {
		return nil, os.Remove(p)
	}
	s.held, s.spillRead = evs, p
	s.log.Info("storing the events kept in the spill file at the last stop", "events", len(evs), "spill", p)
	return evs, nil
}
