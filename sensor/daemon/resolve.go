package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
)

// Setting is one configuration value a command-line flag or an environment
// variable can set over the file. Settings lists them all; the run command
// builds its flags from it and Resolve applies them, so a flag, its
// variable and its meaning are written down once.
type Setting struct {
	// Flag is the flag's name without dashes; Env the variable's name.
	Flag, Env string
	// Usage documents the flag; Placeholder names its value.
	Usage, Placeholder string
	// List settings repeat (flags) or separate values with commas (environment).
	List bool
	// apply parses the values into the configuration.
	apply func(c *Config, vals []string) error
}

// Settings returns every setting flags and environment variables override,
// in the order they are applied.
func Settings() []Setting {
	return []Setting{
		{Flag: "capture", Env: "TAPBEAT_CAPTURE", Placeholder: "IFACE", List: true,
			Usage: "mirror-port interface to capture on (repeatable)",
			apply: func(c *Config, v []string) error { c.Capture.Interfaces = v; return nil }},
		{Flag: "listen", Env: "TAPBEAT_LISTEN", Placeholder: "ADDR:PORT", List: true,
			Usage: fmt.Sprintf("LAN-zone address to bind, IP:PORT or :PORT for every address (repeatable; default lanzone.addresses on lanzone.port, %d)", lzconfig.DefaultPort),
			apply: func(c *Config, v []string) error { c.Listen = v; return nil }},
		{Flag: "syslog", Env: "TAPBEAT_SYSLOG", Placeholder: "URL", List: true,
			Usage: "syslog destination: udp://, tcp://, tls://, relp:// or relp+tls:// with ?format=&min_severity=&types=... (repeatable)",
			apply: func(c *Config, v []string) error { c.Alerts.Syslog = v; return nil }},
		{Flag: "heartbeat-interval", Env: "TAPBEAT_HEARTBEAT_INTERVAL", Placeholder: "DURATION",
			Usage: "heartbeat interval agents are told to use and the correlator judges by (default 15s)",
			apply: func(c *Config, v []string) error {
				d, err := time.ParseDuration(v[0])
				if err != nil {
					return errors.New("want a duration such as 15s")
				}
				if d <= 0 {
					return errors.New("want a positive duration between 1s and 1h, such as 15s")
				}
				c.LANZone.HeartbeatInterval = d
				return nil
			}},
		{Flag: "missing-after", Env: "TAPBEAT_MISSING_AFTER", Placeholder: "N",
			Usage: "missed intervals before an endpoint whose MACs send is missing (default 3)",
			apply: func(c *Config, v []string) error {
				n, err := strconv.Atoi(v[0])
				if err != nil || n < 1 {
					return errors.New("want a whole number of intervals, 1 or more")
				}
				c.Correlation.MissingAfter = n
				return nil
			}},
		{Flag: "api", Env: "TAPBEAT_API", Placeholder: "SOCKET",
			Usage: "local API Unix socket (default DIR/tapbeat.sock)",
			apply: func(c *Config, v []string) error { c.API.Socket = v[0]; return nil }},
		{Flag: "admin-listen", Env: "TAPBEAT_ADMIN_LISTEN", Placeholder: "HOST:PORT",
			Usage: "mutual-TLS admin API address on the management network",
			apply: func(c *Config, v []string) error { c.API.AdminListen = v[0]; return nil }},
		{Flag: "metrics", Env: "TAPBEAT_METRICS", Placeholder: "HOST:PORT",
			Usage: "Prometheus /metrics and /healthz address",
			apply: func(c *Config, v []string) error { c.Metrics.Listen = v[0]; return nil }},
		{Flag: "web", Env: "TAPBEAT_WEB", Placeholder: "HOST:PORT",
			Usage: "operator console and REST API over HTTPS (certificate issued from the organisation's CA)",
			apply: func(c *Config, v []string) error { c.Console.Web = v[0]; return nil }},
		{Flag: "web-cert", Env: "TAPBEAT_WEB_CERT", Placeholder: "FILE",
			Usage: "console certificate the organisation already has (with --web-key)",
			apply: func(c *Config, v []string) error { c.Console.WebCert = v[0]; return nil }},
		{Flag: "web-key", Env: "TAPBEAT_WEB_KEY", Placeholder: "FILE",
			Usage: "console key (with --web-cert)",
			apply: func(c *Config, v []string) error { c.Console.WebKey = v[0]; return nil }},
	}
}

// Sources are where a configuration comes from, strongest first: flags,
// environment, the file, defaults.
type Sources struct {
	// Dir is the state directory.
	Dir string
	// Path is the configuration file; "" means DIR/tapbeat.toml.
	Path string
	// Flags holds the values of the flags given on the command line, by
	// Setting.Flag.
	Flags map[string][]string
	// Env looks up an environment variable (os.LookupEnv); nil means none.
	Env func(string) (string, bool)
}

