package lab

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"time"
)

// DefaultStateDir is where state files are kept unless Config.StateDir says
// otherwise.
const DefaultStateDir = "/run/tapbeat-lab"

// DefaultSubnet returns the lab's private IPv4 subnet unless Config.Subnet
// says otherwise: 10.83.47.0/24. It exists only inside the lab's namespaces.
func DefaultSubnet() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 83, 47, 0}), 24)
}

// Host names every lab has besides its endpoints.
const (
	// HostSwitch is the namespace holding the bridge.
	HostSwitch = "switch"
	// HostSensor is the sensor's namespace.
	HostSensor = "sensor"
)

// Interface names inside the lab's namespaces. They are the same in every
// lab: each lab's interfaces live in its own namespaces.
const (
	// BridgeName is the bridge (the switch) in the switch namespace.
	BridgeName = "br0"
	// SpanPort is the switch's end of the mirror veth.
	SpanPort = "span"
	// MirrorInterface is the sensor's capture interface, the mirror veth's
	// other end.
	MirrorInterface = "mirror0"
	// SensorLAN is the sensor's LAN interface.
	SensorLAN = "lan0"
	// sensorPort is the bridge port the sensor's LAN interface is plugged into.
	sensorPort = "sensor"
)

// MaxInterfaces is the most interfaces an endpoint can have.
const MaxInterfaces = 2

// EndpointSpec describes one endpoint to create.
type EndpointSpec struct {
	// Interfaces is how many interfaces (and bridge ports) the endpoint has:
	// 1 (the default when 0) or 2 for a multi-homed endpoint.
	Interfaces int
	// Unmanaged marks an endpoint that runs no agent. The lab only records
	// it; it is for the tests and demos that start agents.
	Unmanaged bool
}

// Config describes a lab to bring up.
type Config struct {
	// Name names the lab and prefixes its namespaces ("NAME-switch", ...).
	// It must match [a-z][a-z0-9_]{0,31}; parallel test runs use
	// testenv.UniqueName so they never collide.
	Name string
	// Subnet is the private IPv4 /24 (or larger prefix, /16 to /24) the
	// lab's hosts get addresses from. Zero means DefaultSubnet.
	Subnet netip.Prefix
	// Endpoints lists the endpoints to create, ep1 first. Nil means three
	// single-homed managed endpoints.
	Endpoints []EndpointSpec
	// StateDir is where the state file NAME.json is written. Empty means
	// DefaultStateDir.
	StateDir string
}

// Endpoints returns n single-homed managed endpoint specs.
func Endpoints(n int) []EndpointSpec {
	return make([]EndpointSpec, n)
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// ValidateName reports whether name can name a lab.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("lab name %q is invalid: use 1 to 32 characters from a-z, 0-9 and '_', starting with a letter (no '-', which separates the name from the host in namespace names)", name)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet()
	}
	if c.Endpoints == nil {
		c.Endpoints = Endpoints(3)
	} else {
		c.Endpoints = append([]EndpointSpec(nil), c.Endpoints...)
	}
	for i := range c.Endpoints {
		if c.Endpoints[i].Interfaces == 0 {
			c.Endpoints[i].Interfaces = 1
		}
	}
	c.Subnet = c.Subnet.Masked()
	return c
}

// Host numbers in the lab's subnet: the sensor gets 1, endpoint
// interfaces firstHost up to lastStatic, and a DHCP server (StartDHCPServer)
// leases dhcpFirst to dhcpLast.
const (
	firstHost  = 11
	lastStatic = 199
	dhcpFirst  = 200
	dhcpLast   = 250
)

