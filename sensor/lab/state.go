package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// State describes everything a lab created. Up writes it to
// STATEDIR/NAME.json before creating anything, so a lab that crashed half
// way can still be torn down from it.
type State struct {
	// Name is the lab's name, the prefix of its namespaces.
	Name string `json:"name"`
	// Subnet is the lab's private IPv4 subnet.
	Subnet netip.Prefix `json:"subnet"`
	// Created is when Up started.
	Created time.Time `json:"created"`
	// StateDir is the directory holding the state file.
	StateDir string `json:"state_dir"`
	// Switch is the switch namespace.
	Switch Switch `json:"switch"`
	// Sensor is the sensor namespace.
	Sensor Sensor `json:"sensor"`
	// Endpoints are the endpoint namespaces, ep1 first.
	Endpoints []Endpoint `json:"endpoints"`
	// Trunks are the links Join made from this lab's switch to other labs'
	// switches.
	Trunks []Trunk `json:"trunks,omitempty"`
	// Routes are the other labs' subnets Join routed on-link in this lab's
	// hosts.
	Routes []netip.Prefix `json:"routes,omitempty"`
}

// Trunk describes a switch-to-switch link made by Join: a veth pair whose
// ends are bridge ports without a mirror filter, so frames crossing it
// are never copied to a span port.
type Trunk struct {
	// Port is the trunk's bridge port in this lab's switch.
	Port string `json:"port"`
	// Peer names the lab at the other end.
	Peer string `json:"peer"`
	// PeerNamespace is that lab's switch namespace.
	PeerNamespace string `json:"peer_namespace"`
	// PeerPort is the trunk's bridge port in that switch.
	PeerPort string `json:"peer_port"`
}

// Switch describes the switch namespace.
type Switch struct {
	// Namespace is the network namespace's name.
	Namespace string `json:"namespace"`
	// Bridge is the bridge interface acting as the switch.
	Bridge string `json:"bridge"`
	// Span is the switch's end of the mirror veth, where every frame
	// entering a host port is copied.
	Span string `json:"span"`
}

// Sensor describes the sensor namespace.
type Sensor struct {
	// Namespace is the network namespace's name.
	Namespace string `json:"namespace"`
	// LAN is the sensor's interface on the switch; the LAN-zone listener
	// binds LAN.Addr.
	LAN Interface `json:"lan"`
	// Mirror is the capture interface receiving the switch's mirror copy.
	Mirror string `json:"mirror"`
}

// Endpoint describes one endpoint namespace.
type Endpoint struct {
	// Name is the host name used with the Lab's methods: "ep1", "ep2", ...
	Name string `json:"name"`
	// Namespace is the network namespace's name.
	Namespace string `json:"namespace"`
	// Managed is false for an endpoint that runs no agent.
	Managed bool `json:"managed"`
	// Interfaces are the endpoint's interfaces, eth0 first.
	Interfaces []Interface `json:"interfaces"`
}

// Interface describes a host's interface plugged into the switch.
type Interface struct {
	// Name is the interface name inside the host's namespace.
	Name string `json:"name"`
	// Port is the bridge port it is plugged into.
	Port string `json:"port"`
	// Switch is the namespace of the switch holding Port: the lab's own
	// switch, or another lab's after MovePort. Empty (in state files
	// written before ports could move) means the lab's own switch.
	Switch string `json:"switch,omitempty"`
	// MAC is the interface's hardware address.
	MAC string `json:"mac"`
	// Addr is its IPv4 address with the subnet's prefix length.
	Addr netip.Prefix `json:"addr"`
	// LinkLocal is its IPv6 link-local address, zero when IPv6 is off.
	LinkLocal netip.Addr `json:"link_local,omitzero"`
}

// PortSwitch returns the namespace of the switch the interface's port is
// plugged into.
func (s *State) PortSwitch(i Interface) string {
	if i.Switch == "" {
		return s.Switch.Namespace
	}
	return i.Switch
}

// HardwareAddr returns the interface's MAC parsed.
func (i Interface) HardwareAddr() net.HardwareAddr {
	m, err := net.ParseMAC(i.MAC)
	if err != nil {
		return nil
	}
	return m
}

