// Package kmod loads the kernel modules the appliance carries, in the order
// the image build resolved (dependencies first), without modprobe or udev.
package kmod

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// ParseList reads a load list: one module path per line, relative to the
// modules directory, dependencies before their users. Blank lines and lines
// starting with # are skipped; a path listed twice is loaded once.
func ParseList(r io.Reader) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.Contains(line, "..") || strings.HasPrefix(line, "/") || !strings.HasSuffix(line, ".ko") {
			return nil, fmt.Errorf("module list line %d: %q is not a relative path to a .ko file", n, line)
		}
		if seen[line] {
			continue
		}
		seen[line] = true
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read module list: %w", err)
	}
	return out, nil
}

// Aliases maps a module name (underscores, no .ko) to the hardware
// patterns from modules.alias it drives, for the buses whose devices are
// all present when modules load (pci, virtio). A module with such patterns
// is loaded only when a present device matches one, which keeps drivers
// for absent hardware from costing boot time.
type Aliases map[string][]string

// gatedBuses are the alias prefixes used to skip drivers for absent
// hardware. USB is not among them: USB devices are still being enumerated
// while modules load, and a USB data disk must not be missed.
var gatedBuses = []string{"pci:", "virtio:"}

// ParseAliases reads modules.alias text ("alias PATTERN MODULE" lines).
func ParseAliases(r io.Reader) (Aliases, error) {
	out := Aliases{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "alias" {
			continue
		}
		for _, b := range gatedBuses {
			if strings.HasPrefix(f[1], b) {
				out[f[2]] = append(out[f[2]], f[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read module aliases: %w", err)
	}
	return out, nil
}

// ModuleName returns the module name of a .ko path as modules.alias
// spells it (dashes become underscores).
func ModuleName(p string) string {
	return strings.ReplaceAll(strings.TrimSuffix(path.Base(p), ".ko"), "-", "_")
}

// Wanted reports whether module m should be loaded given the modaliases of
// the devices present: yes if it drives no gated bus, or if one of its
// patterns matches a device.
func (a Aliases) Wanted(m string, devices []string) bool {
	pats := a[m]
	if len(pats) == 0 {
		return true
	}
	for _, p := range pats {
		for _, d := range devices {
			if ok, _ := path.Match(p, d); ok {
				return true
			}
		}
	}
	return false
}

// AsyncProbe reports whether module m's devices may be probed in the
// background: PCI and virtio drivers, except virtio_pci, whose devices the
// virtio drivers' gating (Wanted) must see before it returns. Callers then
// wait for the devices they need (disks, NICs) to appear.
func (a Aliases) AsyncProbe(m string) bool {
	return m != "virtio_pci" && len(a[m]) > 0
}
