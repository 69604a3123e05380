// Package inventory owns what tapbeat knows about a MAC address by itself:
// the organisation the IEEE assigned its prefix to (MA-L, MA-M and MA-S
// blocks) and whether it is locally administered (set by software, often a
// randomised address of a phone or a virtual machine).
//
// The registry is Debian's ieee-data package (oui.csv, mam.csv, oui36.csv)
// turned into a sorted, gzip-compressed table (oui.tsv.gz, ~430 KiB) that is
// embedded at build time; `go generate ./sensor/inventory` refreshes it from
// /usr/share/ieee-data after `apt-get install ieee-data`.
package inventory

//go:generate go run ./internal/gen -in /usr/share/ieee-data -out oui.tsv.gz

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

//go:embed oui.tsv.gz
var registry []byte

// LocallyAdministered is the vendor label of a MAC whose U/L bit is set.
const LocallyAdministered = "(locally administered)"

// Vendors maps MAC prefixes to organisation names. The zero value is not
// usable; use Load. A Vendors is safe for concurrent use.
type Vendors struct {
	once  sync.Once
	err   error
	large map[uint32]string // 24-bit prefix (MA-L)
	mid   map[uint32]string // 28-bit prefix (MA-M)
	small map[uint64]string // 36-bit prefix (MA-S)
}

// Load returns the embedded registry; it is decoded on first use (about
// 40,000 assignments, a few MiB of memory).
func Load() *Vendors { return &Vendors{} }

func (v *Vendors) decode() {
	zr, err := gzip.NewReader(bytes.NewReader(registry))
	if err != nil {
		v.err = fmt.Errorf("vendor registry: %w", err)
		return
	}
	v.large = make(map[uint32]string, 33000)
	v.mid = make(map[uint32]string, 4500)
	v.small = make(map[uint64]string, 5100)
	names := map[string]string{} // one copy of each organisation name
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		prefix, name, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		if n, seen := names[name]; seen {
			name = n
		} else {
			names[name] = name
		}
		p, err := strconv.ParseUint(prefix, 16, 64)
		if err != nil {
			continue
		}
		switch len(prefix) {
		case 6:
			v.large[uint32(p)] = name
		case 7:
			v.mid[uint32(p)] = name
		case 9:
			v.small[p] = name
		}
	}
	if err := sc.Err(); err != nil {
		v.err = fmt.Errorf("vendor registry: %w", err)
	}
}

// Err reports a registry that could not be decoded (a damaged build).
func (v *Vendors) Err() error {
	v.once.Do(v.decode)
	return v.err
}

// Lookup returns the organisation the IEEE assigned m's block to, the most
// specific block first, or "" if none.
func (v *Vendors) Lookup(m schema.MAC) string {
	v.once.Do(v.decode)
	u := m.Uint64()
	if n, ok := v.small[u>>12]; ok {
		return n
	}
	if n, ok := v.mid[uint32(u>>20)]; ok {
		return n
	}
	return v.large[uint32(u>>24)]
}

// IsLocal reports whether m is locally administered (the U/L bit of the
// first octet is set).
func IsLocal(m schema.MAC) bool { return m[0]&0x02 != 0 }

// Label is what people see for m's vendor: the registry's name, the
// locally administered label, or "" for an unassigned prefix.
func (v *Vendors) Label(m schema.MAC) string {
	if IsLocal(m) {
		return LocallyAdministered
	}
	return v.Lookup(m)
}
