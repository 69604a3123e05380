package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/run/netns"

// Lab is a running lab. Its State says what it is made of; its methods run
// commands, traffic and long-lived processes inside it. A Lab is safe for
// concurrent use.
type Lab struct {
	// State describes the lab; it is embedded so l.Addr("ep1") and
	// l.Namespace("sensor") work directly.
	State

	mu    sync.Mutex
	procs map[*Process]struct{}

	// netMu serialises the changes Join and MovePort make to the lab's
	// links and the reads of where a port is plugged in.
	netMu sync.Mutex
}

// Up creates the lab cfg describes: its namespaces, the switch with its
// mirror port, the sensor and the endpoints, and writes its state file. It
// fails if a lab of that name already exists. When creation fails half way
// everything already created is removed again.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	for _, prog := range []string{"ip", "tc", "ethtool"} {
		if _, err := exec.LookPath(prog); err != nil {
			return nil, fmt.Errorf("lab needs %s on PATH (Debian packages iproute2 and ethtool): %w", prog, err)
		}
	}
	path := StatePath(cfg.StateDir, cfg.Name)
	switch old, err := ReadState(cfg.StateDir, cfg.Name); {
	case err == nil && len(old.MissingNamespaces()) == len(old.Namespaces()):
		return nil, fmt.Errorf("lab %s: state file %s is left from a lab whose namespaces are gone: clear it first (tapbeat lab down --name %s)", cfg.Name, path, cfg.Name)
	case err == nil:
		return nil, fmt.Errorf("lab %s is already up (state file %s): take it down first (tapbeat lab down --name %s)", cfg.Name, path, cfg.Name)
	case !errors.Is(err, ErrNoState):
		return nil, err
	}
	left, err := prefixNamespaces(cfg.Name)
	if err != nil {
		return nil, err
	}
	if len(left) > 0 {
		return nil, fmt.Errorf("lab %s: namespaces %s are left from an earlier lab of that name: take it down first (tapbeat lab down --name %s)", cfg.Name, strings.Join(left, ", "), cfg.Name)
	}
	st := cfg.plan(time.Now())
	// The state file comes first so a crash part-way is still recoverable.
	if err := st.save(); err != nil {
		return nil, err
	}
	l := &Lab{State: st}
	var created []string
	if err := l.build(ctx, &created); err != nil {
		// Remove only what this call created: a namespace of the same name
		// made meanwhile by someone else is not ours to delete.
		errs := []error{err}
		errs = append(errs, removeNamespaces(context.WithoutCancel(ctx), created)...)
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove lab state: %w", rerr))
		}
		return nil, fmt.Errorf("bring lab %s up: %w", cfg.Name, errors.Join(errs...))
	}
	slog.Debug("lab up", "lab", st.Name, "endpoints", len(st.Endpoints), "state", path)
	return l, nil
}

// Load returns the lab named name from its state file in DefaultStateDir.
func Load(name string) (*Lab, error) { return LoadFrom(DefaultStateDir, name) }

// LoadFrom returns the lab named name from its state file in dir, after
// checking that its namespaces still exist.
func LoadFrom(dir, name string) (*Lab, error) {
	st, err := ReadState(dir, name)
	if err != nil {
		return nil, err
	}
	if missing := st.MissingNamespaces(); len(missing) > 0 {
		return nil, fmt.Errorf("lab %s is broken: namespaces %s are missing; take it down and up again", name, strings.Join(missing, ", "))
	}
	return &Lab{State: *st}, nil
}

// Down stops the processes the lab started and removes everything it
// created, as Teardown does. It is idempotent.
func (l *Lab) Down(ctx context.Context) error {
	l.mu.Lock()
	procs := make([]*Process, 0, len(l.procs))
	for p := range l.procs {
		procs = append(procs, p)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { _ = p.Stop() })
	}
	wg.Wait()
	return Teardown(ctx, l.StateDir, l.Name)
}

