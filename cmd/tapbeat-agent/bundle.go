package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// DefaultBundle is where the packaged agent looks for its enrollment bundle.
const DefaultBundle = "/etc/tapbeat-agent/bundle.json"

// waitForBundle returns once a file exists at path, looking every poll. An
// agent installed before its endpoint was enrolled waits here, saying where
// the bundle belongs, instead of failing and being restarted over and over.
func waitForBundle(ctx context.Context, path string, poll time.Duration, log *slog.Logger) error {
	_, err := os.Stat(path)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	log.Info("waiting for the enrollment bundle: create it with `tapbeat enroll --name HOST` on the sensor and copy it here (mode 0600)", "path", path)
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while waiting for the bundle %s: %w", path, ctx.Err())
		case <-t.C:
		}
		_, err := os.Stat(path)
		switch {
		case err == nil:
			log.Info("enrollment bundle found", "path", path)
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("bundle %s: %w", path, err)
		}
	}
}

// checksIn returns a check command for every executable regular file in
// dir, by name, so checks can be dropped into a directory (run-parts
// style) instead of quoted into a command line. A missing dir has none.
func checksIn(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("check directory: %w", err)
	}
	var checks []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("check directory: %w", err)
		}
		if !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		checks = append(checks, "'"+strings.ReplaceAll(p, "'", `'\''`)+"'")
	}
	sort.Strings(checks)
	return checks, nil
}
