package kmod

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// LoadAll loads the modules named in the list file listPath (paths
// relative to dir), skipping PCI and virtio drivers for which no device is
// present according to aliasPath (a modules.alias file; "" loads
// everything). A module already loaded or built in is fine; a module that
// fails to load is logged and the rest are still tried, and the failures
// are returned together.
func LoadAll(log *slog.Logger, dir, listPath, aliasPath string) (loaded int, err error) {
	var aliases Aliases
	if aliasPath != "" {
		af, err := os.Open(aliasPath)
		if err != nil {
			return 0, fmt.Errorf("open module aliases: %w", err)
		}
		aliases, err = ParseAliases(af)
		af.Close()
		if err != nil {
			return 0, err
		}
	}
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
	var slowest time.Duration
	var slowestName string
	defer func() {
		if slowestName != "" {
			log.Info("slowest module", "module", slowestName, "took", slowest.Round(time.Millisecond))
		}
	}()
	for _, m := range mods {
		if !aliases.Wanted(ModuleName(m), deviceAliases()) {
			log.Debug("module skipped: no such device", "module", m)
			continue
		}
		began := time.Now()
		err := load(filepath.Join(dir, m), aliases.AsyncProbe(ModuleName(m)))
		if took := time.Since(began); err == nil && took > slowest {
			slowest, slowestName = took, ModuleName(m)
		}
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
func Load(path string) error { return load(path, false) }

// load loads a module; async asks the kernel to probe its devices in the
// background (the generic async_probe module parameter), so hardware
// resets and firmware waits in one driver do not hold up the others.
func load(path string, async bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	params := ""
	if async {
		params = "async_probe"
	}
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// deviceAliases lists the modaliases of the PCI and virtio devices present
// now (virtio devices appear once virtio_pci is loaded).
func deviceAliases() []string {
	var out []string
	for _, bus := range []string{"pci", "virtio"} {
		paths, _ := filepath.Glob("/sys/bus/" + bus + "/devices/*/modalias")
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				out = append(out, strings.TrimSpace(string(b)))
			}
		}
	}
	return out
}
