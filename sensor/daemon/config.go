package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/alert"
	"github.com/tapbeat/tapbeat/sensor/fleet"
)

// Config is the sensor's one configuration file, DIR/tapbeat.toml. Every
// option has a default; flags and TAPBEAT_* environment variables override
// the file. DefaultConfigText documents every key.
type Config struct {
	LANZone     lzconfig.LANZone `toml:"lanzone"`
	Correlation Correlation      `toml:"correlation"`
	Capture     Capture          `toml:"capture"`
	History     History          `toml:"history"`
	Alerts      Alerts           `toml:"alerts"`
	API         API              `toml:"api"`
	Metrics     Metrics          `toml:"metrics"`

	// Listen lists LAN-zone bind addresses given by --listen or
	// TAPBEAT_LISTEN; it has no place in the file (lanzone.addresses and
	// lanzone.port say where to listen there).
	Listen    []string     `toml:"-"`
	Console   Console      `toml:"console"`
	Inventory Inventory    `toml:"inventory"`
	Fleet     fleet.Config `toml:"fleet"`
}

// Correlation is the [correlation] table: the rules of sensor.Config. The
// heartbeat interval is the LAN zone's.
type Correlation struct {
	MissingAfter     int             `toml:"missing_after"`
	StartupGrace     int             `toml:"startup_grace"`
	ReconnectGrace   time.Duration   `toml:"reconnect_grace"`
	NoHeartbeatAfter time.Duration   `toml:"no_heartbeat_after"`
	MissingRealert   []time.Duration `toml:"missing_realert"`
	DropThreshold    float64         `toml:"drop_threshold"`
	QuietAfter       time.Duration   `toml:"quiet_after"`
	DedupWindow      time.Duration   `toml:"dedup_window"`
	Infrastructure   []string        `toml:"infrastructure"`
	Policies         []sensor.Policy `toml:"policy"`
}

// Capture is the [capture] table.
type Capture struct {
	// Interfaces are the mirror-port interfaces to capture on.
	Interfaces []string `toml:"interfaces"`
	// RingMiB is the TPACKET_V3 ring size per socket (default 64).
	RingMiB int `toml:"ring_mib"`
	// Fanout is the number of sockets (and workers) per interface (default 1).
	Fanout int `toml:"fanout"`
}

// History is the [history] table.
type History struct {
	// Retention is how long history is kept (default 90 days).
	Retention time.Duration `toml:"retention"`
	// MinFreeMiB: below this much free disk the oldest days are dropped (default 1024).
	MinFreeMiB int `toml:"min_free_mib"`
	// SnapshotEvery is how often the latest state per endpoint is persisted (default 1m).
	SnapshotEvery time.Duration `toml:"snapshot_every"`
}

// Alerts is the [alerts] table.
type Alerts struct {
	// Syslog lists destinations: udp://, tcp://, tls://, relp:// or
	// relp+tls:// URLs with options (see sensor/alert).
	Syslog []string `toml:"syslog"`
	// Log is the local JSON-lines alert log, relative to DIR ("" disables it;
	// default "alerts.jsonl").
	Log *string `toml:"log"`
	// OutboxLimit is how many undelivered alerts the outbox keeps before the
	// oldest are dropped (default 1,000,000).
	OutboxLimit int `toml:"outbox_limit"`
}

// API is the [api] table.
type API struct {
	// Socket is the local API's Unix socket (default DIR/tapbeat.sock).
	Socket string `toml:"socket"`
	// AdminListen is the management address for the mutual-TLS admin API
	// ("" disables it), e.g. "10.0.0.2:8348".
	AdminListen string `toml:"admin_listen"`
}

// Metrics is the [metrics] table.
type Metrics struct {
	// Listen is the address for /metrics and /healthz ("" disables it).
	Listen string `toml:"listen"`
}

// WithDefaults fills every unset option.
func (c Config) WithDefaults(dir string) Config {
	c.LANZone = c.LANZone.WithDefaults()
	if c.Capture.RingMiB <= 0 {
		c.Capture.RingMiB = 64
	}
	if c.Capture.Fanout <= 0 {
		c.Capture.Fanout = 1
	}
	if c.History.Retention <= 0 {
		c.History.Retention = 90 * 24 * time.Hour
	}
	if c.History.MinFreeMiB <= 0 {
		c.History.MinFreeMiB = 1024
	}
	if c.History.SnapshotEvery <= 0 {
		c.History.SnapshotEvery = time.Minute
	}
	if c.Alerts.Log == nil {
		def := "alerts.jsonl"
		c.Alerts.Log = &def
	}
	if c.Alerts.OutboxLimit <= 0 {
		c.Alerts.OutboxLimit = 1_000_000
	}
	if c.API.Socket == "" {
		c.API.Socket = filepath.Join(dir, "tapbeat.sock")
	}
	if c.Inventory.LearningPeriod <= 0 {
		c.Inventory.LearningPeriod = 24 * time.Hour
	}
	if c.Inventory.FlipWindow <= 0 {
		c.Inventory.FlipWindow = time.Hour
	}
	return c
}

