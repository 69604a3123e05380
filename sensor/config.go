package sensor

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Config holds the correlation rules. Zero fields take the defaults of
// DefaultConfig, which follow the real product (15 s heartbeats, missing
// after 3 intervals).
type Config struct {
	// HeartbeatInterval is how often endpoints heartbeat (default 15s).
	HeartbeatInterval time.Duration `toml:"heartbeat_interval" json:"heartbeat_interval"`
	// MissingAfter is how many consecutive intervals without a heartbeat
	// make an endpoint missing (if it sends) or offline (if silent) (default 3).
	MissingAfter int `toml:"missing_after" json:"missing_after"`
	// StartupGrace is how many intervals after the sensor starts no missing
	// and no no-heartbeat verdict is raised, so agents can reconnect (default 3).
	StartupGrace int `toml:"startup_grace" json:"startup_grace"`
	// ReconnectGrace: an endpoint whose agent's connection dropped without
	// a goodbye (EOF without TLS close_notify, a reset, a TLS error: what a
	// killed agent leaves) and whose MACs send after the drop is missing
	// once this long passed without the agent coming back, instead of after
	// missing_after intervals (default 3s, or half the missing deadline if
	// that is shorter). It must stay below the missing deadline.
	ReconnectGrace time.Duration `toml:"reconnect_grace" json:"reconnect_grace"`
	// NoHeartbeatAfter is how long a station must send traffic without an
	// enrolled endpoint claiming its MAC before no_heartbeat is raised
	// (default one heartbeat interval).
	NoHeartbeatAfter time.Duration `toml:"no_heartbeat_after" json:"no_heartbeat_after"`
	// MissingRealert is the escalation ladder: times since the last heartbeat
	// at which heartbeat_missing is raised (again) while the endpoint stays
	// missing and keeps sending. The first step is the missing deadline
	// itself (default 45s, 5m, 1h).
	MissingRealert []time.Duration `toml:"missing_realert" json:"missing_realert"`
	// DropThreshold is the fraction of frames the kernel may drop in one
	// report before the capture counts as blind (default 0.01).
	DropThreshold float64 `toml:"drop_threshold" json:"drop_threshold"`
	// QuietAfter: when endpoints heartbeat but the capture has seen no frame
	// at all for this long, the capture counts as blind (default 3 intervals).
	QuietAfter time.Duration `toml:"quiet_after" json:"quiet_after"`
	// DedupWindow is how long a policy violation or lateral movement alert
	// for the same pair is not repeated (default 5m).
	DedupWindow time.Duration `toml:"dedup_window" json:"dedup_window"`
	// Infrastructure lists MACs ("00:11:22:33:44:55") or OUI prefixes
	// ("00:00:5e:00:01", "00:11:22") of gateways, switches and printers: they
	// send traffic without heartbeating and are not alerted as no_heartbeat.
	Infrastructure []string `toml:"infrastructure" json:"infrastructure"`
	// Policies are the heartbeat policies, checked in order; the first rule
	// that matches a flow decides.
	Policies []Policy `toml:"policy" json:"policies"`
	// MaxTracked bounds the de-duplication tables and the unmanaged
	// inventory (default 100000 each).
	MaxTracked int `toml:"max_tracked" json:"max_tracked"`
	// SensorAddrs are the LAN-zone listener's own addresses. TCP flows to
	// them are the heartbeat channel: never policy violations or lateral
	// movement, but evidence of which MAC carries an agent's connection.
	SensorAddrs []netip.AddrPort `toml:"-" json:"-"`
}

// Policy is the tap-mode form of a firewall rule's minimum source and
// destination heartbeat: a flow the firewall would have blocked is reported.
type Policy struct {
	Name string `toml:"name" json:"name"`
	// Sources and Destinations are CIDRs; empty means any address.
	Sources      []string `toml:"sources" json:"sources,omitempty"`
	Destinations []string `toml:"destinations" json:"destinations,omitempty"`
	// Ports restricts the rule to these destination ports; empty means any.
	Ports []uint16 `toml:"ports" json:"ports,omitempty"`
	// MinSourceHealth and MinDestinationHealth apply to enrolled endpoints:
	// one below the minimum (missing, offline and unknown rank lowest)
	// violates the rule.
	MinSourceHealth      MinHealth `toml:"min_source_health" json:"min_source_health"`
	MinDestinationHealth MinHealth `toml:"min_destination_health" json:"min_destination_health"`
	// AlertSourceWithoutHeartbeat and AlertDestinationWithoutHeartbeat make a
	// flow from or to a host that is not enrolled a violation.
	AlertSourceWithoutHeartbeat      bool `toml:"alert_source_without_heartbeat" json:"alert_source_without_heartbeat"`
	AlertDestinationWithoutHeartbeat bool `toml:"alert_destination_without_heartbeat" json:"alert_destination_without_heartbeat"`
}

// DefaultConfig returns the defaults of the real product.
func DefaultConfig() Config {
	return Config{
		HeartbeatInterval: 15 * time.Second,
		MissingAfter:      3,
		StartupGrace:      3,
		ReconnectGrace:    3 * time.Second,
		NoHeartbeatAfter:  15 * time.Second,
		MissingRealert:    []time.Duration{45 * time.Second, 5 * time.Minute, time.Hour},
		DropThreshold:     0.01,
		QuietAfter:        45 * time.Second,
		DedupWindow:       5 * time.Minute,
		MaxTracked:        100000,
	}
}