// Resolved is the one configuration every part of the sensor runs with:
// defaults filled in, flags and environment applied, every value checked.
type Resolved struct {
	Config
	// Path is the configuration file it was read from.
	Path string
	// Bind lists the LAN-zone addresses to bind: --listen, or every
	// lanzone.addresses entry on lanzone.port. An unspecified address
	// (from ":PORT") binds every address of the host.
	Bind []netip.AddrPort
	// BindFixed says Bind came from --listen or TAPBEAT_LISTEN: the
	// listener keeps it when lanzone.addresses change.
	BindFixed bool
}

// LANPort is the LAN zone's TCP port, which capture uses to recognise
// heartbeat connections.
func (r Resolved) LANPort() int {
	if len(r.Bind) > 0 {
		return int(r.Bind[0].Port())
	}
	return r.LANZone.WithDefaults().Port
}

// BindSpecs returns Bind as listen addresses, ":PORT" for every address.
func (r Resolved) BindSpecs() []string {
	out := make([]string, len(r.Bind))
	for i, ap := range r.Bind {
		if ap.Addr().IsUnspecified() {
			out[i] = ":" + strconv.Itoa(int(ap.Port()))
		} else {
			out[i] = ap.String()
		}
	}
	return out
}

// Resolve reads the file, applies environment variables over it and flags
// over those, fills the defaults and checks every value. An error names
// where the bad value came from: the flag, the variable, or the file and
// line.
func Resolve(src Sources) (Resolved, error) {
	path := src.Path
	if path == "" {
		path = filepath.Join(src.Dir, lzconfig.FileName)
	}
	cfg, err := LoadConfig(path)
	if errors.Is(err, os.ErrNotExist) {
		if src.Path == "" {
			return Resolved{}, fmt.Errorf("no configuration at %s: run `tapbeat init --dir %s --org NAME --lan ADDR` first", path, src.Dir)
		}
		return Resolved{}, fmt.Errorf("configuration file %s does not exist (given with --config or TAPBEAT_CONFIG)", path)
	}
	if err != nil {
		return Resolved{}, err
	}
	for _, s := range Settings() {
		vals, from, ok := s.lookup(src)
		if !ok {
			continue
		}
		if err := s.apply(&cfg, vals); err != nil {
			return Resolved{}, fmt.Errorf("%s %q: %w", from, strings.Join(vals, ","), err)
		}
		// The file passed these checks, so a failure now is this value's.
		if err := cfg.Validate(); err != nil {
			return Resolved{}, fmt.Errorf("%s: %w", from, err)
		}
	}
	r := Resolved{Config: cfg.WithDefaults(src.Dir), Path: path}
	if len(r.Listen) > 0 {
		r.BindFixed = true
		for _, l := range r.Listen {
			ap, err := parseBind(l)
			if err != nil {
				return Resolved{}, fmt.Errorf("listen %q: %w", l, err)
			}
			r.Bind = append(r.Bind, ap)
		}
	} else {
		if len(r.LANZone.Addresses) == 0 {
			return Resolved{}, fmt.Errorf("the LAN zone has no address: set lanzone.addresses in %s (tapbeat config set lan ADDR) or pass --listen", path)
		}
		for _, a := range r.LANZone.AddrPorts() {
			r.Bind = append(r.Bind, netip.MustParseAddrPort(a))
		}
	}
	for _, b := range r.Bind[1:] {
		if b.Port() != r.Bind[0].Port() {
			return Resolved{}, fmt.Errorf("the LAN zone listens on one port, but the listen addresses name %d and %d: use one port everywhere", r.Bind[0].Port(), b.Port())
		}
	}
	return r, nil
}

// lookup returns the setting's values from a flag, else the environment,
// and names where they came from.
func (s Setting) lookup(src Sources) ([]string, string, bool) {
	if v, ok := src.Flags[s.Flag]; ok && len(v) > 0 {
		return s.rejoin(v), "flag --" + s.Flag, true
	}
	if src.Env == nil {
		return nil, "", false
	}
	raw, ok := src.Env(s.Env)
	if !ok || strings.TrimSpace(raw) == "" {
		return nil, "", false
	}
	from := "environment " + s.Env
	if !s.List {
		return []string{strings.TrimSpace(raw)}, from, true
	}
	vals := s.rejoin(strings.Split(raw, ","))
	return vals, from, len(vals) > 0
}

// rejoin trims comma-separated pieces and drops empty ones. For URLs, a
// piece without a scheme is the rest of the URL before it, cut at a comma
// inside it (types=a,b): the command-line parser splits repeated flags at
// commas too.
func (s Setting) rejoin(parts []string) []string {
	var vals []string
	for _, part := range parts {
		part = strings.TrimSpace(part)
		switch {
		case part == "":
		case len(vals) > 0 && s.Flag == "syslog" && !strings.Contains(part, "://"):
			vals[len(vals)-1] += "," + part
		default:
			vals = append(vals, part)
		}
	}
	return vals
}

// parseBind parses IP:PORT, [IPv6]:PORT or :PORT (every address).
func parseBind(s string) (netip.AddrPort, error) {
	if p, ok := strings.CutPrefix(s, ":"); ok {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return netip.AddrPort{}, errors.New("want IP:PORT or :PORT with a port of 1-65535")
		}
		return netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(n)), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, errors.New("want IP:PORT or :PORT (an IP address, not a host name, and a port of 1-65535)")
	}
	return ap, nil
}
