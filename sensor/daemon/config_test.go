package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigParses(t *testing.T) {
	c, err := ParseConfig("example.toml", []byte(ExampleConfig))
	if err != nil {
		t.Fatalf("the documented example does not parse: %v", err)
	}
	c = c.WithDefaults("/var/lib/tapbeat")
	if c.LANZone.Port != 8347 || c.LANZone.HeartbeatInterval != 15*time.Second {
		t.Errorf("lanzone defaults %+v", c.LANZone)
	}
	sc := c.SensorConfig()
	if sc.MissingAfter != 3 || len(sc.MissingRealert) != 3 || sc.MissingRealert[2] != time.Hour {
		t.Errorf("correlation %+v", sc)
	}
	if c.History.Retention != 90*24*time.Hour || *c.Alerts.Log != "alerts.jsonl" || c.API.Socket != "/var/lib/tapbeat/tapbeat.sock" {
		t.Errorf("defaults %+v", c)
	}
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		name, text string
		line       int
		mention    string
	}{
		{"syntax", "[lanzone]\naddresses = [\"10.0.0.2\"\nport = 1\n", 3, ""},
		{"unknown key", "[lanzone]\naddresses = [\"10.0.0.2\"]\n\n[capture]\ninterfacs = [\"eth1\"]\n", 5, "interfacs"},
		{"bad CIDR", "[[correlation.policy]]\nname = \"x\"\nsources = [\"10.0.0.0/33\"]\n", 3, "10.0.0.0/33"},
		{"bad health", "[[correlation.policy]]\nname = \"x\"\nmin_source_health = \"blue\"\n", 3, "blue"},
		{"bad duration", "[lanzone]\naddresses = [\"10.0.0.2\"]\nheartbeat_interval = \"soon\"\n", 3, ""},
		{"bad syslog URL", "[alerts]\nsyslog = [\"http://x\"]\n", 2, "http://x"},
		{"bad address", "[lanzone]\naddresses = [\"10.0.0.300\"]\n", 2, "10.0.0.300"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig("t.toml", []byte(tc.text))
			if err == nil {
				t.Fatal("accepted")
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line != tc.line {
				t.Fatalf("error %q: want it on line %d", err, tc.line)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}
