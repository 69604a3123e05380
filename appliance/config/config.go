// Package config owns the appliance's own settings: which NIC manages and
// which captures, how the management NIC gets its address, which disk holds
// the data and how tapbeat run is started. They come from appliance.toml in
// the sensor directory on the data disk (next to the daemon's tapbeat.toml)
// and from tapbeat.* kernel parameters, which override the file key by key.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
)

// DefaultLabel is the filesystem label of the data disk.
const DefaultLabel = "TAPBEAT-DATA"

// Config is the appliance section. The zero value plus defaults boots a
// sensor whose first NIC is managed by DHCP and whose other NICs capture.
type Config struct {
	// DataLabel is the filesystem label of the data disk (default TAPBEAT-DATA).
	DataLabel string `toml:"data_label"`
	// Format allows formatting an empty disk (no partition table, no
	// filesystem, all zeros at the start) as the data disk when none is found.
	Format bool `toml:"format"`
	// Org, when the data disk has no sensor directory yet, makes the first
	// boot create one: the organisation's CA and the LAN-zone certificate
	// for the management address, then a one-time administrator code.
	Org string `toml:"org"`
	// Hostname is the appliance's host name (default "tapbeat").
	Hostname string `toml:"hostname"`
	// Mgmt is the management NIC.
	Mgmt Mgmt `toml:"mgmt"`
	// Capture lists the MACs of the capture NICs. Empty means every NIC
	// other than the management NIC.
	Capture []string `toml:"capture"`
	// Listen are the LAN-zone listen addresses (default ":8347").
	Listen []string `toml:"listen"`
	// AdminListen is the admin API listen address (default ":8348").
	AdminListen string `toml:"admin_listen"`
	// Metrics is the Prometheus listen address (default "127.0.0.1:9347");
	// the status screen reads it.
	Metrics string `toml:"metrics"`
	// Syslog are the alert destinations passed to tapbeat run as --syslog.
	Syslog []string `toml:"syslog"`
	// LogSyslog, if set ("udp://host:514" or "tcp://host:514"), also sends
	// the init's and tapbeat's log lines there.
	LogSyslog string `toml:"log_syslog"`
	// Args are extra arguments appended to tapbeat run.
	Args []string `toml:"args"`
}

// Mgmt configures the management NIC.
type Mgmt struct {
	// MAC selects the NIC; empty means the first NIC by name.
	MAC string `toml:"mac"`
	// Address is "dhcp" (default) or a static ADDR/PREFIX.
	Address string `toml:"address"`
	// Gateway is the default gateway for a static address.
	Gateway string `toml:"gateway"`
	// DNS are name servers written to /etc/resolv.conf for a static address.
	DNS []string `toml:"dns"`
}

// Defaults returns c with empty fields set to their defaults.
func (c Config) Defaults() Config {
	if c.DataLabel == "" {
		c.DataLabel = DefaultLabel
	}
	if c.Hostname == "" {
		c.Hostname = "tapbeat"
	}
	if c.Mgmt.Address == "" {
		c.Mgmt.Address = "dhcp"
	}
	if len(c.Listen) == 0 {
		c.Listen = []string{":" + strconv.Itoa(lzconfig.DefaultPort)}
	}
	if c.AdminListen == "" {
		c.AdminListen = ":8348"
	}
	if c.Metrics == "" {
		c.Metrics = "127.0.0.1:9347"
	}
	return c
}

// DHCP reports whether the management NIC uses DHCP.
func (m Mgmt) DHCP() bool { return m.Address == "" || strings.EqualFold(m.Address, "dhcp") }

// Static returns the static address and gateway (the gateway may be invalid
// when none is configured).
func (m Mgmt) Static() (netip.Prefix, netip.Addr, error) {
	p, err := netip.ParsePrefix(m.Address)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("mgmt address %q: want dhcp or an IPv4 ADDR/PREFIX such as 192.0.2.10/24", m.Address)
	}
	var gw netip.Addr
	if m.Gateway != "" {
		if gw, err = netip.ParseAddr(m.Gateway); err != nil || !gw.Is4() {
			return netip.Prefix{}, netip.Addr{}, fmt.Errorf("mgmt gateway %q: want an IPv4 address", m.Gateway)
		}
	}
	return p, gw, nil
}

