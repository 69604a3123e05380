// Package config owns the LAN zone's part of the sensor's configuration file,
// DIR/tapbeat.toml: the [lanzone] table (addresses, port, heartbeat
// interval). Other tables in the file belong to other parts of the sensor;
// they are ignored on load and kept as they are on save.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tapbeat/tapbeat/lanzone/wire"
)

// FileName is the configuration file's name inside the sensor directory.
const FileName = "tapbeat.toml"

// DefaultPort is the LAN zone's TCP port.
const DefaultPort = wire.DefaultPort

// DefaultInterval is the heartbeat interval agents are told to use.
const DefaultInterval = 15 * time.Second

// LANZone is the [lanzone] table.
type LANZone struct {
	// Addresses are the sensor's LAN-zone IP addresses, in the order agents
	// try them.
	Addresses []string `toml:"addresses"`
	// Port is the TCP port the listener binds on every address (default 8347).
	Port int `toml:"port"`
	// HeartbeatInterval is the interval agents heartbeat at (default 15s).
	HeartbeatInterval time.Duration `toml:"heartbeat_interval"`
}

type file struct {
	LANZone LANZone `toml:"lanzone"`
}

// Path returns the configuration file's path in dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// WithDefaults fills zero fields with the defaults.
func (z LANZone) WithDefaults() LANZone {
	if z.Port == 0 {
		z.Port = DefaultPort
	}
	if z.HeartbeatInterval == 0 {
		z.HeartbeatInterval = DefaultInterval
	}
	return z
}

// Validate checks the table and says what is wrong with it.
func (z LANZone) Validate() error {
	var errs []error
	if len(z.Addresses) == 0 {
		errs = append(errs, errors.New("lanzone.addresses is empty: list the sensor's LAN-zone IP addresses, e.g. addresses = [\"10.0.0.2\"]"))
	}
	if err := z.ValidateValues(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ValidateValues checks every value that is set; unlike Validate it
// accepts an empty address list (the sensor may listen on addresses given
// another way).
func (z LANZone) ValidateValues() error {
	var errs []error
	for _, a := range z.Addresses {
		if _, err := netip.ParseAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("lanzone.addresses: %q is not an IP address", a))
		}
	}
	if z.Port < 0 || z.Port > 65535 {
		errs = append(errs, fmt.Errorf("lanzone.port %d: want 1-65535", z.Port))
	}
	if z.HeartbeatInterval < 0 || (z.HeartbeatInterval > 0 && (z.HeartbeatInterval < time.Second || z.HeartbeatInterval > time.Hour)) {
		errs = append(errs, fmt.Errorf("lanzone.heartbeat_interval %v: want between 1s and 1h", z.HeartbeatInterval))
	}
	return errors.Join(errs...)
}

// AddrPorts returns host:port strings for every address.
func (z LANZone) AddrPorts() []string {
	z = z.WithDefaults()
	out := make([]string, 0, len(z.Addresses))
	for _, a := range z.Addresses {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(ip, uint16(z.Port)).String())
	}
	return out
}

// Keys are the settings Set changes, as `tapbeat config set` names them.
var Keys = []string{"lan", "lan-port", "heartbeat-interval"}

// Set changes one setting, named as `tapbeat config set` names it:
// lan ADDR[,ADDR...], lan-port PORT or heartbeat-interval DURATION. A new
// address list also needs the sensor certificate re-issued for it, which
// is the caller's (it holds the authority).
func (z *LANZone) Set(key, value string) error {
	switch key {
	case "lan":
		addrs, err := ParseAddresses(value)
		if err != nil {
			return err
		}
		z.Addresses = addrs
	case "lan-port":
		p, err := strconv.Atoi(value)
		if err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("lan-port %q: want 1-65535", value)
		}
		z.Port = p
	case "heartbeat-interval":
		d, err := time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("heartbeat-interval %q: want a duration such as 15s", value)
		}
		if d < time.Second || d > time.Hour {
			return fmt.Errorf("heartbeat-interval %v: want between 1s and 1h", d)
		}
		z.HeartbeatInterval = d
	default:
		return fmt.Errorf("unknown key %q: want %s", key, strings.Join(Keys, ", "))
	}
	return nil
}

// ParseAddresses parses a comma-separated list of IP addresses.
func ParseAddresses(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		ip, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("LAN-zone address %q is not an IP address (want e.g. 10.0.0.2,192.168.1.2)", part)
		}
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		return nil, errors.New("no LAN-zone address given (want e.g. 10.0.0.2,192.168.1.2)")
	}
	return out, nil
}

// Load reads the [lanzone] table from dir's configuration file, with
// defaults filled in. Unknown tables are ignored.
func Load(dir string) (LANZone, error) {
	return LoadFile(Path(dir), dir)
}

// LoadFile reads the [lanzone] table from the configuration file at p, with
// defaults filled in; dir (the sensor directory) names the init command in
// the error for a missing file.
func LoadFile(p, dir string) (LANZone, error) {
	var f file
	if _, err := toml.DecodeFile(p, &f); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return LANZone{}, fmt.Errorf("read %s: no configuration: run `tapbeat init --dir %s` first", p, dir)
		}
		return LANZone{}, fmt.Errorf("read %s: %w", p, err)
	}
	if err := f.LANZone.Validate(); err != nil {
		return LANZone{}, fmt.Errorf("%s: %w", p, err)
	}
	return f.LANZone.WithDefaults(), nil
}

// Save writes the [lanzone] table into dir's configuration file, keeping
// every other table, atomically (write to a temporary file, then rename).
func Save(dir string, z LANZone) error {
	return SaveFile(Path(dir), z)
}

// SaveFile writes the [lanzone] table into the configuration file at p, as
// Save does.
func SaveFile(p string, z LANZone) error {
	if err := z.Validate(); err != nil {
		return err
	}
	doc := map[string]any{}
	if _, err := toml.DecodeFile(p, &doc); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s before updating it: %w", p, err)
	}
	table := map[string]any{"addresses": z.Addresses}
	if z.Port != 0 {
		table["port"] = z.Port
	}
	if z.HeartbeatInterval != 0 {
		table["heartbeat_interval"] = z.HeartbeatInterval.String()
	}
	doc["lanzone"] = table
	var buf bytes.Buffer
	buf.WriteString("# tapbeat sensor configuration. See README.md for every table.\n")
	if err := toml.NewEncoder(&buf).Encode(doc); err != nil {
		return fmt.Errorf("encode %s: %w", p, err)
	}
	return WriteFileAtomic(p, buf.Bytes(), 0o644)
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory, synced and renamed over path, so readers never see half a file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
