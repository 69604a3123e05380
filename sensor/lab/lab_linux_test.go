package lab_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// newLab brings up a lab with a unique name and a private state directory
// and takes it down when the test ends.
func newLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ping")
	if cfg.Name == "" {
		cfg.Name = testenv.UniqueName("tbl")
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	ctx := t.Context()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("down: %v", err)
		}
		assertGone(t, cfg.Name)
	})
	return l
}

// assertGone fails unless no namespace of lab name is left.
func assertGone(t *testing.T, name string) {
	t.Helper()
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), name+"-") {
			t.Errorf("namespace %s is left behind", e.Name())
		}
	}
}

// ipLink is the part of `ip -j link` output the tests read.
type ipLink struct {
	Name      string   `json:"ifname"`
	Flags     []string `json:"flags"`
	Address   string   `json:"address"`
	OperState string   `json:"operstate"`
	Stats     struct {
		TX struct {
			Packets int `json:"packets"`
		} `json:"tx"`
	} `json:"stats64"`
	AddrInfo []struct {
		Family string `json:"family"`
		Local  string `json:"local"`
		Prefix int    `json:"prefixlen"`
		Scope  string `json:"scope"`
	} `json:"addr_info"`
}

func links(t *testing.T, l *lab.Lab, host string, args ...string) map[string]ipLink {
	t.Helper()
	out, err := l.Run(t.Context(), host, append([]string{"ip", "-j"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	var ls []ipLink
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatalf("ip -j %v: %v", args, err)
	}
	m := make(map[string]ipLink)
	for _, x := range ls {
		m[x.Name] = x
	}
	return m
}

func TestMirrorCopiesEveryFrameOnce(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Config{})
	rep, err := l.VerifyMirror(t.Context(), "ep1", "ep2", 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.Sent != rep.Mirrored || rep.EchoRequests != 5 || rep.EchoReplies != 5 {
		t.Errorf("report %+v: want every sent frame mirrored and 5 echo requests and replies", rep)
	}
	// The endpoint to sensor path is mirrored too.
	if _, err := l.VerifyMirror(t.Context(), "ep3", "sensor", 2); err != nil {
		t.Error(err)
	}
}

func TestInterfacesMatchState(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Config{Endpoints: []lab.EndpointSpec{{}, {Interfaces: 2}}})
	for _, host := range []string{"sensor", "ep1", "ep2"} {
		ifs, err := l.Interfaces(host)
		if err != nil {
			t.Fatal(err)
		}
		got := links(t, l, host, "addr", "show")
		for _, want := range ifs {
			link, ok := got[want.Name]
			if !ok {
				t.Fatalf("%s: no interface %s", host, want.Name)
			}
			if link.Address != want.MAC {
				t.Errorf("%s %s: MAC %s, state says %s", host, want.Name, link.Address, want.MAC)
			}
			var have []string
			for _, a := range link.AddrInfo {
				have = append(have, a.Local+"/"+strconv.Itoa(a.Prefix))
			}
			for _, w := range []string{want.Addr.String(), want.LinkLocal.String() + "/64"} {
				if !strings.Contains(strings.Join(have, " "), w) {
					t.Errorf("%s %s: addresses %v lack %s", host, want.Name, have, w)
				}
			}
		}
	}
	mirror := links(t, l, "sensor", "addr", "show")[lab.MirrorInterface]
	if len(mirror.AddrInfo) != 0 {
		t.Errorf("mirror interface has addresses %+v", mirror.AddrInfo)
	}
	for _, f := range []string{"PROMISC", "NOARP", "UP", "LOWER_UP"} {
		if !contains(mirror.Flags, f) {
			t.Errorf("mirror interface flags %v lack %s", mirror.Flags, f)
		}
	}
	// Traffic of every kind, then the mirror interface must still have
	// transmitted nothing.
	ctx := t.Context()
	if err := l.Ping(ctx, "ep1", l.Endpoints[1].Interfaces[0].LinkLocal, 2); err != nil {
		t.Error(err)
	}
	if err := l.TCPExchange(ctx, "ep2", "sensor", 8347, []byte(strings.Repeat("heartbeat ", 5000))); err != nil {
		t.Error(err)
	}
	if err := l.UDPExchange(ctx, "ep1", "ep2", 5514, 20); err != nil {
		t.Error(err)
	}
	stats := links(t, l, "sensor", "-s", "link", "show", "dev", lab.MirrorInterface)[lab.MirrorInterface]
	if stats.Stats.TX.Packets != 0 {
		t.Errorf("the mirror interface transmitted %d frames", stats.Stats.TX.Packets)
	}
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
