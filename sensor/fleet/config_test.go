package fleet

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" = valid
	}{
		{Config{}, ""},
		{Config{Name: "s1", Addr: "10.0.0.2:7422", Peers: []string{"10.0.0.3"}}, ""},
		{Config{Name: "s1", NATSURL: "nats://n1:4222"}, ""},
		{Config{Addr: "10.0.0.2:7422"}, "fleet.name is empty"},
		{Config{Name: "s1", Addr: "10.0.0.2:99999"}, "fleet.addr"},
		{Config{Name: "s1", Addr: "10.0.0.2:7422", Peers: []string{"10.0.0.2:7422"}}, "own address"},
		{Config{Name: "s1", Addr: "10.0.0.2:7422", Replicas: 9}, "fleet.replicas"},
	} {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
	if a, err := NormalizeAddr("sensor-b.example.org"); err != nil || a != "sensor-b.example.org:7422" {
		t.Errorf("NormalizeAddr without a port: %q, %v; want the default port", a, err)
	}
}