// Validate reports the first problem with the configuration, after
// defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := ValidateName(c.Name); err != nil {
		return err
	}
	if !c.Subnet.Addr().Is4() || c.Subnet.Bits() < 16 || c.Subnet.Bits() > 24 {
		return fmt.Errorf("lab subnet %s is invalid: use an IPv4 prefix from /16 to /24, such as %s", c.Subnet, DefaultSubnet())
	}
	if !c.Subnet.Addr().IsPrivate() {
		return fmt.Errorf("lab subnet %s is not private (RFC 1918): use one that exists only inside the lab, such as %s", c.Subnet, DefaultSubnet())
	}
	if len(c.Endpoints) == 0 {
		return errors.New("lab needs at least one endpoint")
	}
	total := 0
	for i, e := range c.Endpoints {
		if e.Interfaces < 1 || e.Interfaces > MaxInterfaces {
			return fmt.Errorf("endpoint ep%d: %d interfaces requested, but an endpoint has 1 to %d", i+1, e.Interfaces, MaxInterfaces)
		}
		total += e.Interfaces
	}
	if max := lastStatic - firstHost + 1; total > max {
		return fmt.Errorf("lab needs %d endpoint addresses but %s leaves room for %d: use fewer endpoints", total, c.Subnet, max)
	}
	return nil
}

// plan computes the state of the lab the configuration describes, before
// anything is created.
func (c Config) plan(now time.Time) State {
	c = c.withDefaults()
	st := State{
		Name:     c.Name,
		Subnet:   c.Subnet,
		Created:  now.UTC(),
		StateDir: c.StateDir,
		Switch: Switch{
			Namespace: namespace(c.Name, HostSwitch),
			Bridge:    BridgeName,
			Span:      SpanPort,
		},
	}
	base := macBase(c.Name)
	addr := func(n int) netip.Prefix { return netip.PrefixFrom(hostAddr(c.Subnet, n), c.Subnet.Bits()) }
	sensorMAC := makeMAC(base, 0, 0)
	st.Sensor = Sensor{
		Namespace: namespace(c.Name, HostSensor),
		Mirror:    MirrorInterface,
		LAN: Interface{
			Name:   SensorLAN,
			Port:   sensorPort,
			Switch: st.Switch.Namespace,
			MAC:    sensorMAC.String(),
			Addr:   addr(1),
		},
	}
	st.Sensor.LAN.LinkLocal = linkLocal(sensorMAC)
	n := firstHost
	for i, spec := range c.Endpoints {
		host := "ep" + strconv.Itoa(i+1)
		ep := Endpoint{
			Name:      host,
			Namespace: namespace(c.Name, host),
			Managed:   !spec.Unmanaged,
		}
		for j := 0; j < spec.Interfaces; j++ {
			mac := makeMAC(base, i+1, j)
			ep.Interfaces = append(ep.Interfaces, Interface{
				Name:      "eth" + strconv.Itoa(j),
				Port:      homePort(host, j),
				Switch:    st.Switch.Namespace,
				MAC:       mac.String(),
				Addr:      addr(n),
				LinkLocal: linkLocal(mac),
			})
			n++
		}
		st.Endpoints = append(st.Endpoints, ep)
	}
	return st
}

func namespace(lab, host string) string { return lab + "-" + host }

// homePort names the bridge port of a host's interface (counting from 0)
// in its own lab's switch.
func homePort(host string, iface int) string {
	if host == HostSensor {
		return sensorPort
	}
	return host + "p" + strconv.Itoa(iface)
}

// macBase derives three bytes from the lab name so different labs get
// different (locally administered, unicast) MACs, which keeps captures from
// different labs apart.
func macBase(name string) [3]byte {
	h := fnv.New32a()
	h.Write([]byte(name))
	s := h.Sum32()
	return [3]byte{byte(s >> 16), byte(s >> 8), byte(s)}
}

func makeMAC(base [3]byte, host, iface int) net.HardwareAddr {
	return net.HardwareAddr{0x02, base[0], base[1], base[2], byte(host), byte(iface)}
}

// linkLocal is the EUI-64 IPv6 link-local address the kernel derives from
// mac (addrgenmode eui64, the default).
func linkLocal(mac net.HardwareAddr) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8] = mac[0] ^ 0x02
	b[9], b[10] = mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b)
}

// hostAddr returns host number n of subnet.
func hostAddr(subnet netip.Prefix, n int) netip.Addr {
	a := subnet.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
