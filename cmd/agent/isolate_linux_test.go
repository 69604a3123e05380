package agent

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
	"golang.org/x/sys/unix"
)

// isolationLab is two namespaces joined by a veth pair: "self" (10.77.0.1,
// where the isolator works) and "peer" (10.77.0.2).
type isolationLab struct {
	self, peer *testenv.Netns
	peerMAC    schema.MAC
}

func newIsolationLab(t *testing.T) *isolationLab {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "ping", "nft")
	lab := &isolationLab{self: testenv.NewNetns(t), peer: testenv.NewNetns(t)}
	a, b := testenv.Veth(t, lab.self, lab.peer)
	lab.self.Run(t, "ip", "addr", "add", "10.77.0.1/24", "dev", a)
	lab.peer.Run(t, "ip", "addr", "add", "10.77.0.2/24", "dev", b)
	mac, err := schema.ParseMAC(lab.peer.Run(t, "cat", "/sys/class/net/"+b+"/address"))
	if err != nil {
		t.Fatal(err)
	}
	lab.peerMAC = mac
	return lab
}

// reachable reports whether the peer can ping self.
func (l *isolationLab) reachable() bool {
	return l.peer.Command("ping", "-n", "-c", "1", "-W", "1", "10.77.0.1").Run() == nil
}

func nsFd(t *testing.T, ns *testenv.Netns) int {
	fd, err := unix.Open("/run/netns/"+ns.Name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestIsolatorDropsByAddressAndMAC(t *testing.T) {
	lab := newIsolationLab(t)
	isol, err := NewIsolator(nsFd(t, lab.self))
	if err != nil {
		t.Fatal(err)
	}
	if !lab.reachable() {
		t.Fatal("peer unreachable before isolation")
	}
	if err := isol.Apply([]netip.Addr{netip.MustParseAddr("10.77.0.2")}, nil); err != nil {
		t.Fatal(err)
	}
	if lab.reachable() {
		t.Fatal("peer still reachable with its address isolated")
	}
	out := lab.self.Run(t, "nft", "list", "table", "inet", IsolationTable)
	if !strings.Contains(out, "10.77.0.2") {
		t.Fatalf("set does not hold the address:\n%s", out)
	}
	if err := isol.Apply(nil, nil); err != nil {
		t.Fatal(err)
	}
	if !lab.reachable() {
		t.Fatal("peer unreachable after the set was emptied")
	}
	if err := isol.Apply(nil, []schema.MAC{lab.peerMAC}); err != nil {
		t.Fatal(err)
	}
	if lab.reachable() {
		t.Fatal("peer still reachable with its MAC isolated")
	}
	if err := isol.Close(); err != nil {
		t.Fatal(err)
	}
	if !lab.reachable() {
		t.Fatal("peer unreachable after the table was removed")
	}
	if out, err := lab.self.Command("nft", "list", "table", "inet", IsolationTable).CombinedOutput(); err == nil {
		t.Fatalf("table still there:\n%s", out)
	}
}

// TestAgentIsolatesRedPeer runs a real agent with --isolate whose firewall
// lives in the "self" namespace: when the endpoint at 10.77.0.2 reports red
// the agent drops its traffic, and lets it in again when it turns green.
func TestAgentIsolatesRedPeer(t *testing.T) {
	lab := newIsolationLab(t)
	dir, auth := newSensorDir(t)
	s := startSensor(t, dir, "127.0.0.1:0")
	self, _ := auth.Enroll("self", pki.EnrollOptions{})
	peer, _ := auth.Enroll("peer", pki.EnrollOptions{})

	// The agent's netlink socket is opened inside the namespace; its TLS
	// connection to the sensor stays on the host's loopback.
	var logs testenv.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	var a *Agent
	lab.self.Do(t, func() {
		var err error
		a, err = New(Config{Bundle: self, Sensors: []string{s.addr}, StateDir: t.TempDir(), Isolate: true, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			BackoffMin: 100 * time.Millisecond})
		if err != nil {
			t.Error(err)
		}
	})
	if a == nil {
		t.FailNow()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "agent connected", 5*time.Second, func() bool { return a.Connected() != "" })

	// The peer endpoint speaks the protocol directly, declaring 10.77.0.2.
	// It retries until the sensor has re-read its trust store and answers.
	cfg, _ := pki.ClientConfig(peer)
	hello, _ := wire.Marshal(wire.TypeHello, wire.Hello{Health: schema.HealthGreen, Interfaces: []wire.Interface{{Name: "eth0", MAC: lab.peerMAC, IPs: []netip.Addr{netip.MustParseAddr("10.77.0.2")}}}})
	var c *tls.Conn
	waitFor(t, "peer session", 5*time.Second, func() bool {
		var err error
		if c, err = tls.Dial("tcp", s.addr, cfg); err != nil {
			return false
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(hello); err != nil {
			c.Close()
			return false
		}
		if _, err := wire.ReadFrame(c); err != nil {
			c.Close()
			return false
		}
		c.SetDeadline(time.Time{})
		return true
	})
	defer c.Close()
	go func() { // drain
		b := make([]byte, 4096)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
		}
	}()
	send := func(typ wire.Type, v any) {
		f, _ := wire.Marshal(typ, v)
		if _, err := c.Write(f); err != nil {
			t.Fatal(err)
		}
	}
	if !lab.reachable() {
		t.Fatal("peer unreachable while green")
	}
	send(wire.TypeHeartbeat, wire.Heartbeat{Health: schema.HealthRed, Reasons: []string{"ransomware"}})
	waitFor(t, "isolation of the red peer", 5*time.Second, func() bool { return !lab.reachable() })
	send(wire.TypeHeartbeat, wire.Heartbeat{Health: schema.HealthGreen})
	waitFor(t, "isolation lifted", 8*time.Second, func() bool { return lab.reachable() })
	cancel()
	<-done
	if out, err := lab.self.Command("nft", "list", "table", "inet", IsolationTable).CombinedOutput(); err == nil {
		t.Fatalf("agent left its table behind:\n%s", out)
	}
}
