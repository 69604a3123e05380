package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// DHCPRange returns the first and last address a DHCP server started with
// StartDHCPServer leases. Static addresses never fall in it.
func (s *State) DHCPRange() (first, last netip.Addr) {
	return hostAddr(s.Subnet, dhcpFirst), hostAddr(s.Subnet, dhcpLast)
}

// StartDHCPServer starts dnsmasq as a DHCP server (DNS off, no
// configuration file read, no ping check before an offer, leases of two
// minutes from DHCPRange) on the
// named host's first interface and waits until it serves. It runs as a
// lab Process: stop it with Stop, or Down stops it. Its output logs every
// DHCP exchange.
func (l *Lab) StartDHCPServer(ctx context.Context, host string) (*Process, error) {
	ifs, err := l.Interfaces(host)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tapbeat-lab-dhcp-")
	if err != nil {
		return nil, fmt.Errorf("dhcp server: lease directory: %w", err)
	}
	first, last := l.DHCPRange()
	mask := net.IP(net.CIDRMask(l.Subnet.Bits(), 32)).String()
	p, err := l.Start(ctx, host, "dnsmasq",
		"--keep-in-foreground", "--log-facility=-", "--log-dhcp",
		"--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--port=0",
		"--user=root", "--pid-file=",
		"--bind-interfaces", "--interface="+ifs[0].Name, "--except-interface=lo",
		"--dhcp-authoritative", "--no-ping",
		"--dhcp-range="+first.String()+","+last.String()+","+mask+",2m",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() {
		<-p.Done()
		os.RemoveAll(dir)
	}()
	deadline := time.After(5 * time.Second)
	for !strings.Contains(p.Output(), "DHCP, IP range") {
		select {
		case <-p.Done():
			return nil, fmt.Errorf("dhcp server on lab host %s exited: %v: %s", host, p.Wait(), p.Output())
		case <-deadline:
			_ = p.Stop()
			return nil, fmt.Errorf("dhcp server on lab host %s did not start within 5 s: %s", host, p.Output())
		case <-ctx.Done():
			_ = p.Stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p, nil
}

var leaseRE = regexp.MustCompile(`lease of ([0-9.]+) obtained`)

// AcquireLease runs a DHCP client (busybox udhcpc, sending the host name)
// on the named host's interface (counting from 0) and returns the address
// it was leased. The lease is not applied: the interface keeps its static
// address. The exchange (discover, offer, request, ack) crosses the switch
// and so the mirror.
func (l *Lab) AcquireLease(ctx context.Context, host string, iface int) (netip.Addr, error) {
	ifs, err := l.Interfaces(host)
	if err != nil {
		return netip.Addr{}, err
	}
	if iface < 0 || iface >= len(ifs) {
		return netip.Addr{}, fmt.Errorf("lab %s: host %s has %d interfaces, no interface %d", l.Name, host, len(ifs), iface)
	}
	// -s /bin/true: run no configuration script, so nothing on the host
	// (addresses, routes, resolv.conf) changes.
	out, err := l.Run(ctx, host, "busybox", "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1",
		"-i", ifs[iface].Name, "-s", "/bin/true", "-x", "hostname:"+host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp lease for %s %s: %w", host, ifs[iface].Name, err)
	}
	m := leaseRE.FindStringSubmatch(out)
	if m == nil {
		return netip.Addr{}, fmt.Errorf("dhcp lease for %s %s: no lease in the client's output: %s", host, ifs[iface].Name, out)
	}
	a, err := netip.ParseAddr(m[1])
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp lease for %s %s: %w", host, ifs[iface].Name, err)
	}
	return a, nil
}