// Teardown removes lab name: every namespace its state file in dir lists
// and every namespace whose name starts with "name-", after stopping the
// processes running in them, then the state file. It works from the name
// alone when the state file is gone (after a crash), and does nothing when
// there is nothing left, so it is idempotent.
func Teardown(ctx context.Context, dir, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	var errs []error
	var nss []string
	st, err := ReadState(dir, name)
	switch {
	case err == nil:
		// Only names under the lab's prefix: a damaged state file must not
		// make Teardown delete someone else's namespace.
		for _, ns := range st.Namespaces() {
			if strings.HasPrefix(ns, name+"-") {
				nss = append(nss, ns)
			} else {
				errs = append(errs, fmt.Errorf("state file lists namespace %q outside the lab's prefix %q: left alone", ns, name+"-"))
			}
		}
	case !errors.Is(err, ErrNoState):
		// A corrupt state file: carry on from the prefix, then remove it.
		slog.Warn("lab state unreadable, removing the lab by its name prefix", "lab", name, "err", err)
	}
	left, err := prefixNamespaces(name)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range left {
		if !slices.Contains(nss, ns) {
			nss = append(nss, ns)
		}
	}
	errs = append(errs, removeNamespaces(ctx, nss)...)
	if err := os.Remove(StatePath(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove lab state: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("take lab %s down: %w", name, err)
	}
	return nil
}

// removeNamespaces stops the processes in each existing namespace of nss
// and deletes it (with the interfaces in it).
func removeNamespaces(ctx context.Context, nss []string) []error {
	var errs []error
	for _, ns := range nss {
		if !namespaceExists(ns) {
			continue
		}
		if err := stopNamespaceProcesses(ctx, ns); err != nil {
			errs = append(errs, err)
		}
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil && namespaceExists(ns) {
			errs = append(errs, err)
		}
	}
	return errs
}

// build creates everything State describes, appending each namespace to
// created before creating it.
func (l *Lab) build(ctx context.Context, created *[]string) error {
	sw, sens := l.Switch.Namespace, l.Sensor.Namespace
	for _, ns := range l.Namespaces() {
		if namespaceExists(ns) {
			return fmt.Errorf("network namespace %s already exists: another lab of the same name is being made", ns)
		}
		*created = append(*created, ns)
		if _, err := run(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
		if _, err := run(ctx, "ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	// The switch never sends a frame of its own: no IPv6 (router
	// solicitations, MLD) and no addresses.
	if err := sysctls(sw, map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
	}); err != nil {
		return err
	}
	// Duplicate address detection only delays the link-local addresses:
	// every MAC in the lab is distinct. arp_ignore/arp_announce keep each
	// address of a multi-homed endpoint on its own interface's MAC, and
	// ignore_routes_with_linkdown moves its traffic to the interface that
	// still has a link when one port goes down.
	hostSysctls := map[string]string{
		"net/ipv6/conf/all/accept_dad":                      "0",
		"net/ipv6/conf/default/accept_dad":                  "0",
		"net/ipv4/conf/all/arp_ignore":                      "1",
		"net/ipv4/conf/all/arp_announce":                    "2",
		"net/ipv4/conf/all/ignore_routes_with_linkdown":     "1",
		"net/ipv4/conf/default/ignore_routes_with_linkdown": "1",
	}
	for _, ns := range l.Namespaces()[1:] {
		if err := sysctls(ns, hostSysctls); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"ip", "-n", sw, "link", "add", BridgeName, "type", "bridge", "stp_state", "0", "mcast_snooping", "0"},
		{"ip", "-n", sw, "link", "set", BridgeName, "up"},
		{"ip", "-n", sw, "link", "add", SpanPort, "type", "veth", "peer", "name", MirrorInterface, "netns", sens},
	}
	if err := runAll(ctx, steps); err != nil {
		return err
	}
	// The capture side never transmits: no IPv6, no ARP, no address.
	if err := sysctls(sens, map[string]string{
		"net/ipv6/conf/" + MirrorInterface + "/disable_ipv6": "1",
	}); err != nil {
		return err
	}
	steps = [][]string{
		{"ip", "-n", sens, "link", "set", MirrorInterface, "arp", "off", "promisc", "on", "up"},
		{"ip", "-n", sw, "link", "set", SpanPort, "up"},
	}
	if err := runAll(ctx, steps); err != nil {
		return err
	}
	if err := l.plug(ctx, sens, l.Sensor.LAN); err != nil {
		return err
	}
	for _, e := range l.Endpoints {
		for _, ifc := range e.Interfaces {
			if err := l.plug(ctx, e.Namespace, ifc); err != nil {
				return err
			}
		}
	}
	return l.waitSwitching(ctx)
}

// plug creates a host interface and its bridge port, mirrored to the span
// port before any frame can cross it.
func (l *Lab) plug(ctx context.Context, hostNS string, ifc Interface) error {
	sw := l.Switch.Namespace
	return runAll(ctx, [][]string{
		{"ip", "-n", sw, "link", "add", ifc.Port, "type", "veth", "peer", "name", ifc.Name, "address", ifc.MAC, "netns", hostNS},
		{"ip", "-n", sw, "link", "set", ifc.Port, "master", BridgeName},
		{"tc", "-n", sw, "qdisc", "add", "dev", ifc.Port, "ingress"},
		{"tc", "-n", sw, "filter", "add", "dev", ifc.Port, "parent", "ffff:", "protocol", "all",
			"u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", SpanPort},
		{"ip", "-n", sw, "link", "set", ifc.Port, "up"},
		{"ip", "-n", hostNS, "addr", "add", ifc.Addr.String(), "dev", ifc.Name},
		// One segment per GSO packet and checksums computed by the host: the
		// mirror shows what a real switch port sees, not the 64 KiB TSO
		// super-frames and unfilled TCP/UDP checksums a veth would otherwise
		// carry.
		{"ip", "-n", hostNS, "link", "set", ifc.Name, "gso_max_segs", "1"},
		{"ip", "netns", "exec", hostNS, "ethtool", "-K", ifc.Name, "tx", "off"},
		{"ip", "-n", hostNS, "link", "set", ifc.Name, "up"},
	})
}

// SetMirrorLink takes the switch's span port down or up. The sensor's
// mirror interface stays administratively up and loses or regains its
// carrier, as when the mirror cable is pulled and plugged back in.
func (l *Lab) SetMirrorLink(ctx context.Context, up bool) error {
	_, err := run(ctx, "ip", "-n", l.Switch.Namespace, "link", "set", SpanPort, upDown(up))
	return err
}

// SetPortLink takes the bridge port of a host's interface (iface counts
// from 0) down or up: the host's interface loses or regains its carrier.
// It acts on the switch the port is plugged into now (see MovePort).
func (l *Lab) SetPortLink(ctx context.Context, host string, iface int, up bool) error {
	l.netMu.Lock()
	defer l.netMu.Unlock()
	ifc, err := l.hostInterface(host, iface)
	if err != nil {
		return err
	}
	_, err = run(ctx, "ip", "-n", l.PortSwitch(*ifc), "link", "set", ifc.Port, upDown(up))
	return err
}

// hostInterface returns the state's record of a host's interface (counting
// from 0), to read or update.
func (l *Lab) hostInterface(host string, iface int) (*Interface, error) {
	var ifs []Interface
	switch host {
	case HostSensor:
		ifs = []Interface{l.Sensor.LAN}
	case HostSwitch:
		return nil, fmt.Errorf("lab %s: the switch has no host interfaces", l.Name)
	default:
		e, err := l.Endpoint(host)
		if err != nil {
			return nil, err
		}
		ifs = e.Interfaces
	}
	if iface < 0 || iface >= len(ifs) {
		return nil, fmt.Errorf("lab %s: host %s has %d interfaces, no interface %d", l.Name, host, len(ifs), iface)
	}
	if host == HostSensor {
		return &l.Sensor.LAN, nil
	}
	return &ifs[iface], nil
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// prefixNamespaces lists the existing namespaces belonging to lab name.
func prefixNamespaces(name string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func namespaceExists(ns string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, ns))
	return err == nil
}

// stopNamespaceProcesses stops the processes running in namespace ns
// (other than this one): SIGTERM, then SIGKILL for those still there after
// a grace period.
func stopNamespaceProcesses(ctx context.Context, ns string) error {
	const grace = 3 * time.Second
	deadline := time.Now().Add(grace)
	signalled := false
	for {
		pids, err := namespacePIDs(ctx, ns)
		if err != nil || len(pids) == 0 {
			return err
		}
		sig := syscall.SIGTERM
		if time.Now().After(deadline) {
			sig = syscall.SIGKILL
		} else if signalled {
			sig = 0
		}
		for _, pid := range pids {
			if sig != 0 {
				slog.Debug("stopping lab process", "namespace", ns, "pid", pid, "signal", sig)
				_ = kill(pid, sig)
			}
		}
		signalled = true
		if sig == syscall.SIGKILL {
			time.Sleep(100 * time.Millisecond)
			pids, err := namespacePIDs(ctx, ns)
			if err != nil {
				return err
			}
			if len(pids) > 0 {
				return fmt.Errorf("processes %v in namespace %s survived SIGKILL", pids, ns)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// namespacePIDs lists the processes whose network namespace is ns,
// excluding this process.
func namespacePIDs(ctx context.Context, ns string) ([]int, error) {
	out, err := run(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		if !namespaceExists(ns) {
			return nil, nil
		}
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid == os.Getpid() {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// sysctls writes network sysctls (keys relative to /proc/sys, with '/')
// inside namespace ns.
func sysctls(ns string, kv map[string]string) error {
	return do(ns, func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0); err != nil {
				return fmt.Errorf("set sysctl %s=%s in namespace %s: %w", strings.ReplaceAll(k, "/", "."), v, ns, err)
			}
		}
		return nil
	})
}

func runAll(ctx context.Context, cmds [][]string) error {
	for _, c := range cmds {
		if _, err := run(ctx, c[0], c[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// run runs a program and returns its trimmed output; the error carries
// the command line and its output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	return runInput(ctx, nil, name, args...)
}

// runInput is run with stdin as the program's standard input.
func runInput(ctx context.Context, stdin io.Reader, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		err = fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
		if msg := strings.TrimSpace(out.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return "", err
	}
	return strings.TrimSpace(out.String()), nil
}