// withDefaults fills zero fields from DefaultConfig. Fields that scale with
// the heartbeat interval follow a non-default interval.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.MissingAfter <= 0 {
		c.MissingAfter = d.MissingAfter
	}
	if c.StartupGrace < 0 {
		c.StartupGrace = 0
	} else if c.StartupGrace == 0 {
		c.StartupGrace = d.StartupGrace
	}
	if c.ReconnectGrace <= 0 {
		// Below the missing deadline however short a lab's interval is.
		c.ReconnectGrace = min(d.ReconnectGrace, c.HeartbeatInterval*time.Duration(c.MissingAfter)/2)
	}
	if c.NoHeartbeatAfter <= 0 {
		c.NoHeartbeatAfter = c.HeartbeatInterval
	}
	if len(c.MissingRealert) == 0 {
		deadline := c.HeartbeatInterval * time.Duration(c.MissingAfter)
		c.MissingRealert = []time.Duration{deadline, 5 * time.Minute, time.Hour}
	}
	if c.DropThreshold <= 0 {
		c.DropThreshold = d.DropThreshold
	}
	if c.QuietAfter <= 0 {
		c.QuietAfter = c.HeartbeatInterval * time.Duration(c.MissingAfter)
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = d.DedupWindow
	}
	if c.MaxTracked <= 0 {
		c.MaxTracked = d.MaxTracked
	}
	return c
}

// MissingDeadline is how long after its last heartbeat an endpoint is judged.
func (c Config) MissingDeadline() time.Duration {
	c = c.withDefaults()
	return c.HeartbeatInterval * time.Duration(c.MissingAfter)
}

// Validate checks the configuration and says what is wrong with it.
func (c Config) Validate() error {
	_, err := compile(c)
	return err
}

// compiled is a Config parsed into the forms the correlator uses.
type compiled struct {
	Config
	deadline  time.Duration
	infraMACs map[schema.MAC]struct{}
	infraOUIs [][]byte
	policies  []compiledPolicy
}

type compiledPolicy struct {
	Policy
	src, dst []netip.Prefix
	ports    map[uint16]struct{}
}

func compile(c Config) (*compiled, error) {
	var errs []error
	if c.MissingAfter < 0 {
		errs = append(errs, fmt.Errorf("missing_after %d: want a number of intervals of 1 or more (0 takes the default, 3)", c.MissingAfter))
	}
	if c.HeartbeatInterval < 0 {
		errs = append(errs, fmt.Errorf("heartbeat interval %v: want a positive duration such as 15s", c.HeartbeatInterval))
	}
	c = c.withDefaults()
	for i := 1; i < len(c.MissingRealert); i++ {
		if c.MissingRealert[i] <= c.MissingRealert[i-1] {
			errs = append(errs, fmt.Errorf("missing_realert: steps must increase, %v follows %v", c.MissingRealert[i], c.MissingRealert[i-1]))
		}
	}
	if deadline := c.HeartbeatInterval * time.Duration(c.MissingAfter); c.ReconnectGrace >= deadline {
		errs = append(errs, fmt.Errorf("reconnect_grace %v: want less than the missing deadline (%v = missing_after x heartbeat interval), or a dropped connection would never be judged sooner", c.ReconnectGrace, deadline))
	}
	if c.DropThreshold >= 1 {
		errs = append(errs, fmt.Errorf("drop_threshold %v: want a fraction between 0 and 1", c.DropThreshold))
	}
	out := &compiled{Config: c, deadline: c.HeartbeatInterval * time.Duration(c.MissingAfter), infraMACs: map[schema.MAC]struct{}{}}
	for _, s := range c.Infrastructure {
		if m, err := schema.ParseMAC(s); err == nil {
			out.infraMACs[m] = struct{}{}
			continue
		}
		prefix, err := parseMACPrefix(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("infrastructure %q: want a MAC or an OUI prefix such as 00:00:5e:00:01", s))
			continue
		}
		out.infraOUIs = append(out.infraOUIs, prefix)
	}
	names := map[string]bool{}
	for i, p := range c.Policies {
		label := p.Name
		if label == "" {
			label = fmt.Sprintf("#%d", i+1)
			p.Name = label
		}
		if names[p.Name] {
			errs = append(errs, fmt.Errorf("policy %s: name used twice", label))
		}
		names[p.Name] = true
		cp := compiledPolicy{Policy: p}
		var err error
		if cp.src, err = parsePrefixes(p.Sources); err != nil {
			errs = append(errs, fmt.Errorf("policy %s: sources: %w", label, err))
		}
		if cp.dst, err = parsePrefixes(p.Destinations); err != nil {
			errs = append(errs, fmt.Errorf("policy %s: destinations: %w", label, err))
		}
		if len(p.Ports) > 0 {
			cp.ports = make(map[uint16]struct{}, len(p.Ports))
			for _, port := range p.Ports {
				if port == 0 {
					errs = append(errs, fmt.Errorf("policy %s: port 0 is not a destination port", label))
				}
				cp.ports[port] = struct{}{}
			}
		}
		out.policies = append(out.policies, cp)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("correlation config: %w", errors.Join(errs...))
	}
	return out, nil
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if s == "any" {
			return nil, nil
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is neither an address nor a CIDR", s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func parseMACPrefix(s string) ([]byte, error) {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ':' || r == '-' })
	if len(parts) == 0 || len(parts) >= 6 {
		return nil, fmt.Errorf("bad prefix")
	}
	out := make([]byte, len(parts))
	for i, p := range parts {
		var b byte
		if _, err := fmt.Sscanf(p, "%02x", &b); err != nil || len(p) != 2 {
			return nil, fmt.Errorf("bad octet %q", p)
		}
		out[i] = b
	}
	return out, nil
}

func (c *compiled) isInfrastructure(m schema.MAC) bool {
	if _, ok := c.infraMACs[m]; ok {
		return true
	}
	for _, p := range c.infraOUIs {
		if string(m[:len(p)]) == string(p) {
			return true
		}
	}
	return false
}

func matchAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	if len(prefixes) == 0 {
		return true
	}
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
