//go:build !linux

package agent

import (
	"errors"
	"net/netip"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Isolator is only implemented on Linux (nftables).
type Isolator struct{}

// NewIsolator reports that isolation is not available here.
func NewIsolator(int) (*Isolator, error) {
	return nil, errors.New("isolation needs Linux nftables")
}

// Apply does nothing.
func (*Isolator) Apply([]netip.Addr, []schema.MAC) error { return nil }

// Close does nothing.
func (*Isolator) Close() error { return nil }
