package agent

import (
	"net"
	"net/netip"
	"slices"
	"sort"

	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Interfaces returns the machine's up, non-loopback interfaces that have a
// MAC, with their addresses (at most the protocol's limits).
func Interfaces() ([]wire.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []wire.Interface
	for _, itf := range ifs {
		if itf.Flags&net.FlagLoopback != 0 || itf.Flags&net.FlagUp == 0 || len(itf.HardwareAddr) != 6 {
			continue
		}
		w := wire.Interface{Name: itf.Name}
		copy(w.MAC[:], itf.HardwareAddr)
		if w.MAC == (schema.MAC{}) {
			continue
		}
		addrs, _ := itf.Addrs()
		for _, a := range addrs {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP); ok && len(w.IPs) < wire.MaxIPs {
					w.IPs = append(w.IPs, ip.Unmap())
				}
			}
		}
		slices.SortFunc(w.IPs, func(a, b netip.Addr) int { return a.Compare(b) })
		out = append(out, w)
		if len(out) == wire.MaxInterfaces {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func sameInterfaces(a, b []wire.Interface) bool {
	return slices.EqualFunc(a, b, func(x, y wire.Interface) bool {
		return x.Name == y.Name && x.MAC == y.MAC && slices.Equal(x.IPs, y.IPs)
	})
}
