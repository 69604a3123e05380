package inventory

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// TriageState is what an operator decided about a station without
// heartbeat.
type TriageState string

// Triage states.
const (
	TriageNew           TriageState = "new"
	TriageAuthorized    TriageState = "authorized" // raises no no_heartbeat until it expires
	TriageInvestigating TriageState = "investigating"
	TriageBlocked       TriageState = "blocked"
)

// ParseTriageState checks a state name.
func ParseTriageState(s string) (TriageState, error) {
	switch TriageState(s) {
	case TriageNew, TriageAuthorized, TriageInvestigating, TriageBlocked:
		return TriageState(s), nil
	}
	return "", fmt.Errorf("triage state %q: want new, authorized, investigating or blocked", s)
}

// TriageEntry is the decision for one MAC.
type TriageEntry struct {
	MAC     schema.MAC  `json:"mac"`
	State   TriageState `json:"state"`
	Note    string      `json:"note,omitempty"`
	Expires time.Time   `json:"expires,omitzero"` // zero: never
	By      string      `json:"by"`
	Changed time.Time   `json:"changed"`
}

// Active reports whether the entry is in force at now.
func (e TriageEntry) Active(now time.Time) bool { return e.Expires.IsZero() || now.Before(e.Expires) }

// TriageFile is the triage list's file in the sensor directory.
const TriageFile = "triage.json"

// MaxNote bounds a triage note.
const MaxNote = 500

// Triage is the persisted triage list, one entry per MAC. Authorized
// entries join the configuration's infrastructure MACs as the one list of
// stations that are not alerted as no_heartbeat. It is safe for
// concurrent use within one process.
type Triage struct {
	path string
	mu   sync.Mutex
	list map[schema.MAC]TriageEntry
}

// OpenTriage loads path (a missing file is an empty list).
func OpenTriage(path string) (*Triage, error) {
	t := &Triage{path: path, list: map[schema.MAC]TriageEntry{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("triage list: %w", err)
	}
	var l []TriageEntry
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("triage list %s is damaged: %w (fix or remove it)", path, err)
	}
	for _, e := range l {
		t.list[e.MAC] = e
	}
	return t, nil
}

// List returns every entry, by MAC.
func (t *Triage) List() []TriageEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]TriageEntry, 0, len(t.list))
	for _, e := range t.list {
		out = append(out, e)
	}
	slices.SortFunc(out, byMAC)
	return out
}

// Get returns the entry of m.
func (t *Triage) Get(m schema.MAC) (TriageEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.list[m]
	return e, ok
}

// Set records a decision and writes the file.
func (t *Triage) Set(e TriageEntry) error {
	if _, err := ParseTriageState(string(e.State)); err != nil {
		return err
	}
	if len(e.Note) > MaxNote {
		return fmt.Errorf("triage note: %d bytes, at most %d", len(e.Note), MaxNote)
	}
	if e.MAC.IsZero() || e.MAC.IsGroup() {
		return fmt.Errorf("triage %s: not a station's address", e.MAC)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had := t.list[e.MAC]
	t.list[e.MAC] = e
	if err := t.save(); err != nil {
		if had {
			t.list[e.MAC] = old
		} else {
			delete(t.list, e.MAC)
		}
		return err
	}
	return nil
}

func (t *Triage) save() error {
	l := make([]TriageEntry, 0, len(t.list))
	for _, e := range t.list {
		l = append(l, e)
	}
	slices.SortFunc(l, byMAC)
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := t.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("triage list: %w", err)
	}
	if err := os.Rename(tmp, t.path); err != nil {
		return fmt.Errorf("triage list: %w", err)
	}
	return nil
}

// Authorized returns the MACs authorized at now, as infrastructure
// entries for the correlator, and when the earliest of them expires (zero
// if none does).
func (t *Triage) Authorized(now time.Time) (macs []string, nextExpiry time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.list {
		if e.State != TriageAuthorized || !e.Active(now) {
			continue
		}
		macs = append(macs, e.MAC.String())
		if !e.Expires.IsZero() && (nextExpiry.IsZero() || e.Expires.Before(nextExpiry)) {
			nextExpiry = e.Expires
		}
	}
	slices.Sort(macs)
	return macs, nextExpiry
}

func byMAC(a, b TriageEntry) int { return cmp.Compare(a.MAC.Uint64(), b.MAC.Uint64()) }
