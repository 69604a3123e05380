package lab_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// TestMain fails the run if any test left a lab namespace behind.
func TestMain(m *testing.M) {
	code := m.Run()
	prefix := "tbl" + strconv.Itoa(os.Getpid()%100000)
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			fmt.Fprintf(os.Stderr, "lab namespace %s was left behind\n", e.Name())
			code = 1
		}
	}
	os.Exit(code)
}

// newLab brings up a lab with a unique name and a private state directory
// and takes it down when the test ends.
func newLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ethtool", "ping")
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
	hostArpIgnore, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/arp_ignore")
	if err != nil {
		t.Fatal(err)
	}
	l := newLab(t, lab.Config{Endpoints: []lab.EndpointSpec{{}, {Interfaces: 2}}})
	// Sysctls are set inside the lab's namespaces, never on the machine.
	if got, err := l.Run(t.Context(), "ep1", "sysctl", "-n", "net.ipv4.conf.all.arp_ignore"); err != nil || got != "1" {
		t.Errorf("arp_ignore in ep1 = %q, %v; want 1", got, err)
	}
	if got, _ := os.ReadFile("/proc/sys/net/ipv4/conf/all/arp_ignore"); string(got) != string(hostArpIgnore) {
		t.Errorf("the machine's arp_ignore changed from %q to %q", hostArpIgnore, got)
	}
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
	if got := l.ListenAddr(8347).String(); got != "10.83.47.1:8347" {
		t.Errorf("ListenAddr(8347) = %s", got)
	}
	mirror := links(t, l, "sensor", "addr", "show")[lab.MirrorInterface]
	if len(mirror.AddrInfo) != 0 {
		t.Errorf("mirror interface has addresses %+v", mirror.AddrInfo)
	}
	for _, f := range []string{"PROMISC", "NOARP", "UP", "LOWER_UP"} {
		if !slices.Contains(mirror.Flags, f) {
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

func TestMultiHomedEndpointFailsOverWhenAPortGoesDown(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Config{Endpoints: []lab.EndpointSpec{{Interfaces: 2}, {Unmanaged: true}}})
	ctx := t.Context()
	ep1 := l.Endpoints[0]
	if len(ep1.Interfaces) != 2 || !ep1.Managed || l.Endpoints[1].Managed {
		t.Fatalf("endpoints %+v: want ep1 managed with two interfaces, ep2 unmanaged", l.Endpoints)
	}
	eth0, eth1 := ep1.Interfaces[0].Addr.Addr(), ep1.Interfaces[1].Addr.Addr()
	for _, a := range []netip.Addr{eth0, eth1} {
		if err := l.Ping(ctx, "ep2", a, 1); err != nil {
			t.Fatal(err)
		}
	}
	// Each address answers ARP with its own interface's MAC.
	out, err := l.Run(ctx, "ep2", "ip", "-j", "neigh", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ep1.Interfaces {
		if !strings.Contains(out, `"dst":"`+ifc.Addr.Addr().String()+`","dev":"eth0","lladdr":"`+ifc.MAC+`"`) {
			t.Errorf("ep2's neighbour table %s: want %s at %s", out, ifc.Addr.Addr(), ifc.MAC)
		}
	}

	if err := l.SetPortLink(ctx, "ep1", 0, false); err != nil {
		t.Fatal(err)
	}
	lab.WaitCarrier(t, l, "ep1", "eth0", false)
	if err := l.Ping(ctx, "ep2", eth0, 1); err == nil {
		t.Error("ep1's eth0 answered with its port down")
	}
	if err := l.Ping(ctx, "ep2", eth1, 2); err != nil {
		t.Errorf("ep1's eth1 with eth0's port down: %v", err)
	}
	if err := l.SetPortLink(ctx, "ep1", 0, true); err != nil {
		t.Fatal(err)
	}
	lab.WaitCarrier(t, l, "ep1", "eth0", true)
	if err := l.Ping(ctx, "ep2", eth0, 1); err != nil {
		t.Errorf("ep1's eth0 after its port came back: %v", err)
	}
	if err := l.SetPortLink(ctx, "ep1", 2, false); err == nil {
		t.Error("SetPortLink accepted interface 2 of a two-interface endpoint")
	}
}

func TestMirrorLinkDownAndUp(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Config{Endpoints: lab.Endpoints(2)})
	ctx := t.Context()
	if err := l.SetMirrorLink(ctx, false); err != nil {
		t.Fatal(err)
	}
	lab.WaitCarrier(t, l, "sensor", lab.MirrorInterface, false)
	// The endpoints still talk, but nothing reaches the sensor.
	rep, err := l.VerifyMirror(ctx, "ep1", "ep2", 2)
	if err == nil || rep.Mirrored != 0 || rep.Sent == 0 {
		t.Errorf("with the mirror link down: report %+v, error %v; want frames sent, none mirrored and an error", rep, err)
	}
	if err := l.SetMirrorLink(ctx, true); err != nil {
		t.Fatal(err)
	}
	lab.WaitCarrier(t, l, "sensor", lab.MirrorInterface, true)
	if _, err := l.VerifyMirror(ctx, "ep1", "ep2", 2); err != nil {
		t.Errorf("after the mirror link came back: %v", err)
	}
}

func TestProcessesRunInTheirNamespaceAndStopOnDown(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Config{Endpoints: lab.Endpoints(1)})
	ctx := t.Context()
	p, err := l.Start(ctx, "sensor", "sh", "-c", "ip -br addr show dev lan0; echo ready; exec sleep 600")
	if err != nil {
		t.Fatal(err)
	}
	waitOutput(t, p, "ready")
	if !strings.Contains(p.Output(), l.Sensor.LAN.Addr.String()) {
		t.Errorf("process output %q lacks the sensor's address %s", p.Output(), l.Sensor.LAN.Addr)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	// A process left running is stopped by Down.
	q, err := l.Start(ctx, "ep1", "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-q.Done():
	default:
		t.Error("Down returned with the endpoint's process still running")
	}
	if _, err := l.Start(ctx, "ep9", "true"); err == nil {
		t.Error("Start on an unknown host succeeded")
	}
}

func waitOutput(t *testing.T, p *lab.Process, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q never showed %q", p.Output(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDownAfterCrashWorksFromTheNamePrefix(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ethtool", "ping")
	ctx := t.Context()
	dir := t.TempDir()
	name := testenv.UniqueName("tbl")
	l, err := lab.Up(ctx, lab.Config{Name: name, StateDir: dir, Endpoints: lab.Endpoints(2)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Teardown(context.Background(), dir, name) })
	// A process the crashed run left behind, which Down must stop: it
	// would otherwise keep the namespace alive.
	cmd, err := l.Command(ctx, "ep2", "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	if _, err := lab.Up(ctx, lab.Config{Name: name, StateDir: dir}); err == nil {
		t.Fatal("a second lab of the same name came up")
	}
	if err := os.Remove(lab.StatePath(dir, name)); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Up(ctx, lab.Config{Name: name, StateDir: dir}); err == nil || !strings.Contains(err.Error(), "left from an earlier lab") {
		t.Fatalf("up over a crashed lab's namespaces: %v, want a clear refusal", err)
	}
	for _, ns := range l.Namespaces() {
		if _, err := os.Stat("/run/netns/" + ns); err != nil {
			t.Errorf("a refused up removed namespace %s it did not create: %v", ns, err)
		}
	}
	if _, err := lab.LoadFrom(dir, name); !errors.Is(err, lab.ErrNoState) {
		t.Errorf("load without a state file: %v, want ErrNoState", err)
	}
	for range 2 { // idempotent
		if err := lab.Teardown(ctx, dir, name); err != nil {
			t.Fatal(err)
		}
		assertGone(t, name)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the process in the crashed lab survived teardown")
	}
	// The name is free again.
	l2, err := lab.Up(ctx, lab.Config{Name: name, StateDir: dir, Endpoints: lab.Endpoints(1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lab.LoadFrom(dir, name); err != nil {
		t.Error(err)
	}
	if err := l2.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertGone(t, name)
	if _, err := os.Stat(lab.StatePath(dir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after down: %v", err)
	}
}

func TestUpInterruptedHalfWayLeavesNothing(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ethtool")
	dir := t.TempDir()
	failed := 0
	// Cancel Up at different points of its work; whenever it fails it must
	// have removed everything it created, state file included.
	for _, after := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 40 * time.Millisecond, 100 * time.Millisecond} {
		name := testenv.UniqueName("tbl")
		ctx, cancel := context.WithTimeout(t.Context(), after)
		l, err := lab.Up(ctx, lab.Config{Name: name, StateDir: dir})
		cancel()
		if err == nil {
			if err := l.Down(t.Context()); err != nil {
				t.Fatal(err)
			}
		} else {
			failed++
			t.Logf("cancelled after %s: %v", after, err)
		}
		assertGone(t, name)
		if _, err := os.Stat(lab.StatePath(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state file after a failed up: %v", err)
		}
	}
	if failed == 0 {
		t.Error("no interrupted Up failed: the test checked nothing")
	}
}

func TestDHCPLease(t *testing.T) {
	t.Parallel()
	testenv.RequireCommands(t, "dnsmasq", "busybox")
	l := newLab(t, lab.Config{Endpoints: []lab.EndpointSpec{{Interfaces: 2}, {}}})
	ctx := t.Context()
	srv, err := l.StartDHCPServer(ctx, "ep2")
	if err != nil {
		t.Fatal(err)
	}
	first, last := l.DHCPRange()
	seen := map[netip.Addr]bool{}
	for i, ifc := range l.Endpoints[0].Interfaces {
		a, err := l.AcquireLease(ctx, "ep1", i)
		if err != nil {
			t.Fatal(err)
		}
		if a.Less(first) || last.Less(a) || seen[a] {
			t.Errorf("lease %s for %s: want a fresh address in %s-%s", a, ifc.Name, first, last)
		}
		seen[a] = true
		// dnsmasq logs each acknowledgement with the client's MAC.
		want := "DHCPACK(eth0) " + a.String() + " " + ifc.MAC + " ep1"
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(srv.Output(), want) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(srv.Output(), want) {
			t.Errorf("server output lacks %q:\n%s", want, srv.Output())
		}
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("stop dhcp server: %v", err)
	}
}

func TestVerifyMirrorCatchesDuplicatesAndGaps(t *testing.T) {
	t.Parallel()
	l := newLab(t, lab.Config{Endpoints: lab.Endpoints(2)})
	ctx := t.Context()
	// Two mirror actions on ep1's port copy its frames twice.
	for _, cmd := range [][]string{
		{"tc", "qdisc", "del", "dev", "ep1p0", "ingress"},
		{"tc", "qdisc", "add", "dev", "ep1p0", "ingress"},
		{"tc", "filter", "add", "dev", "ep1p0", "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
			"action", "mirred", "egress", "mirror", "dev", lab.SpanPort, "pipe",
			"action", "mirred", "egress", "mirror", "dev", lab.SpanPort},
	} {
		if _, err := l.Run(ctx, lab.HostSwitch, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.VerifyMirror(ctx, "ep1", "ep2", 2); err == nil || !strings.Contains(err.Error(), "mirrored 2 times") {
		t.Errorf("with ep1's frames mirrored twice: %v, want a duplicate reported", err)
	}
	// ep1's port mirrored once again, no mirror on ep2's port: its replies
	// never reach the sensor.
	for _, cmd := range [][]string{
		{"tc", "qdisc", "del", "dev", "ep1p0", "ingress"},
		{"tc", "qdisc", "add", "dev", "ep1p0", "ingress"},
		{"tc", "filter", "add", "dev", "ep1p0", "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
			"action", "mirred", "egress", "mirror", "dev", lab.SpanPort},
		{"tc", "qdisc", "del", "dev", "ep2p0", "ingress"},
	} {
		if _, err := l.Run(ctx, lab.HostSwitch, cmd...); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := l.VerifyMirror(ctx, "ep1", "ep2", 2)
	if err == nil || !strings.Contains(err.Error(), "mirrored 0 times") || strings.Contains(err.Error(), "mirrored 2 times") {
		t.Errorf("with ep2's port unmirrored: %v, want missing frames reported", err)
	}
	if rep.EchoRequests != 2 || rep.EchoReplies != 0 {
		t.Errorf("with ep2's port unmirrored: %+v, want 2 echo requests and no replies", rep)
	}
}

func TestTeardownLeavesForeignNamespacesAlone(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip")
	ctx := t.Context()
	dir := t.TempDir()
	foreign := testenv.NewNetns(t) // not under the lab's prefix
	name := testenv.UniqueName("tbl")
	state := `{"name":"` + name + `","subnet":"10.83.47.0/24","switch":{"namespace":"` + foreign.Name + `"},` +
		`"sensor":{"namespace":"` + name + `-sensor"}}`
	if err := os.WriteFile(lab.StatePath(dir, name), []byte(state), 0o644); err != nil {
		t.Fatal(err)
	}
	err := lab.Teardown(ctx, dir, name)
	if err == nil || !strings.Contains(err.Error(), "outside the lab's prefix") {
		t.Errorf("teardown of a state file naming %s: %v, want it refused", foreign.Name, err)
	}
	if _, err := os.Stat("/run/netns/" + foreign.Name); err != nil {
		t.Errorf("teardown removed the foreign namespace %s: %v", foreign.Name, err)
	}
}
