package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/BurntSushi/toml"

	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
)

// DefaultPort is the fleet port: NATS cluster routes between sensors.
const DefaultPort = 7422

// DefaultClientPort is the embedded node's client port, bound to loopback.
const DefaultClientPort = 7423

// Config is the [fleet] table of DIR/tapbeat.toml.
type Config struct {
	// Name is this sensor's name in the fleet (its fleet certificate's CN).
	Name string `toml:"name"`
	// Addr is HOST:PORT the node's cluster routes listen on; other sensors
	// reach it there.
	Addr string `toml:"addr"`
	// Peers are the other sensors' fleet addresses, HOST:PORT.
	Peers []string `toml:"peers"`
	// ClientPort is the embedded node's client port on 127.0.0.1.
	ClientPort int `toml:"client_port"`
	// NATSURL points at an operator's NATS cluster instead of an embedded
	// node; Credentials is its .creds file.
	NATSURL     string `toml:"nats_url"`
	Credentials string `toml:"credentials"`
	// Replicas overrides the replica count of the fleet's streams and
	// buckets (default: 3 with three or more sensors, else the fleet size).
	Replicas int `toml:"replicas"`
}

// Enabled reports whether the table configures a fleet at all.
func (c Config) Enabled() bool { return c.Addr != "" || c.NATSURL != "" }

// External reports whether the sensor uses an operator's NATS cluster.
func (c Config) External() bool { return c.NATSURL != "" }

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.ClientPort == 0 {
		c.ClientPort = DefaultClientPort
	}
	return c
}

// Validate says what is wrong with the table.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("fleet.name is empty: every fleet sensor needs a name (tapbeat fleet add --name)"))
	}
	if !c.External() {
		if _, _, err := SplitAddr(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("fleet.addr: %w", err))
		}
	}
	for _, p := range c.Peers {
		if _, _, err := SplitAddr(p); err != nil {
			errs = append(errs, fmt.Errorf("fleet.peers: %w", err))
		}
		if p == c.Addr {
			errs = append(errs, fmt.Errorf("fleet.peers lists this sensor's own address %s", p))
		}
	}
	if c.ClientPort < 0 || c.ClientPort > 65535 {
		errs = append(errs, fmt.Errorf("fleet.client_port %d: want 1-65535", c.ClientPort))
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("fleet.replicas %d: want 1-5", c.Replicas))
	}
	return errors.Join(errs...)
}

// SplitAddr parses HOST:PORT, the port defaulting to 7422 when absent.
func SplitAddr(s string) (string, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if _, _, err2 := net.SplitHostPort(s + ":" + strconv.Itoa(DefaultPort)); err2 == nil && s != "" {
			return s, DefaultPort, nil
		}
		return "", 0, fmt.Errorf("%q is not HOST:PORT (e.g. 10.0.0.2:7422)", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || host == "" {
		return "", 0, fmt.Errorf("%q is not HOST:PORT with a port 1-65535 (e.g. 10.0.0.2:7422)", s)
	}
	return host, p, nil
}

// NormalizeAddr returns HOST:PORT with the default port filled in.
func NormalizeAddr(s string) (string, error) {
	h, p, err := SplitAddr(s)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(h, strconv.Itoa(p)), nil
}

type file struct {
	Fleet Config `toml:"fleet"`
}

// Load reads the [fleet] table of dir's configuration file. A file without
// one yields a zero Config (no fleet).
func Load(dir string) (Config, error) {
	var f file
	p := lzconfig.Path(dir)
	if _, err := toml.DecodeFile(p, &f); err != nil {
		return Config{}, fmt.Errorf("read %s: %w", p, err)
	}
	if err := f.Fleet.Validate(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", p, err)
	}
	return f.Fleet.WithDefaults(), nil
}

// Save writes the [fleet] table into dir's configuration file, keeping
// every other table.
func Save(dir string, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	p := lzconfig.Path(dir)
	doc := map[string]any{}
	if _, err := toml.DecodeFile(p, &doc); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s before updating it: %w", p, err)
	}
	t := map[string]any{"name": c.Name}
	if c.Addr != "" {
		t["addr"] = c.Addr
	}
	if len(c.Peers) > 0 {
		t["peers"] = c.Peers
	}
	if c.ClientPort != 0 && c.ClientPort != DefaultClientPort {
		t["client_port"] = c.ClientPort
	}
	if c.NATSURL != "" {
		t["nats_url"] = c.NATSURL
	}
	if c.Credentials != "" {
		t["credentials"] = c.Credentials
	}
	if c.Replicas != 0 {
		t["replicas"] = c.Replicas
	}
	doc["fleet"] = t
	var buf bytes.Buffer
	buf.WriteString("# tapbeat sensor configuration. See README.md for every table.\n")
	if err := toml.NewEncoder(&buf).Encode(doc); err != nil {
		return fmt.Errorf("encode %s: %w", p, err)
	}
	return lzconfig.WriteFileAtomic(p, buf.Bytes(), 0o644)
}
