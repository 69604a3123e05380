package lab

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Join connects the switches of labs into one network, in a line: lab i's
// switch to lab i+1's, each link a veth pair whose ends are plain bridge
// ports (trunks) without a mirror filter. A frame is copied only to the
// span port of the switch where it entered from a host port; a frame
// crossing a trunk is never mirrored again. Every host of every lab gets an
// on-link route to every other lab's subnet: the sensor through its LAN
// interface, an endpoint through each of its interfaces, eth0 preferred
// (metric 0) and eth1 (metric 1) used while eth0 has no carrier, as for
// the lab's own subnet. So every host reaches every other host's address
// across the joined network.
//
// The labs need distinct names, subnets that do not overlap and distinct
// MACs, and none of them may be joined already (a second Join could close
// a loop, which a switch without spanning tree floods forever). Join
// records its trunks and routes in each lab's state file before making
// them; when it fails half way it removes what it made and clears the
// records again. Everything it makes lives in the labs' namespaces (a veth
// pair vanishes with either end's namespace), so Teardown of every lab
// removes it in any case.
func Join(ctx context.Context, labs ...*Lab) error {
	if err := checkJoin(labs); err != nil {
		return err
	}
	for _, prog := range []string{"ip", "bridge"} {
		if _, err := exec.LookPath(prog); err != nil {
			return fmt.Errorf("join labs: needs %s on PATH (Debian package iproute2): %w", prog, err)
		}
	}
	unlock := lockLabs(labs...)
	defer unlock()
	for _, l := range labs {
		if len(l.Trunks) > 0 {
			return fmt.Errorf("join labs: lab %s is already joined to lab %s: join every lab in one call, once (a second link could close a loop)", l.Name, l.Trunks[0].Peer)
		}
	}
	// Record the plan first, so the state says what may exist even if this
	// process dies half way.
	for i, l := range labs {
		if i > 0 {
			l.Trunks = append(l.Trunks, trunkTo(l, labs[i-1]))
		}
		if i < len(labs)-1 {
			l.Trunks = append(l.Trunks, trunkTo(l, labs[i+1]))
		}
		for _, o := range labs {
			if o != l {
				l.Routes = append(l.Routes, o.Subnet)
			}
		}
	}
	var errs []error
	for _, l := range labs {
		if err := l.save(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err == nil {
		err = join(ctx, labs)
		if err == nil {
			slog.Debug("labs joined", "labs", labNames(labs))
			return nil
		}
		errs = []error{err}
	}
	errs = append(errs, unjoin(context.WithoutCancel(ctx), labs)...)
	return fmt.Errorf("join labs %s: %w", strings.Join(labNames(labs), ", "), errors.Join(errs...))
}

// checkJoin reports why labs cannot be joined, before anything is made.
func checkJoin(labs []*Lab) error {
	if len(labs) < 2 {
		return errors.New("join labs: give at least two labs")
	}
	if slices.Contains(labs, nil) {
		return errors.New("join labs: a lab is nil")
	}
	macs := make(map[string]string)
	for i, a := range labs {
		for _, b := range labs[:i] {
			if a.Name == b.Name {
				return fmt.Errorf("join labs: lab %s is given twice", a.Name)
			}
			if a.Subnet.Overlaps(b.Subnet) {
				return fmt.Errorf("join labs: lab %s's subnet %s overlaps lab %s's subnet %s: bring the labs up with distinct subnets (Config.Subnet, such as 10.83.47.0/24, 10.83.48.0/24, ...)", a.Name, a.Subnet, b.Name, b.Subnet)
			}
			if macBase(a.Name) == macBase(b.Name) {
				return fmt.Errorf("join labs: lab names %s and %s give the same MAC prefix: rename one of them", a.Name, b.Name)
			}
		}
		for _, ifc := range a.allInterfaces() {
			owner := a.Name + " " + ifc.Name
			if other, ok := macs[ifc.MAC]; ok {
				return fmt.Errorf("join labs: MAC %s belongs to both %s and %s: rename one of the labs", ifc.MAC, other, owner)
			}
			macs[ifc.MAC] = owner
		}
	}
	return nil
}

// allInterfaces returns every host interface plugged into a switch.
func (s *State) allInterfaces() []Interface {
	ifs := []Interface{s.Sensor.LAN}
	for _, e := range s.Endpoints {
		ifs = append(ifs, e.Interfaces...)
	}
	return ifs
}

// trunkTo describes l's end of the trunk between l and peer. A trunk port
// is named after the peer's MAC prefix, which Join has checked is unique.
func trunkTo(l, peer *Lab) Trunk {
	return Trunk{
		Port:          trunkPort(peer.Name),
		Peer:          peer.Name,
		PeerNamespace: peer.Switch.Namespace,
		PeerPort:      trunkPort(l.Name),
	}
}

func trunkPort(peer string) string {
	b := macBase(peer)
	return fmt.Sprintf("tk%02x%02x%02x", b[0], b[1], b[2])
}

// join makes the trunks and routes the labs' states record.
func join(ctx context.Context, labs []*Lab) error {
	for i, a := range labs[:len(labs)-1] {
		t := a.Trunks[len(a.Trunks)-1]
		sw, peer := a.Switch.Namespace, t.PeerNamespace
		if err := runAll(ctx, [][]string{
			{"ip", "-n", sw, "link", "add", t.Port, "type", "veth", "peer", "name", t.PeerPort, "netns", peer},
			{"ip", "-n", sw, "link", "set", t.Port, "master", BridgeName},
			{"ip", "-n", peer, "link", "set", t.PeerPort, "master", BridgeName},
			{"ip", "-n", sw, "link", "set", t.Port, "up"},
			{"ip", "-n", peer, "link", "set", t.PeerPort, "up"},
		}); err != nil {
			return fmt.Errorf("link lab %s's switch to lab %s's: %w", a.Name, labs[i+1].Name, err)
		}
	}
	for _, l := range labs {
		for _, r := range l.routeCommands("add") {
			if _, err := run(ctx, r[0], r[1:]...); err != nil {
				return fmt.Errorf("route lab %s's hosts to the other labs: %w", l.Name, err)
			}
		}
	}
	for _, l := range labs {
		ports := make([]string, 0, len(l.Trunks))
		for _, t := range l.Trunks {
			ports = append(ports, t.Port)
		}
		if err := waitPorts(ctx, l.Name, l.Switch.Namespace, ports, nil); err != nil {
			return err
		}
	}
	return nil
}

// routeCommands returns the ip commands that add or delete (verb) the
// on-link routes to l.Routes in every host of l.
func (l *Lab) routeCommands(verb string) [][]string {
	var cmds [][]string
	add := func(ns string, ifs []Interface) {
		for _, r := range l.Routes {
			for metric, ifc := range ifs {
				cmds = append(cmds, []string{"ip", "-n", ns, "route", verb, r.String(), "dev", ifc.Name, "metric", strconv.Itoa(metric)})
			}
		}
	}
	add(l.Sensor.Namespace, []Interface{l.Sensor.LAN})
	for _, e := range l.Endpoints {
		add(e.Namespace, e.Interfaces)
	}
	return cmds
}

// unjoin removes whatever part of the trunks and routes the labs' states
// record exists, and clears the records.
func unjoin(ctx context.Context, labs []*Lab) []error {
	var errs []error
	for _, l := range labs {
		for _, t := range l.Trunks {
			if !namespaceExists(l.Switch.Namespace) || !linkExists(ctx, l.Switch.Namespace, t.Port) {
				continue
			}
			// Deleting one end of a veth pair deletes the other.
			if _, err := run(ctx, "ip", "-n", l.Switch.Namespace, "link", "del", t.Port); err != nil && linkExists(ctx, l.Switch.Namespace, t.Port) {
				errs = append(errs, err)
			}
		}
		for _, r := range l.routeCommands("del") {
			// A route that was never added fails to delete: only a route
			// still there after the attempt is an error.
			if _, err := run(ctx, r[0], r[1:]...); err != nil && routeExists(ctx, r[2], r[5], r[7], r[9]) {
				errs = append(errs, err)
			}
		}
		l.Trunks, l.Routes = nil, nil
		if err := l.save(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func linkExists(ctx context.Context, ns, name string) bool {
	_, err := run(ctx, "ip", "-n", ns, "link", "show", "dev", name)
	return err == nil
}

func routeExists(ctx context.Context, ns, prefix, dev, metric string) bool {
	if !namespaceExists(ns) {
		return false
	}
	out, err := run(ctx, "ip", "-n", ns, "route", "show", prefix, "dev", dev, "metric", metric)
	return err == nil && out != ""
}

// lockLabs locks the network state of each distinct lab, in name order so
// concurrent calls cannot deadlock, and returns the unlock function.
func lockLabs(labs ...*Lab) (unlock func()) {
	ls := slices.Clone(labs)
	slices.SortFunc(ls, func(a, b *Lab) int { return cmp.Compare(a.Name, b.Name) })
	ls = slices.CompactFunc(ls, func(a, b *Lab) bool { return a == b })
	for _, l := range ls {
		l.netMu.Lock()
	}
	return func() {
		for _, l := range ls {
			l.netMu.Unlock()
		}
	}
}

func labNames(labs []*Lab) []string {
	names := make([]string, len(labs))
	for i, l := range labs {
		names[i] = l.Name
	}
	return names
}

// MovePort unplugs the switch-side port of a host's interface (counting
// from 0) from the switch it is plugged into and plugs it into to's switch,
// mirrored to to's span port, as when a laptop's cable moves to another
// switch: the host keeps its interface, MAC and address, and its carrier
// bounces. Moving it back to its own lab (to == l) restores the port's
// original name. The port's new switch is recorded in l's state file, and
// SetPortLink acts on it there.
//
// Once the port forwards, the host announces itself with a gratuitous ARP
// for its address, as a host does when its link comes up, so every
// switch of joined labs learns where its MAC is now. The labs need not be
// joined, but only joined labs let the host keep reaching the others.
//
// A port plugged into another lab's switch vanishes (and with it the
// host's interface) when that lab is taken down.
func (l *Lab) MovePort(ctx context.Context, host string, iface int, to *Lab) error {
	if to == nil {
		return fmt.Errorf("lab %s: move %s's port: no lab to move it to", l.Name, host)
	}
	unlock := lockLabs(l, to)
	defer unlock()
	ifc, err := l.hostInterface(host, iface)
	if err != nil {
		return err
	}
	from, dest := l.PortSwitch(*ifc), to.Switch.Namespace
	if from == dest {
		return fmt.Errorf("lab %s: %s %s is already plugged into lab %s's switch", l.Name, host, ifc.Name, to.Name)
	}
	// In another lab's switch the port's name is unique across labs: the
	// lab's MAC prefix and its home name. It carries that name in transit,
	// so it never clashes with a port of either switch.
	b := macBase(l.Name)
	transit := fmt.Sprintf("x%02x%02x%02x%s", b[0], b[1], b[2], homePort(host, iface))
	name := transit
	if to == l {
		name = homePort(host, iface)
	}
	hostNS, err := l.Namespace(host)
	if err != nil {
		return err
	}
	if err := movePort(ctx, from, ifc.Port, transit, dest, name, to.Switch.Span); err != nil {
		// Put the port back where it was, so the state stays true.
		back := context.WithoutCancel(ctx)
		errs := []error{err}
		switch {
		case linkExists(back, dest, name):
			errs = append(errs, movePort(back, dest, name, transit, from, ifc.Port, SpanPort))
		case linkExists(back, dest, transit):
			errs = append(errs, movePort(back, dest, transit, transit, from, ifc.Port, SpanPort))
		case transit != ifc.Port && linkExists(back, from, transit):
			if _, err := run(back, "ip", "-n", from, "link", "set", transit, "name", ifc.Port); err != nil {
				errs = append(errs, err)
				break
			}
			errs = append(errs, plugPort(back, from, ifc.Port, SpanPort))
		case linkExists(back, from, ifc.Port):
			errs = append(errs, plugPort(back, from, ifc.Port, SpanPort))
		}
		return fmt.Errorf("lab %s: move %s %s to lab %s's switch: %w", l.Name, host, ifc.Name, to.Name, errors.Join(errs...))
	}
	ifc.Port, ifc.Switch = name, dest
	if err := l.save(); err != nil {
		return err
	}
	if err := waitPorts(ctx, l.Name, dest, []string{name}, map[string][]string{hostNS: {ifc.Name}}); err != nil {
		return err
	}
	if err := l.SendFrames(host, iface, [][]byte{gratuitousARP(ifc.HardwareAddr(), ifc.Addr.Addr())}); err != nil {
		return fmt.Errorf("lab %s: announce %s %s on its new switch: %w", l.Name, host, ifc.Name, err)
	}
	slog.Debug("lab port moved", "lab", l.Name, "host", host, "interface", ifc.Name, "switch", dest, "port", name)
	return nil
}

// movePort unplugs bridge port name from the switch in namespace from and
// plugs it into the switch in namespace to as newName, mirrored to span. It
// crosses between the namespaces named transit, a name neither uses.
func movePort(ctx context.Context, from, name, transit, to, newName, span string) error {
	if err := runAll(ctx, [][]string{
		{"ip", "-n", from, "link", "set", name, "down"},
		{"ip", "-n", from, "link", "set", name, "nomaster"},
	}); err != nil {
		return err
	}
	// The old switch's mirror filter goes with the port's ingress qdisc.
	_, _ = run(ctx, "tc", "-n", from, "qdisc", "del", "dev", name, "ingress")
	steps := [][]string{}
	if name != transit {
		steps = append(steps, []string{"ip", "-n", from, "link", "set", name, "name", transit})
	}
	steps = append(steps, []string{"ip", "-n", from, "link", "set", transit, "netns", to})
	if newName != transit {
		steps = append(steps, []string{"ip", "-n", to, "link", "set", transit, "name", newName})
	}
	if err := runAll(ctx, steps); err != nil {
		return err
	}
	return plugPort(ctx, to, newName, span)
}

// plugPort adds an existing port in switch namespace sw to the bridge,
// mirrored to span before any frame can cross it, and brings it up.
func plugPort(ctx context.Context, sw, port, span string) error {
	_, _ = run(ctx, "tc", "-n", sw, "qdisc", "del", "dev", port, "ingress")
	return runAll(ctx, [][]string{
		{"ip", "-n", sw, "link", "set", port, "master", BridgeName},
		{"tc", "-n", sw, "qdisc", "add", "dev", port, "ingress"},
		{"tc", "-n", sw, "filter", "add", "dev", port, "parent", "ffff:", "protocol", "all",
			"u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", span},
		{"ip", "-n", sw, "link", "set", port, "up"},
	})
}

// gratuitousARP returns a broadcast ARP request announcing that addr is at
// mac.
func gratuitousARP(mac net.HardwareAddr, addr netip.Addr) []byte {
	f := make([]byte, 0, 42)
	f = append(f, broadcast...)
	f = append(f, mac...)
	f = binary.BigEndian.AppendUint16(f, 0x0806) // ARP
	f = binary.BigEndian.AppendUint16(f, 1)      // Ethernet
	f = binary.BigEndian.AppendUint16(f, 0x0800) // IPv4
	f = append(f, 6, 4)
	f = binary.BigEndian.AppendUint16(f, 1) // request
	ip := addr.As4()
	f = append(f, mac...)
	f = append(f, ip[:]...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	return append(f, ip[:]...)
}

var broadcast = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// PartitionTable is the nftables table Partition adds in a host's
// namespace.
const PartitionTable = "tapbeat_lab_partition"

// Partition drops all traffic between the named host and peers, both
// directions, with an nftables table (inet PartitionTable) inside the
// host's namespace, as when the WAN link between two sites is cut.
// Established connections are cut too: every packet is dropped, not only
// new connections. The host's own programs see their sends to peers
// refused (EPERM) where the kernel reports a local drop, as for ping and
// UDP; TCP retransmits until heal. heal removes the table; it is
// idempotent, and the table goes with the namespace when the lab is taken
// down. A host has one partition at a time: heal it before partitioning
// it again. Needs nft (Debian package nftables).
func (l *Lab) Partition(ctx context.Context, host string, peers ...netip.Addr) (heal func(context.Context) error, err error) {
	ns, err := l.Namespace(host)
	if err != nil {
		return nil, err
	}
	if len(peers) == 0 {
		return nil, fmt.Errorf("lab %s: partition %s: give at least one peer address", l.Name, host)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, fmt.Errorf("lab %s: partition needs nft on PATH (Debian package nftables): %w", l.Name, err)
	}
	var v4, v6 []string
	for _, p := range peers {
		switch p = p.WithZone("").Unmap(); {
		case !p.IsValid():
			return nil, fmt.Errorf("lab %s: partition %s: a peer address is invalid", l.Name, host)
		case p.Is4():
			v4 = append(v4, p.String())
		default:
			v6 = append(v6, p.String())
		}
	}
	if _, err := run(ctx, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", PartitionTable); err == nil {
		return nil, fmt.Errorf("lab %s: %s is already partitioned (nftables table inet %s): heal it first", l.Name, host, PartitionTable)
	}
	var rules strings.Builder
	fmt.Fprintf(&rules, "table inet %s {\n", PartitionTable)
	for _, c := range []struct{ hook, dir string }{{"input", "saddr"}, {"output", "daddr"}} {
		fmt.Fprintf(&rules, "\tchain %s {\n\t\ttype filter hook %s priority filter; policy accept;\n", c.hook, c.hook)
		if len(v4) > 0 {
			fmt.Fprintf(&rules, "\t\tip %s { %s } drop\n", c.dir, strings.Join(v4, ", "))
		}
		if len(v6) > 0 {
			fmt.Fprintf(&rules, "\t\tip6 %s { %s } drop\n", c.dir, strings.Join(v6, ", "))
		}
		rules.WriteString("\t}\n")
	}
	rules.WriteString("}\n")
	if _, err := runInput(ctx, strings.NewReader(rules.String()), "ip", "netns", "exec", ns, "nft", "-f", "-"); err != nil {
		return nil, fmt.Errorf("lab %s: partition %s from %s: %w", l.Name, host, strings.Join(append(v4, v6...), ", "), err)
	}
	slog.Debug("lab host partitioned", "lab", l.Name, "host", host, "peers", append(v4, v6...))
	return func(ctx context.Context) error {
		if !namespaceExists(ns) {
			return nil
		}
		_, err := run(ctx, "ip", "netns", "exec", ns, "nft", "delete", "table", "inet", PartitionTable)
		if err == nil {
			return nil
		}
		if _, lerr := run(ctx, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", PartitionTable); lerr != nil {
			return nil // already healed
		}
		return fmt.Errorf("lab %s: heal the partition of %s: %w", l.Name, host, err)
	}, nil
}
