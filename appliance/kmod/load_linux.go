package kmod

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LoadAll loads every module named in the list file listPath (paths
// relative to dir). A module already loaded or built in is fine; a module
// that fails to load is logged and the rest are still tried, and the
// failures are returned together.
func LoadAll(log *slog.Logger, dir, listPath string) (loaded int, err error) {
	f, err := os.Open(listPath)
	if err != nil {
		return 0, fmt.Errorf("open module list: %w", err)
	}
	defer f.Close()
	mods, err := ParseList(f)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, m := range mods {
		err := Load(filepath.Join(dir, m))
		if errors.Is(err, unix.ENODEV) {
			// Drivers for hardware this machine lacks (crc32c-intel on a
			// CPU without SSE4.2) refuse to load; that is expected.
			log.Debug("module not for this hardware", "module", m)
			continue
		}
		if err != nil {
			log.Warn("module not loaded", "module", m, "err", err)
			errs = append(errs, err)
			continue
		}
		loaded++
	}
	return loaded, errors.Join(errs...)
}

// Load loads one module file with finit_module. EEXIST (already loaded) is
// not an error.
func Load(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}
