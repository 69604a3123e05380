// Package kmod loads the kernel modules the appliance carries, in the order
// the image build resolved (dependencies first), without modprobe or udev.
package kmod

import (
	"bufio"
	"fmt"
	"io"
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
