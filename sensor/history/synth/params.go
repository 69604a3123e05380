package synth

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tapbeat/tapbeat/sensor/history"
)

// ParamsFile is where WriteParams records, beside a generated history's
// directory, how the history was generated.
const ParamsFile = "history-gen.json"

// Params are the values that decide a generated history's content, so a
// tool reading the history knows the right answers.
type Params struct {
	Endpoints       int       `json:"endpoints"`
	Days            int       `json:"days"`
	End             time.Time `json:"end"`
	Seed            uint64    `json:"seed"`
	TrafficMinutes  int       `json:"traffic_minutes"`
	UnmanagedPerDay int       `json:"unmanaged_per_day"`
}

// Config returns the generator configuration for p.
func (p Params) Config() Config {
	return Config{Endpoints: p.Endpoints, Days: p.Days, End: p.End, Seed: p.Seed,
		TrafficMinutes: p.TrafficMinutes, UnmanagedPerDay: p.UnmanagedPerDay}
}

// WriteParams records p in dir.
func WriteParams(dir string, p Params) error {
	raw, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ParamsFile), raw, 0o644); err != nil {
		return fmt.Errorf("record the generated history's parameters: %w", err)
	}
	return nil
}

// HistoryDir is where a generated history's store lives inside its
// directory.
func HistoryDir(dir string) string { return filepath.Join(dir, "history") }

// OpenGenerated reads the parameters recorded in dir and opens the history
// generated there.
func OpenGenerated(dir string, opts history.Options) (Params, *history.Store, error) {
	p, err := ReadParams(dir)
	if err != nil {
		return p, nil, err
	}
	st, err := history.Open(HistoryDir(dir), opts)
	return p, st, err
}

// ReadParams reads what WriteParams recorded in dir.
func ReadParams(dir string) (Params, error) {
	var p Params
	raw, err := os.ReadFile(filepath.Join(dir, ParamsFile))
	if err != nil {
		return p, fmt.Errorf("%w: generate a history first: go run ./sensor/history/internal/histbench gen --dir %s", err, dir)
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("%s: %w", filepath.Join(dir, ParamsFile), err)
	}
	return p, nil
}
