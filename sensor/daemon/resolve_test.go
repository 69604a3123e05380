package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "tapbeat.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const baseConfig = "[lanzone]\naddresses = [\"10.0.0.2\"]\nheartbeat_interval = \"5s\"\n"

func TestResolvePrecedence(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, baseConfig)
	cases := []struct {
		name  string
		flags map[string][]string
		env   map[string]string
		want  time.Duration
	}{
		{"file", nil, nil, 5 * time.Second},
		{"environment over file", nil, map[string]string{"TAPBEAT_HEARTBEAT_INTERVAL": "2s"}, 2 * time.Second},
		{"flag over environment", map[string][]string{"heartbeat-interval": {"1s"}}, map[string]string{"TAPBEAT_HEARTBEAT_INTERVAL": "2s"}, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Resolve(Sources{Dir: dir, Flags: c.flags, Env: envOf(c.env)})
			if err != nil {
				t.Fatal(err)
			}
			if r.LANZone.HeartbeatInterval != c.want {
				t.Errorf("interval %v, want %v", r.LANZone.HeartbeatInterval, c.want)
			}
			// The one value reaches the correlator too.
			if got := r.SensorConfig().HeartbeatInterval; got != c.want {
				t.Errorf("correlator interval %v, want %v", got, c.want)
			}
		})
	}
	// Defaults when nothing says otherwise.
	writeConfig(t, dir, "[lanzone]\naddresses = [\"10.0.0.2\"]\n")
	r, err := Resolve(Sources{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if r.LANZone.HeartbeatInterval != 15*time.Second || r.LANPort() != 8347 || r.SensorConfig().MissingDeadline() != 45*time.Second {
		t.Errorf("defaults: interval %v port %d deadline %v", r.LANZone.HeartbeatInterval, r.LANPort(), r.SensorConfig().MissingDeadline())
	}
	if want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:8347")}; len(r.Bind) != 1 || r.Bind[0] != want[0] || r.BindFixed {
		t.Errorf("bind %v fixed %v, want %v from the file", r.Bind, r.BindFixed, want)
	}
}

func TestResolveErrorsNameTheSource(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, baseConfig)
	cases := []struct {
		name    string
		flags   map[string][]string
		env     map[string]string
		mention []string
	}{
		{"flag unparsable", map[string][]string{"heartbeat-interval": {"soon"}}, nil, []string{"flag --heartbeat-interval", "soon", "duration"}},
		{"flag out of range", map[string][]string{"heartbeat-interval": {"100ms"}}, nil, []string{"flag --heartbeat-interval", "1s and 1h"}},
		{"environment out of range", nil, map[string]string{"TAPBEAT_HEARTBEAT_INTERVAL": "2h"}, []string{"environment TAPBEAT_HEARTBEAT_INTERVAL", "1s and 1h"}},
		{"environment missing-after", nil, map[string]string{"TAPBEAT_MISSING_AFTER": "zero"}, []string{"TAPBEAT_MISSING_AFTER", "whole number"}},
		{"bad syslog in environment", nil, map[string]string{"TAPBEAT_SYSLOG": "http://x"}, []string{"TAPBEAT_SYSLOG", "http://x"}},
		{"host name listen", map[string][]string{"listen": {"sensor.lan:8347"}}, nil, []string{"listen", "sensor.lan:8347", "not a host name"}},
		{"two ports", map[string][]string{"listen": {"10.0.0.2:8347", "10.0.0.3:9000"}}, nil, []string{"one port", "8347", "9000"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Resolve(Sources{Dir: dir, Flags: c.flags, Env: envOf(c.env)})
			if err == nil {
				t.Fatal("accepted")
			}
			for _, m := range c.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
	// A bad value in the file names the file and line, even with flags.
	p := writeConfig(t, dir, "[lanzone]\naddresses = [\"10.0.0.2\"]\nheartbeat_interval = \"200ms\"\n")
	_, err := Resolve(Sources{Dir: dir, Flags: map[string][]string{"missing-after": {"3"}}})
	if err == nil || !strings.Contains(err.Error(), p+":3") {
		t.Errorf("file error %v: want it at %s:3", err, p)
	}
}

func TestResolveWildcardListen(t *testing.T) {
	// The appliance starts the sensor with --listen :8347 and may have no
	// lanzone.addresses yet: the sensor binds every address and still
	// knows the heartbeat channel by its port.
	dir := t.TempDir()
	writeConfig(t, dir, "[correlation]\nmissing_after = 3\n")
	r, err := Resolve(Sources{Dir: dir, Env: envOf(map[string]string{"TAPBEAT_LISTEN": ":8347"})})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Bind) != 1 || !r.Bind[0].Addr().IsUnspecified() || r.Bind[0].Port() != 8347 || !r.BindFixed {
		t.Fatalf("bind %v fixed %v", r.Bind, r.BindFixed)
	}
	if specs := r.BindSpecs(); len(specs) != 1 || specs[0] != ":8347" {
		t.Errorf("bind specs %v", specs)
	}
	if r.LANPort() != 8347 {
		t.Errorf("capture's LAN port %d", r.LANPort())
	}
	// Without --listen and without addresses there is nowhere to listen.
	if _, err := Resolve(Sources{Dir: dir}); err == nil || !strings.Contains(err.Error(), "lanzone.addresses") {
		t.Errorf("no address: %v", err)
	}
}

func TestResolveConfigOutsideDir(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	p := filepath.Join(other, "sensor.toml")
	if err := os.WriteFile(p, []byte(baseConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Resolve(Sources{Dir: dir, Path: p})
	if err != nil {
		t.Fatal(err)
	}
	if r.Path != p || r.LANZone.HeartbeatInterval != 5*time.Second {
		t.Errorf("path %s interval %v", r.Path, r.LANZone.HeartbeatInterval)
	}
	if _, err := Resolve(Sources{Dir: dir, Path: filepath.Join(other, "nope.toml")}); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("missing --config file: %v", err)
	}
}

func TestEnvironmentSyslogKeepsCommasInURLs(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, baseConfig)
	r, err := Resolve(Sources{Dir: dir, Env: envOf(map[string]string{
		"TAPBEAT_SYSLOG": "udp://127.0.0.1:514?types=heartbeat_missing,no_heartbeat, tcp://127.0.0.1:601"})})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Alerts.Syslog) != 2 || !strings.HasSuffix(r.Alerts.Syslog[0], "no_heartbeat") {
		t.Errorf("syslog %q", r.Alerts.Syslog)
	}
	// The command-line parser hands a repeated flag over split at commas.
	r, err = Resolve(Sources{Dir: dir, Flags: map[string][]string{"syslog": {"udp://127.0.0.1:514?types=heartbeat_missing", "no_heartbeat"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Alerts.Syslog) != 1 || r.Alerts.Syslog[0] != "udp://127.0.0.1:514?types=heartbeat_missing,no_heartbeat" {
		t.Errorf("syslog from a flag %q", r.Alerts.Syslog)
	}
}
