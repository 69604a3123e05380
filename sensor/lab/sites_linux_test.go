package lab

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// upSites brings up one lab per subnet, each with a unique name, and takes
// them down when the test ends, checking that no namespace is left.
func upSites(t *testing.T, eps [][]EndpointSpec, subnets ...string) []*Lab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "bridge", "ethtool", "ping", "nft")
	dir := t.TempDir()
	var labs []*Lab
	t.Cleanup(func() {
		for _, l := range labs {
			if err := l.Down(context.Background()); err != nil {
				t.Errorf("down: %v", err)
			}
		}
		out, err := exec.Command("ip", "netns", "list").Output()
		if err != nil {
			t.Error(err)
		}
		for _, l := range labs {
			if strings.Contains(string(out), l.Name+"-") {
				t.Errorf("ip netns list still shows lab %s:\n%s", l.Name, out)
			}
		}
	})
	for i, s := range subnets {
		l, err := Up(t.Context(), Config{Name: testenv.UniqueName("tbl"), StateDir: dir,
			Subnet: netip.MustParsePrefix(s), Endpoints: eps[i]})
		if err != nil {
			t.Fatal(err)
		}
		labs = append(labs, l)
	}
	return labs
}

// mirrorsDuring captures every lab's mirror interface while f runs and
// returns the frames each one carried, in the labs' order.
func mirrorsDuring(t *testing.T, labs []*Lab, f func() error) [][][]byte {
	t.Helper()
	caps := make([]*frameCapture, len(labs))
	for i, l := range labs {
		c, err := startCapture(l.Sensor.Namespace, l.Sensor.Mirror)
		if err != nil {
			t.Fatal(err)
		}
		defer c.stop()
		caps[i] = c
	}
	err := f()
	out := make([][][]byte, len(labs))
	for i, c := range caps {
		out[i] = c.stop()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fromMAC returns the frames whose source MAC is mac.
func fromMAC(frames [][]byte, mac net.HardwareAddr) [][]byte {
	var out [][]byte
	for _, f := range frames {
		if len(f) >= 14 && bytes.Equal(f[6:12], mac) {
			out = append(out, f)
		}
	}
	return out
}

// echoRequests counts the ICMP echo requests among frames and how many of
// them are distinct.
func echoRequests(frames [][]byte) (total, distinct int) {
	seen := map[string]bool{}
	for _, f := range frames {
		if icmpEchoType(f) == 8 {
			total++
			seen[string(f)] = true
		}
	}
	return total, len(seen)
}

// checkMirroredOnlyAt pings from host of lab src to addr and fails unless
// every echo request appears exactly once on the mirror of labs[at] and no
// frame of host's appears on any other lab's mirror.
func checkMirroredOnlyAt(t *testing.T, labs []*Lab, src *Lab, host string, to netip.Addr, at int) {
	t.Helper()
	const count = 3
	ifs, err := src.Interfaces(host)
	if err != nil {
		t.Fatal(err)
	}
	mac := ifs[0].HardwareAddr()
	mirrors := mirrorsDuring(t, labs, func() error { return src.Ping(t.Context(), host, to, count) })
	for i, frames := range mirrors {
		own := fromMAC(frames, mac)
		total, distinct := echoRequests(own)
		if i == at {
			if total != count || distinct != count {
				t.Errorf("lab %s's mirror carried %d echo requests (%d distinct) from %s %s, want each of %d exactly once", labs[i].Name, total, distinct, src.Name, host, count)
			}
			continue
		}
		if len(own) > 0 {
			t.Errorf("lab %s's mirror carried %d frames from %s %s (%d echo requests), want none: %s", labs[i].Name, len(own), src.Name, host, total, describeFrame(own[0]))
		}
	}
}

func TestJoinedSitesMirrorOnlyWhereFramesEnter(t *testing.T) {
	t.Parallel()
	labs := upSites(t, [][]EndpointSpec{Endpoints(1), {{}, {Interfaces: 2}}, Endpoints(1)},
		"10.83.47.0/24", "10.83.48.0/24", "10.83.49.0/24")
	l1, l2, l3 := labs[0], labs[1], labs[2]
	ctx := t.Context()
	if err := Join(ctx, l1, l2, l3); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(l2.StateDir, l2.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Trunks) != 2 || st.Trunks[0].Peer != l1.Name || st.Trunks[1].Peer != l3.Name || len(st.Routes) != 2 {
		t.Errorf("lab 2's state after Join: trunks %+v, routes %v; want trunks to %s and %s and two routes", st.Trunks, st.Routes, l1.Name, l3.Name)
	}
	if err := Join(ctx, l3, l1); err == nil || !strings.Contains(err.Error(), "already joined") {
		t.Errorf("a second Join of joined labs: %v, want it refused", err)
	}

	sensor1, _ := l1.Addr(HostSensor)
	sensor2, _ := l2.Addr(HostSensor)
	sensor3, _ := l3.Addr(HostSensor)
	ep1of3, _ := l3.Addr("ep1")
	ep1of2, _ := l2.Addr("ep1")
	// Across one trunk, across two, and from both interfaces of a
	// multi-homed endpoint.
	for _, p := range []struct {
		from *Lab
		host string
		to   netip.Addr
	}{
		{l2, "ep1", sensor1}, {l2, "ep1", ep1of3}, {l1, HostSensor, ep1of3}, {l3, "ep1", sensor1}, {l2, "ep2", sensor3},
	} {
		if err := p.from.Ping(ctx, p.host, p.to, 1); err != nil {
			t.Errorf("across the joined labs: %v", err)
		}
	}
	if err := l2.SetPortLink(ctx, "ep2", 0, false); err != nil {
		t.Fatal(err)
	}
	WaitCarrier(t, l2, "ep2", "eth0", false)
	if err := l1.Ping(ctx, HostSensor, l2.Endpoints[1].Interfaces[1].Addr.Addr(), 1); err != nil {
		t.Errorf("multi-homed endpoint's eth1 with eth0 down: %v", err)
	}
	if err := l2.Ping(ctx, "ep2", sensor1, 1); err != nil {
		t.Errorf("multi-homed endpoint to another lab with eth0 down: %v", err)
	}
	if err := l2.SetPortLink(ctx, "ep2", 0, true); err != nil {
		t.Fatal(err)
	}

	// lab 2's ep1 talks to lab 1's sensor: only lab 2's switch mirrors it.
	checkMirroredOnlyAt(t, labs, l2, "ep1", sensor1, 1)

	// The cable moves to lab 3's switch.
	if err := l2.MovePort(ctx, "ep1", 0, l3); err != nil {
		t.Fatal(err)
	}
	if got := l2.Endpoints[0].Interfaces[0]; got.Switch != l3.Switch.Namespace || !linkExists(ctx, l3.Switch.Namespace, got.Port) || linkExists(ctx, l2.Switch.Namespace, "ep1p0") {
		t.Errorf("after the move: %+v; want the port in %s only", got, l3.Switch.Namespace)
	}
	if st, err := ReadState(l2.StateDir, l2.Name); err != nil || st.Endpoints[0].Interfaces[0].Switch != l3.Switch.Namespace {
		t.Errorf("state file after the move: %+v, %v", st, err)
	}
	var table strings.Builder
	if err := l2.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"@" + l3.Switch.Namespace, "trunk to lab " + l3.Name, "route " + l1.Subnet.String()} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("lab 2's table lacks %q:\n%s", want, table.String())
		}
	}
	// Reached from afar first: the switches learned the new place of its
	// MAC from its announcement.
	if err := l1.Ping(ctx, HostSensor, ep1of2, 2); err != nil {
		t.Errorf("to the moved endpoint: %v", err)
	}
	checkMirroredOnlyAt(t, labs, l2, "ep1", sensor1, 2)
	if err := l2.TCPExchange(ctx, "ep1", HostSensor, 9100, []byte("after the move")); err != nil {
		t.Errorf("moved endpoint to its own lab's sensor: %v", err)
	}
	// The port's link is switched where the port is now.
	if err := l2.SetPortLink(ctx, "ep1", 0, false); err != nil {
		t.Fatal(err)
	}
	WaitCarrier(t, l2, "ep1", "eth0", false)
	if err := l2.SetPortLink(ctx, "ep1", 0, true); err != nil {
		t.Fatal(err)
	}
	WaitCarrier(t, l2, "ep1", "eth0", true)
	if err := l2.MovePort(ctx, "ep1", 0, l3); err == nil {
		t.Error("a move to the switch the port is already on succeeded")
	}

	// And back home.
	if err := l2.MovePort(ctx, "ep1", 0, l2); err != nil {
		t.Fatal(err)
	}
	if got := l2.Endpoints[0].Interfaces[0]; got.Port != "ep1p0" || got.Switch != l2.Switch.Namespace || !linkExists(ctx, l2.Switch.Namespace, "ep1p0") {
		t.Errorf("after moving back: %+v", got)
	}
	checkMirroredOnlyAt(t, labs, l2, "ep1", sensor1, 1)
	if _, err := l2.VerifyMirror(ctx, "ep1", "ep2", 2); err != nil {
		t.Errorf("lab 2's own mirror after moving back: %v", err)
	}

	// Lab 3's sensor loses its WAN links to the other sites, with a TCP
	// connection established to lab 1's sensor.
	ln, err := l3.Listen(ctx, HostSensor, "tcp", netip.AddrPortFrom(sensor3, 9200).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	conn, err := l1.Dial(ctx, HostSensor, "tcp", netip.AddrPortFrom(sensor3, 9200).String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func(msg string, within time.Duration) error {
		_ = conn.SetDeadline(time.Now().Add(within))
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return errors.New("echo " + string(buf) + ", sent " + msg)
		}
		return nil
	}
	if err := echo("before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	heal, err := l3.Partition(ctx, HostSensor, sensor1, sensor2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l3.Partition(ctx, HostSensor, sensor1); err == nil {
		t.Error("a second partition of the same host succeeded")
	}
	for _, p := range []struct {
		from *Lab
		host string
		to   netip.Addr
	}{{l3, HostSensor, sensor1}, {l3, HostSensor, sensor2}, {l1, HostSensor, sensor3}, {l2, HostSensor, sensor3}} {
		if err := p.from.Ping(ctx, p.host, p.to, 1); err == nil {
			t.Errorf("ping %s -> %s succeeded across the partition", p.from.Name, p.to)
		}
	}
	if err := echo("during", 1500*time.Millisecond); err == nil {
		t.Error("the established connection still carried data across the partition")
	}
	for _, to := range []netip.Addr{ep1of3, ep1of2} {
		if err := l3.Ping(ctx, HostSensor, to, 1); err != nil {
			t.Errorf("partitioned sensor to a host not cut off: %v", err)
		}
	}
	if err := heal(ctx); err != nil {
		t.Fatal(err)
	}
	if err := heal(ctx); err != nil {
		t.Errorf("second heal: %v", err)
	}
	if err := l3.Ping(ctx, HostSensor, sensor1, 1); err != nil {
		t.Errorf("after heal: %v", err)
	}
	if err := l2.Ping(ctx, HostSensor, sensor3, 1); err != nil {
		t.Errorf("after heal: %v", err)
	}
	// The connection resumes: the bytes sent during the partition are
	// retransmitted and echoed, then new ones.
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, len("during"))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "during" {
		t.Errorf("the connection after heal: %q, %v", buf, err)
	} else if err := echo("after", 10*time.Second); err != nil {
		t.Errorf("the connection after heal: %v", err)
	}
}

