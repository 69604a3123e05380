package netsetup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// PhysicalNICs lists the interfaces backed by a device (not lo, bridges or
// veths) from sysClassNet (normally /sys/class/net).
func PhysicalNICs(sysClassNet string) ([]NIC, error) {
	ents, err := os.ReadDir(sysClassNet)
	if err != nil {
		return nil, fmt.Errorf("list NICs: %w", err)
	}
	var out []NIC
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(sysClassNet, e.Name(), "device")); err != nil {
			continue
		}
		l, err := netlink.LinkByName(e.Name())
		if err != nil {
			return nil, fmt.Errorf("NIC %s: %w", e.Name(), err)
		}
		out = append(out, NIC{Name: e.Name(), MAC: l.Attrs().HardwareAddr})
	}
	return out, nil
}

// DisableIPv6Default makes interfaces created from now on start with IPv6
// disabled, so no router or neighbour solicitation ever leaves a NIC before
// it is configured. Call it before loading NIC drivers.
func DisableIPv6Default() error {
	for _, k := range []string{"default", "all"} {
		if err := writeSysctl("net/ipv6/conf/"+k+"/disable_ipv6", "1"); err != nil {
			return err
		}
	}
	return nil
}

func writeSysctl(key, value string) error {
	if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
}

// LoopbackUp brings lo up.
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// SetupCapture brings name up as a receive-only port: IPv6 off, ARP off,
// multicast off, promiscuous, no address.
func SetupCapture(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("capture NIC %s: %w", name, err)
	}
	if err := writeSysctl("net/ipv6/conf/"+name+"/disable_ipv6", "1"); err != nil {
		return fmt.Errorf("capture NIC %s: %w", name, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("capture NIC %s: list addresses: %w", name, err)
	}
	for _, a := range addrs {
		if err := netlink.AddrDel(l, &a); err != nil {
			return fmt.Errorf("capture NIC %s: remove address %s: %w", name, a.IPNet, err)
		}
	}
	steps := []struct {
		what string
		f    func(netlink.Link) error
	}{
		{"arp off", netlink.LinkSetARPOff},
		{"multicast off", netlink.LinkSetMulticastOff},
		{"promiscuous", netlink.SetPromiscOn},
		{"up", netlink.LinkSetUp},
	}
	for _, s := range steps {
		if err := s.f(l); err != nil {
			return fmt.Errorf("capture NIC %s: %s: %w", name, s.what, err)
		}
	}
	return nil
}

// Lease is the management address in effect.
type Lease struct {
	Address netip.Prefix
	Gateway netip.Addr
	DNS     []netip.Addr
	// Expires is zero for a static address.
	Expires time.Time
}

// SetupStatic gives name the static address and default route.
func SetupStatic(name string, l Lease) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("management NIC %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("management NIC %s up: %w", name, err)
	}
	return apply(link, l)
}

func apply(link netlink.Link, l Lease) error {
	name := link.Attrs().Name
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: l.Address.Addr().AsSlice(), Mask: net.CIDRMask(l.Address.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("management NIC %s: address %s: %w", name, l.Address, err)
	}
	if l.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: l.Gateway.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("management NIC %s: default route via %s: %w", name, l.Gateway, err)
		}
	}
	return nil
}

// WriteResolvConf writes the name servers to path (normally /etc/resolv.conf).
func WriteResolvConf(path string, dns []netip.Addr) error {
	var b strings.Builder
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// DHCP obtains a lease for name, applies it and keeps renewing it until ctx
// ends. It returns the first lease, or an error if none came within timeout;
// onLease is called with every lease applied (first and renewed).
func DHCP(ctx context.Context, log *slog.Logger, name, hostname string, timeout time.Duration, onLease func(Lease)) (Lease, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return Lease{}, fmt.Errorf("management NIC %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return Lease{}, fmt.Errorf("management NIC %s up: %w", name, err)
	}
	first, err := requestLease(ctx, name, hostname, timeout)
	if err != nil {
		return Lease{}, err
	}
	if err := apply(link, first); err != nil {
		return Lease{}, err
	}
	if onLease != nil {
		onLease(first)
	}
	go func() {
		cur := first
		for {
			wait := time.Until(cur.Expires) / 2
			if wait < 10*time.Second {
				wait = 10 * time.Second
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			l, err := requestLease(ctx, name, hostname, timeout)
			if err != nil {
				log.Warn("dhcp renewal failed, keeping the current address", "nic", name, "err", err)
				continue
			}
			if l.Address != cur.Address {
				// Drop the old address so the host has only the leased one.
				old := &netlink.Addr{IPNet: &net.IPNet{IP: cur.Address.Addr().AsSlice(), Mask: net.CIDRMask(cur.Address.Bits(), 32)}}
				_ = netlink.AddrDel(link, old)
			}
			if err := apply(link, l); err != nil {
				log.Warn("dhcp lease not applied", "nic", name, "err", err)
				continue
			}
			cur = l
			if onLease != nil {
				onLease(l)
			}
		}
	}()
	return first, nil
}

func requestLease(ctx context.Context, name, hostname string, timeout time.Duration) (Lease, error) {
	c, err := nclient4.New(name, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp on %s: %w", name, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	mods := []dhcpv4.Modifier{}
	if hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(hostname)))
	}
	lease, err := c.Request(ctx, mods...)
	if err != nil {
		return Lease{}, fmt.Errorf("dhcp on %s: no lease within %s: %w", name, timeout, err)
	}
	return leaseFromACK(lease.ACK)
}

func leaseFromACK(ack *dhcpv4.DHCPv4) (Lease, error) {
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || !ip.IsValid() || ip.IsUnspecified() {
		return Lease{}, errors.New("dhcp: the server's answer carries no address")
	}
	mask := ack.SubnetMask()
	bits := 24
	if mask != nil {
		bits, _ = mask.Size()
	}
	l := Lease{Address: netip.PrefixFrom(ip, bits)}
	if r := ack.Router(); len(r) > 0 {
		l.Gateway, _ = netip.AddrFromSlice(r[0].To4())
	}
	for _, d := range ack.DNS() {
		if a, ok := netip.AddrFromSlice(d.To4()); ok {
			l.DNS = append(l.DNS, a)
		}
	}
	lt := ack.IPAddressLeaseTime(time.Hour)
	l.Expires = time.Now().Add(lt)
	return l, nil
}