// Namespaces returns the names of all the lab's namespaces.
func (s *State) Namespaces() []string {
	ns := []string{s.Switch.Namespace, s.Sensor.Namespace}
	for _, e := range s.Endpoints {
		ns = append(ns, e.Namespace)
	}
	return ns
}

// Hosts returns the host names: "switch", "sensor", then the endpoints.
func (s *State) Hosts() []string {
	h := []string{HostSwitch, HostSensor}
	for _, e := range s.Endpoints {
		h = append(h, e.Name)
	}
	return h
}

// Namespace returns the namespace of the named host.
func (s *State) Namespace(host string) (string, error) {
	switch host {
	case HostSwitch:
		return s.Switch.Namespace, nil
	case HostSensor:
		return s.Sensor.Namespace, nil
	}
	e, err := s.Endpoint(host)
	if err != nil {
		return "", err
	}
	return e.Namespace, nil
}

// Endpoint returns the named endpoint ("ep1", ...).
func (s *State) Endpoint(name string) (*Endpoint, error) {
	for i := range s.Endpoints {
		if s.Endpoints[i].Name == name {
			return &s.Endpoints[i], nil
		}
	}
	return nil, fmt.Errorf("lab %s has no host %q: hosts are %s", s.Name, name, strings.Join(s.Hosts(), ", "))
}

// Interfaces returns the interfaces of the named host that are plugged into
// the switch: the sensor's LAN interface or an endpoint's interfaces.
func (s *State) Interfaces(host string) ([]Interface, error) {
	if host == HostSensor {
		return []Interface{s.Sensor.LAN}, nil
	}
	if host == HostSwitch {
		return nil, fmt.Errorf("lab %s: the switch has no host interfaces", s.Name)
	}
	e, err := s.Endpoint(host)
	if err != nil {
		return nil, err
	}
	return e.Interfaces, nil
}

// Addr returns the IPv4 address of the named host's first interface.
func (s *State) Addr(host string) (netip.Addr, error) {
	ifs, err := s.Interfaces(host)
	if err != nil {
		return netip.Addr{}, err
	}
	return ifs[0].Addr.Addr(), nil
}

// ListenAddr returns the sensor's LAN address with port: where the
// LAN-zone listener binds and where agents connect.
func (s *State) ListenAddr(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(s.Sensor.LAN.Addr.Addr(), port)
}

// StatePath returns the path of the state file of lab name in dir.
func StatePath(dir, name string) string {
	if dir == "" {
		dir = DefaultStateDir
	}
	return filepath.Join(dir, name+".json")
}

// ErrNoState is returned (wrapped) when a lab has no state file.
var ErrNoState = errors.New("no lab state file")

// save writes the state file atomically.
func (s *State) save() error {
	if err := os.MkdirAll(s.StateDir, 0o755); err != nil {
		return fmt.Errorf("create lab state directory: %w", err)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	path := StatePath(s.StateDir, s.Name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// ReadState reads the state file of lab name in dir (DefaultStateDir when
// empty). A missing file gives an error wrapping ErrNoState.
func ReadState(dir, name string) (*State, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	path := StatePath(dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("lab %s: %w at %s (is it up? was a different --state-dir used?)", name, ErrNoState, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("lab state file %s is corrupt (%v): remove the lab with its name prefix alone (tapbeat lab down --name %s)", path, err, name)
	}
	if st.Name != name {
		return nil, fmt.Errorf("lab state file %s names lab %q, not %q", path, st.Name, name)
	}
	if st.StateDir == "" {
		st.StateDir = filepath.Dir(path)
	}
	return &st, nil
}

// ListStates reads every state file in dir (DefaultStateDir when empty),
// sorted by name. A missing directory means no labs.
func ListStates(dir string) ([]*State, error) {
	if dir == "" {
		dir = DefaultStateDir
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list lab states: %w", err)
	}
	var out []*State
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() || ValidateName(name) != nil {
			continue
		}
		st, err := ReadState(dir, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}