// WaitCarrier waits until host's interface has (or has lost) its carrier.
// Exported for the package's external tests too.
func WaitCarrier(t *testing.T, l *Lab, host, ifname string, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var running bool
		err := l.Do(host, func() error {
			ifi, err := net.InterfaceByName(ifname)
			if err != nil {
				return err
			}
			running = ifi.Flags&net.FlagRunning != 0
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if running == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: carrier still %v after 5 s", host, ifname, running)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJoinInterruptedHalfWayLeavesNothing(t *testing.T) {
	t.Parallel()
	labs := upSites(t, [][]EndpointSpec{Endpoints(2), Endpoints(2)}, "10.83.57.0/24", "10.83.58.0/24")
	failed := 0
	for _, after := range []time.Duration{time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond, 150 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(t.Context(), after)
		err := Join(ctx, labs...)
		cancel()
		if err == nil {
			if errs := unjoin(t.Context(), labs); len(errs) > 0 {
				t.Fatal(errors.Join(errs...))
			}
		} else {
			failed++
			t.Logf("cancelled after %s: %v", after, err)
		}
		for _, l := range labs {
			st, err := ReadState(l.StateDir, l.Name)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Trunks) > 0 || len(st.Routes) > 0 || len(l.Trunks) > 0 {
				t.Errorf("lab %s after a failed join still records trunks %+v, routes %v", l.Name, st.Trunks, st.Routes)
			}
			out, err := l.Run(t.Context(), HostSwitch, "ip", "-br", "link", "show")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, "tk") {
				t.Errorf("lab %s's switch after a failed join still has a trunk:\n%s", l.Name, out)
			}
			for _, host := range []string{HostSensor, "ep1", "ep2"} {
				out, err := l.Run(t.Context(), host, "ip", "route", "show")
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range labs {
					if o != l && strings.Contains(out, o.Subnet.String()) {
						t.Errorf("lab %s %s after a failed join still routes %s:\n%s", l.Name, host, o.Subnet, out)
					}
				}
			}
		}
	}
	if failed == 0 {
		t.Error("no interrupted Join failed: the test checked nothing")
	}
	// The labs join after all that.
	if err := Join(t.Context(), labs...); err != nil {
		t.Fatal(err)
	}
	if err := labs[0].Ping(t.Context(), "ep1", labs[1].Sensor.LAN.Addr.Addr(), 1); err != nil {
		t.Error(err)
	}
}