// Validate says everything that is wrong with c.
func (c Config) Validate() error {
	var errs []error
	macs := map[string]string{}
	check := func(what, s string) {
		hw, err := net.ParseMAC(s)
		if err != nil || len(hw) != 6 {
			errs = append(errs, fmt.Errorf("%s %q: want a MAC such as 52:54:00:12:34:56", what, s))
			return
		}
		if prev, ok := macs[hw.String()]; ok {
			errs = append(errs, fmt.Errorf("%s %s: already used as %s", what, s, prev))
		}
		macs[hw.String()] = what
	}
	if c.Mgmt.MAC != "" {
		check("mgmt mac", c.Mgmt.MAC)
	}
	for _, m := range c.Capture {
		check("capture mac", m)
	}
	if !c.Mgmt.DHCP() {
		if _, _, err := c.Mgmt.Static(); err != nil {
			errs = append(errs, err)
		}
	} else if c.Mgmt.Gateway != "" {
		errs = append(errs, fmt.Errorf("mgmt gateway %q is set but the address is dhcp: give a static address or drop the gateway", c.Mgmt.Gateway))
	}
	for _, d := range c.Mgmt.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			errs = append(errs, fmt.Errorf("mgmt dns %q: want an IP address", d))
		}
	}
	if c.LogSyslog != "" {
		if _, _, err := SplitURL(c.LogSyslog); err != nil {
			errs = append(errs, fmt.Errorf("log_syslog: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("appliance config: %w", errors.Join(errs...))
	}
	return nil
}

// SplitURL splits "udp://host:port" or "tcp://host:port" into network and address.
func SplitURL(u string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(u, "://")
	if !ok || (network != "udp" && network != "tcp") || addr == "" {
		return "", "", fmt.Errorf("%q: want udp://HOST:PORT or tcp://HOST:PORT", u)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("%q: %w", u, err)
	}
	return network, addr, nil
}

// FileName is the appliance settings file in the sensor directory.
const FileName = "appliance.toml"

// Parse reads an appliance.toml document. Unknown keys are an error so a
// misspelt key does not pass silently.
func Parse(data []byte) (Config, error) {
	var c Config
	md, err := toml.Decode(string(data), &c)
	if err != nil {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	var unknown []string
	for _, k := range md.Undecoded() {
		unknown = append(unknown, k.String())
	}
	if len(unknown) > 0 {
		return Config{}, fmt.Errorf("unknown keys %s (ISO.md lists the keys)", strings.Join(unknown, ", "))
	}
	return c, nil
}

// Load reads path; a missing file gives an empty Config and found=false.
func Load(path string) (c Config, found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, false, nil
	}
	if err != nil {
		return Config{}, false, fmt.Errorf("read appliance config: %w", err)
	}
	c, err = Parse(data)
	if err != nil {
		return Config{}, true, fmt.Errorf("%s: %w", path, err)
	}
	return c, true, nil
}

// Cmdline holds the tapbeat.* kernel parameters found on a command line.
type Cmdline struct {
	// Params maps each tapbeat.* parameter (without the prefix) to its value.
	Params map[string]string
}

// ParseCmdline extracts tapbeat.* parameters from /proc/cmdline text.
// Unknown tapbeat.* names are an error so a typo does not pass silently.
func ParseCmdline(s string) (Cmdline, error) {
	out := Cmdline{Params: map[string]string{}}
	var errs []error
	for _, f := range cmdlineFields(s) {
		name, ok := strings.CutPrefix(f, "tapbeat.")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(name, "=")
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		if _, known := cmdlineKeys[k]; !known {
			errs = append(errs, fmt.Errorf("kernel parameter tapbeat.%s is unknown (known: %s)", k, knownKeys()))
			continue
		}
		out.Params[k] = v
	}
	if len(errs) > 0 {
		return out, errors.Join(errs...)
	}
	return out, nil
}

var cmdlineKeys = map[string]string{
	"label":    "filesystem label of the data disk",
	"format":   "1 allows formatting an empty disk",
	"org":      "organisation: a first boot creates the sensor directory for it",
	"hostname": "host name",
	"mgmt":     "MAC of the management NIC",
	"ip":       "dhcp or ADDR/PREFIX[,GATEWAY[,DNS...]]",
	"capture":  "comma-separated MACs of the capture NICs",
	"listen":   "comma-separated LAN-zone listen addresses",
	"admin":    "admin API listen address",
	"syslog":   "comma-separated alert syslog URLs",
	"log":      "syslog URL for log lines",
}

func knownKeys() string {
	keys := []string{"label", "format", "org", "hostname", "mgmt", "ip", "capture", "listen", "admin", "syslog", "log"}
	return "tapbeat." + strings.Join(keys, ", tapbeat.")
}

// cmdlineFields splits a kernel command line as the kernel does: at
// spaces, except inside double quotes (tapbeat.org="Example Corp").
func cmdlineFields(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// Empty reports whether no tapbeat.* parameter was given.
func (k Cmdline) Empty() bool { return len(k.Params) == 0 }

// Apply returns c with every parameter given on the command line overriding
// the file's value.
func (k Cmdline) Apply(c Config) (Config, error) {
	var errs []error
	list := func(v string) []string {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	for key, v := range k.Params {
		switch key {
		case "label":
			c.DataLabel = v
		case "format":
			b, err := strconv.ParseBool(v)
			if v == "" {
				b, err = true, nil
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("tapbeat.format=%s: want 1 or 0", v))
			}
			c.Format = b
		case "org":
			c.Org = v
		case "hostname":
			c.Hostname = v
		case "mgmt":
			c.Mgmt.MAC = v
		case "ip":
			parts := list(v)
			if len(parts) == 0 {
				errs = append(errs, fmt.Errorf("tapbeat.ip is empty: want dhcp or ADDR/PREFIX[,GATEWAY[,DNS...]]"))
				continue
			}
			c.Mgmt.Address, c.Mgmt.Gateway, c.Mgmt.DNS = parts[0], "", nil
			if len(parts) > 1 {
				c.Mgmt.Gateway = parts[1]
			}
			if len(parts) > 2 {
				c.Mgmt.DNS = parts[2:]
			}
		case "capture":
			c.Capture = list(v)
		case "listen":
			c.Listen = list(v)
		case "admin":
			c.AdminListen = v
		case "syslog":
			c.Syslog = list(v)
		case "log":
			c.LogSyslog = v
		}
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	return c, nil
}

// RunArgs returns the arguments of tapbeat run for data directory dir and
// the capture interfaces by name.
func (c Config) RunArgs(dir string, captureIfaces []string) []string {
	c = c.Defaults()
	args := []string{"run", "--dir", dir}
	for _, i := range captureIfaces {
		args = append(args, "--capture", i)
	}
	for _, l := range c.Listen {
		args = append(args, "--listen", l)
	}
	args = append(args, "--admin-listen", c.AdminListen)
	for _, s := range c.Syslog {
		args = append(args, "--syslog", s)
	}
	if c.Metrics != "" {
		args = append(args, "--metrics", c.Metrics)
	}
	return append(args, c.Args...)
}
