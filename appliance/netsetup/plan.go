// Package netsetup configures the appliance's NICs, chosen by MAC because
// without udev their names follow probe order: the management NIC gets a
// static IPv4 address or one from DHCP; capture NICs come up promiscuous
// with no address, ARP off and IPv6 off, so the appliance never transmits on
// the mirror port.
package netsetup

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
)

// NIC is a physical network interface.
type NIC struct {
	Name string
	MAC  net.HardwareAddr
}

// Plan says which NIC manages and which capture.
type Plan struct {
	Mgmt    NIC
	Capture []NIC
}

// MakePlan picks the management NIC (by mgmtMAC, or the first NIC by name
// when empty) and the capture NICs (by captureMACs, or every other NIC when
// empty). A configured MAC that matches no NIC is an error naming the NICs
// present.
func MakePlan(nics []NIC, mgmtMAC string, captureMACs []string) (Plan, error) {
	sort.Slice(nics, func(i, j int) bool { return nics[i].Name < nics[j].Name })
	if len(nics) == 0 {
		return Plan{}, errors.New("no network interface found: the appliance needs one management NIC (virtio, e1000, e1000e, igb, ixgbe or i40e)")
	}
	find := func(what, s string) (NIC, error) {
		want, err := net.ParseMAC(s)
		if err != nil {
			return NIC{}, fmt.Errorf("%s %q: %w", what, s, err)
		}
		for _, n := range nics {
			if strings.EqualFold(n.MAC.String(), want.String()) {
				return n, nil
			}
		}
		return NIC{}, fmt.Errorf("%s %s: no such NIC (present: %s)", what, want, describe(nics))
	}
	var p Plan
	var err error
	if mgmtMAC == "" {
		p.Mgmt = nics[0]
	} else if p.Mgmt, err = find("mgmt mac", mgmtMAC); err != nil {
		return Plan{}, err
	}
	if len(captureMACs) == 0 {
		for _, n := range nics {
			if n.Name != p.Mgmt.Name {
				p.Capture = append(p.Capture, n)
			}
		}
		return p, nil
	}
	var errs []error
	for _, m := range captureMACs {
		n, err := find("capture mac", m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if n.Name == p.Mgmt.Name {
			errs = append(errs, fmt.Errorf("capture mac %s is the management NIC", m))
			continue
		}
		p.Capture = append(p.Capture, n)
	}
	return p, errors.Join(errs...)
}

func describe(nics []NIC) string {
	var s []string
	for _, n := range nics {
		s = append(s, n.Name+"="+n.MAC.String())
	}
	return strings.Join(s, ", ")
}

// CaptureNames returns the capture NICs' names.
func (p Plan) CaptureNames() []string {
	var out []string
	for _, n := range p.Capture {
		out = append(out, n.Name)
	}
	return out
}