// SensorConfig returns the correlator's rules.
func (c Config) SensorConfig() sensor.Config {
	return sensor.Config{
		HeartbeatInterval: c.LANZone.WithDefaults().HeartbeatInterval,
		MissingAfter:      c.Correlation.MissingAfter,
		StartupGrace:      c.Correlation.StartupGrace,
		ReconnectGrace:    c.Correlation.ReconnectGrace,
		NoHeartbeatAfter:  c.Correlation.NoHeartbeatAfter,
		MissingRealert:    c.Correlation.MissingRealert,
		DropThreshold:     c.Correlation.DropThreshold,
		QuietAfter:        c.Correlation.QuietAfter,
		DedupWindow:       c.Correlation.DedupWindow,
		Infrastructure:    c.Correlation.Infrastructure,
		Policies:          c.Correlation.Policies,
	}
}

// LineError is a configuration error tied to a line of the file.
type LineError struct {
	Path string
	Line int // 0 when the line is not known
	Err  error
}

func (e *LineError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Path, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// LoadConfig reads and validates a configuration file. A missing file is an
// error; use Config{} for defaults. Errors name the file and, where it can be
// found, the line.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read configuration: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig parses and validates configuration text; path names it in errors.
func ParseConfig(path string, data []byte) (Config, error) {
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return Config{}, &LineError{Path: path, Line: pe.Position.Line, Err: errors.New(pe.Message)}
		}
		return Config{}, &LineError{Path: path, Err: err}
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		key := undecoded[0]
		return Config{}, &LineError{Path: path, Line: findLine(data, key[len(key)-1]),
			Err: fmt.Errorf("unknown key %q: check its spelling against the documented configuration (tapbeat config example)", key.String())}
	}
	if err := c.Validate(); err != nil {
		return Config{}, &LineError{Path: path, Line: lineOfProblem(data, err), Err: err}
	}
	return c, nil
}

// Validate checks every table.
func (c Config) Validate() error {
	var errs []error
	if err := c.LANZone.ValidateValues(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Fleet.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.SensorConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Capture.RingMiB < 0 || c.Capture.RingMiB > 4096 {
		errs = append(errs, fmt.Errorf("capture.ring_mib %d: want 1-4096", c.Capture.RingMiB))
	}
	if c.Capture.Fanout < 0 || c.Capture.Fanout > 64 {
		errs = append(errs, fmt.Errorf("capture.fanout %d: want 1-64", c.Capture.Fanout))
	}
	for _, u := range c.Alerts.Syslog {
		if _, err := alert.ParseDestination(u); err != nil {
			errs = append(errs, fmt.Errorf("alerts.syslog %q: %w", u, err))
		}
	}
	if (c.Console.WebCert == "") != (c.Console.WebKey == "") {
		errs = append(errs, fmt.Errorf("console.web_cert %q and console.web_key %q: give both or neither", c.Console.WebCert, c.Console.WebKey))
	}
	if c.Console.Web != "" {
		if _, _, err := net.SplitHostPort(c.Console.Web); err != nil {
			errs = append(errs, fmt.Errorf("console.web %q: want HOST:PORT, e.g. \"10.0.0.2:8443\"", c.Console.Web))
		}
	}
	return errors.Join(errs...)
}

// findLine returns the first line that assigns key, or 0.
func findLine(data []byte, key string) int {
	for i, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, key) && strings.HasPrefix(strings.TrimSpace(t[len(key):]), "=") {
			return i + 1
		}
	}
	return 0
}

// lineOfProblem finds the line of the key an error starts with
// (lanzone.port ...), else of the first quoted value it names (a bad
// CIDR), or 0.
func lineOfProblem(data []byte, err error) int {
	msg := err.Error()
	// "table.key value: ..." names the key.
	if first, _, ok := strings.Cut(msg, " "); ok && strings.Count(first, ".") == 1 {
		if _, key, _ := strings.Cut(first, "."); key != "" {
			if n := findLine(data, key); n > 0 {
				return n
			}
		}
	}
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			return 0
		}
		j := strings.IndexByte(msg[i+1:], '"')
		if j < 0 {
			return 0
		}
		quoted := msg[i+1 : i+1+j]
		msg = msg[i+2+j:]
		if quoted == "" {
			continue
		}
		for n, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"`+quoted+`"`) || strings.Contains(line, "= "+quoted) {
				return n + 1
			}
		}
	}
}
