package history

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// BackupFormat is written in the gzip header comment of every backup.
const BackupFormat = "tapbeat-history-backup-1"

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Backup writes a gzip-compressed backup of the whole database (the alert
// outbox included) to w while the store stays in use.
func (s *Store) Backup(ctx context.Context, w io.Writer) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	zw.Comment = BackupFormat
	if _, err := s.db.Backup(ctxWriter{ctx, zw}, 0); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

// Restore loads a backup written by Backup into dir, which must not hold a
// database yet (stop the daemon and move the old history aside first).
func Restore(dir string, r io.Reader, opts Options) error {
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err == nil {
		return fmt.Errorf("restore: %s already holds a history database: stop the daemon and move it aside, or restore into another --dir", dir)
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("restore: not a tapbeat history backup (%v)", err)
	}
	if zr.Comment != BackupFormat {
		return fmt.Errorf("restore: not a tapbeat history backup (header %q, want %q)", zr.Comment, BackupFormat)
	}
	s, err := Open(dir, opts)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	// Open loaded nothing yet; Load bypasses the store's caches, which are
	// rebuilt when the restored database is next opened.
	lerr := s.db.Load(zr, 256)
	if lerr == nil {
		_, lerr = io.Copy(io.Discard, zr) // checks the gzip trailer
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	cerr := s.db.Close()
	if lerr != nil {
		if errors.Is(lerr, gzip.ErrChecksum) || errors.Is(lerr, io.ErrUnexpectedEOF) {
			return fmt.Errorf("restore: the backup is truncated or corrupt (%v): %s holds a partial database, delete it before retrying", lerr, dir)
		}
		return fmt.Errorf("restore: %w (%s holds a partial database, delete it before retrying)", lerr, dir)
	}
	if cerr != nil {
		return fmt.Errorf("restore: %w", cerr)
	}
	return nil
}
