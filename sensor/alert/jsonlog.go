package alert

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// JSONLogOptions configures a JSONLog.
type JSONLogOptions struct {
	// MaxBytes is the size at which the log rotates (default 64 MiB).
	MaxBytes int64
	// Keep is how many rotated files are kept: PATH.1 (newest) to PATH.Keep
	// (default 5).
	Keep int
	// Filter selects the events written (DefaultFilter when zero).
	Filter *Filter
}

// JSONLog is the embedded default sink: a local file of alerts, one JSON
// event per line (schema.Event's schema), rotated by size. A line is never
// split across files. Writes are not synced: the Badger history is the
// durable record. It is safe for concurrent use.
type JSONLog struct {
	path   string
	max    int64
	keep   int
	filter Filter

	mu     sync.Mutex
	f      *os.File // nil after Close, or after a failed rotation
	closed bool
	size   int64
	buf    []byte
}

// OpenJSONLog opens (creating it and its directory if needed) the alert log
// at path and appends to it.
func OpenJSONLog(path string, opts JSONLogOptions) (*JSONLog, error) {
	l := &JSONLog{path: path, max: opts.MaxBytes, keep: opts.Keep, filter: DefaultFilter()}
	if l.max <= 0 {
		l.max = 64 << 20
	}
	if l.keep <= 0 {
		l.keep = 5
	}
	if opts.Filter != nil {
		l.filter = *opts.Filter
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("alert log: %w", err)
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *JSONLog) open() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("alert log: open: %w (check the directory exists and is writable)", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("alert log: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Path returns the current log file's path.
func (l *JSONLog) Path() string { return l.path }

// Write appends the events the filter accepts, one line each, rotating
// first when a line would take the file past MaxBytes.
func (l *JSONLog) Write(evs []schema.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("alert log %s: closed", l.path)
	}
	if l.f == nil {
		// A rotation failed earlier: try again to open the current file.
		if err := l.open(); err != nil {
			return err
		}
	}
	l.buf = l.buf[:0]
	for i := range evs {
		if !l.filter.Match(&evs[i]) {
			continue
		}
		b, err := json.Marshal(&evs[i])
		if err != nil {
			return fmt.Errorf("alert log: encode event %d: %w", evs[i].Seq, err)
		}
		if l.size+int64(len(l.buf))+int64(len(b))+1 > l.max && l.size+int64(len(l.buf)) > 0 {
			if err := l.flush(); err != nil {
				return err
			}
			if err := l.rotate(); err != nil {
				return err
			}
		}
		l.buf = append(append(l.buf, b...), '\n')
	}
	return l.flush()
}

func (l *JSONLog) flush() error {
	if len(l.buf) == 0 {
		return nil
	}
	n, err := l.f.Write(l.buf)
	l.size += int64(n)
	l.buf = l.buf[:0]
	if err != nil {
		return fmt.Errorf("alert log %s: write: %w (is the disk full?)", l.path, err)
	}
	return nil
}

// rotate renames PATH.(i) to PATH.(i+1), dropping the oldest, moves PATH to
// PATH.1 and starts a new PATH.
func (l *JSONLog) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("alert log %s: close for rotation: %w", l.path, err)
	}
	l.f = nil
	for i := l.keep - 1; i >= 1; i-- {
		from := fmt.Sprintf("%s.%d", l.path, i)
		if err := os.Rename(from, fmt.Sprintf("%s.%d", l.path, i+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("alert log: rotate: %w", err)
		}
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return fmt.Errorf("alert log: rotate: %w", err)
	}
	return l.open()
}

// Close closes the log.
func (l *JSONLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.f == nil {
		l.closed = true
		return nil
	}
	l.closed = true
	err := l.f.Close()
	l.f = nil
	return err
}