func TestJoinRefusesOverlapsAndCollisions(t *testing.T) {
	plan := func(name, subnet string) *Lab {
		st := Config{Name: name, Subnet: netip.MustParsePrefix(subnet), StateDir: t.TempDir()}.plan(time.Now())
		return &Lab{State: st}
	}
	a, b := plan("sitea", "10.83.47.0/24"), plan("siteb", "10.83.48.0/24")
	wide := plan("sitec", "10.83.0.0/16")
	clash := plan("sited", "10.83.49.0/24")
	clash.Endpoints[0].Interfaces[0].MAC = a.Sensor.LAN.MAC
	for _, tc := range []struct {
		labs []*Lab
		want string
	}{
		{[]*Lab{a}, "at least two"},
		{[]*Lab{a, nil}, "nil"},
		{[]*Lab{a, a}, "given twice"},
		{[]*Lab{a, b, wide}, "overlaps"},
		{[]*Lab{a, b, clash}, "MAC " + a.Sensor.LAN.MAC},
	} {
		err := Join(t.Context(), tc.labs...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Join(%v) = %v, want an error containing %q", labNames(slices.DeleteFunc(slices.Clone(tc.labs), func(l *Lab) bool { return l == nil })), err, tc.want)
		}
	}
	for _, l := range []*Lab{a, b, wide, clash} {
		if _, err := os.Stat(StatePath(l.StateDir, l.Name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused Join wrote lab %s's state file: %v", l.Name, err)
		}
	}
}
