package labdeploy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/api"
	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// The hostile-peer suite: three real agents heartbeat throughout while a
// fourth host of the lab (ep4, enrolled or not) attacks the sensor. Every
// scenario ends asking whether a healthy endpoint was called missing.

// hostileLab is a lab with three agents talking and an attacker host ep4
// (enrolled, with no agent running).
func hostileLab(t *testing.T) *Deployment {
	t.Helper()
	d := upLab(t, []lab.EndpointSpec{{}, {}, {}, {Unmanaged: true}}, Options{})
	keepTalking(t, d, "ep1", "ep2", "ep3")
	if err := d.Enroll(context.Background(), "ep4"); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, d, 3)
	// The listener re-reads the trust store every second: let it see ep4.
	time.Sleep(1500 * time.Millisecond)
	t.Cleanup(func() {
		for _, ev := range alertsOf(t, d, schema.EventHeartbeatMissing) {
			if slices.Contains([]string{"ep1", "ep2", "ep3"}, ev.EndpointName) {
				t.Errorf("healthy endpoint called missing: %s", ev.Reason)
			}
		}
	})
	return d
}

// dialAs opens a LAN-zone TLS connection from host with the bundle of name.
func dialAs(t *testing.T, d *Deployment, host, name string) *tls.Conn {
	t.Helper()
	c, err := tryDialAs(t, d, host, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryDialAs(t *testing.T, d *Deployment, host, name string) (*tls.Conn, error) {
	t.Helper()
	b, err := pki.ReadBundle(d.BundlePath(name))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ClientConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	to, err := d.Lab.Addr(lab.HostSensor)
	if err != nil {
		t.Fatal(err)
	}
	var c *tls.Conn
	err = d.Lab.Do(host, func() error {
		var err error
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", netip.AddrPortFrom(to, 8347).String(), cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial from %s as %s: %w", host, name, err)
	}
	return c, nil
}

func send(t *testing.T, c net.Conn, typ wire.Type, v any) error {
	t.Helper()
	f, err := wire.Marshal(typ, v)
	if err != nil {
		t.Fatal(err)
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Write(f)
	return err
}

func hostIface(t *testing.T, d *Deployment, host string) lab.Interface {
	t.Helper()
	ifs, err := d.Lab.Interfaces(host)
	if err != nil || len(ifs) == 0 {
		t.Fatalf("interfaces of %s: %v", host, err)
	}
	return ifs[0]
}

func apiClient(d *Deployment) *api.Client {
	return api.NewUnixClient(filepath.Join(d.Opts.Dir, "tapbeat.sock"))
}

func TestHostilePeers(t *testing.T) {
	t.Run("silent connection flood", testSilentFlood)
	t.Run("claim of another endpoint", testClaimOfAnother)
	t.Run("cloned bundle", testClonedBundle)
	t.Run("hello flood", testHelloFlood)
}

// testSilentFlood: 40 addresses on ep4 hold silent connections to the LAN
// zone, renewing each as the sensor drops it; an agent restarting meanwhile
// is back within one interval.
func testSilentFlood(t *testing.T) {
	t.Parallel()
	d := hostileLab(t)
	ctx := context.Background()
	itf := hostIface(t, d, "ep4")
	var srcs []netip.Addr
	for i := range 40 {
		a := netip.AddrFrom4([4]byte{itf.Addr.Addr().As4()[0], itf.Addr.Addr().As4()[1], itf.Addr.Addr().As4()[2], byte(150 + i)})
		if _, err := d.Lab.Run(ctx, "ep4", "ip", "addr", "add", netip.PrefixFrom(a, itf.Addr.Bits()).String(), "dev", itf.Name); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, a)
	}
	to, _ := d.Lab.Addr(lab.HostSensor)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var held sync.Map
	for _, src := range srcs {
		for range 4 { // 160 connections: more than the 128 handshake slots
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					var c net.Conn
					_ = d.Lab.Do("ep4", func() error {
						var err error
						c, err = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: time.Second}).Dial("tcp", netip.AddrPortFrom(to, 8347).String())
						return err
					})
					if c != nil {
						held.Store(c, true)
						c.SetReadDeadline(time.Now().Add(5 * time.Second))
						c.Read(make([]byte, 1))
						c.Close()
						held.Delete(c)
					}
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}()
		}
	}
	defer func() {
		close(stop)
		held.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		wg.Wait()
	}()
	time.Sleep(2 * interval)
	if err := d.StopAgent("ep1", true); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	if err := d.StartAgent(ctx, "ep1"); err != nil {
		t.Fatal(err)
	}
	cl := apiClient(d)
	defer cl.Close()
	var back time.Time
	for end := time.Now().Add(4 * interval); back.IsZero() && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		l, err := cl.Endpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range l.Endpoints {
			if e.Name == "ep1" && e.Connected && e.LastHeartbeat.After(restarted) {
				back = e.LastHeartbeat
			}
		}
	}
	if back.IsZero() {
		t.Fatalf("restarted agent not back during the flood:\n%s", d.AgentOutput("ep1"))
	}
	if took := back.Sub(restarted); took > interval {
		t.Errorf("restarted agent back after %v, more than one interval (%v)", took, interval)
	} else {
		t.Logf("restarted agent back after %v during a 160-connection silent flood from 40 addresses", took)
	}
	time.Sleep(2 * interval)
}

// testClaimOfAnother: enrolled ep4 declares ep1's MAC and IP and leaves.
// ep1 is never on the at-risk list, `who` for its IP still names it, and
// one mac_conflict is raised. The same hello carries terminal escapes in
// its user name and health reason: every output escapes them.
func testClaimOfAnother(t *testing.T) {
	t.Parallel()
	d := hostileLab(t)
	ctx := context.Background()
	victim := hostIface(t, d, "ep1")
	vMAC, _ := schema.ParseMAC(victim.MAC)
	vIP := victim.Addr.Addr()
	whoNames := func() string {
		out, err := d.Tapbeat(ctx, "query", "who", "--dir", d.Opts.Dir, "--ip", vIP.String(), "--format", "json")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if !strings.Contains(whoNames(), `"name": "ep1"`) {
		t.Fatalf("who %s does not name ep1 before the claim:\n%s", vIP, whoNames())
	}
	c := dialAs(t, d, "ep4", "ep4")
	go func() {
		// Read what the sensor says (config, at-risk list, an error).
		for {
			f, err := wire.ReadFrame(c)
			if err != nil {
				t.Logf("ep4 connection: %v", err)
				return
			}
			if f.Type == wire.TypeError {
				e, _ := wire.DecodeError(f.Payload)
				t.Logf("ep4 connection: sensor says %s: %s", e.Code, e.Message)
			}
		}
	}()
	const evil = "eve\x1b]0;owned\x07\u202e"
	err := send(t, c, wire.TypeHello, wire.Hello{Health: schema.HealthRed, Reasons: []string{"av off\x1b[2J\x00"}, Users: []string{evil},
		Interfaces: []wire.Interface{{Name: "eth0", MAC: vMAC, IPs: []netip.Addr{vIP}}}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(interval)
	c.Close()
	cl := apiClient(d)
	defer cl.Close()
	// Well past ep4's missing deadline (3 intervals) and a push or two.
	for end := time.Now().Add(6 * interval); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		l, err := cl.AtRisk(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range l.Endpoints {
			if e.Name == "ep1" || slices.Contains(e.MACs, vMAC) || slices.Contains(e.IPs, vIP) {
				t.Fatalf("at-risk list names the victim: %+v", e)
			}
		}
	}
	if out := whoNames(); !strings.Contains(out, `"name": "ep1"`) {
		t.Errorf("who %s no longer names ep1:\n%s", vIP, out)
	}
	if n := len(alertsOf(t, d, schema.EventMACConflict)); n != 1 {
		out, _ := d.Tapbeat(ctx, "query", "history", "--dir", d.Opts.Dir, "--endpoint", "ep4", "--since", "1h", "--format", "json")
		t.Errorf("%d mac_conflict alerts, want 1; ep4's history:\n%s\nauth_failed: %+v", n, out, alertsOf(t, d, schema.EventAuthFailed))
	}
	// The agents' own copy of the list.
	for _, h := range []string{"ep2", "ep3"} {
		b, err := os.ReadFile(filepath.Join(d.Opts.Dir, "agents", h, "at_risk.json"))
		if err == nil && (strings.Contains(strings.ToLower(string(b)), strings.ToLower(victim.MAC)) || strings.Contains(string(b), `"`+vIP.String()+`"`)) {
			t.Errorf("%s's saved at-risk list names the victim:\n%s", h, b)
		}
	}
	for _, args := range [][]string{{"query", "endpoints"}, {"query", "endpoints", "--format", "csv"},
		{"query", "alerts", "--since", "1h"}, {"query", "alerts", "--since", "1h", "--format", "csv"}} {
		out, err := d.Tapbeat(ctx, append(args, "--dir", d.Opts.Dir)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"\x1b", "\x07", "\x00", "\u202e"} {
			if strings.Contains(out, bad) {
				t.Errorf("%v prints %q raw", args, bad)
			}
		}
	}
}

// testClonedBundle: ep1's bundle run by a second agent on ep4. One
// duplicate_identity names both addresses; ep1's connection is not knocked
// off.
func testClonedBundle(t *testing.T) {
	t.Parallel()
	d := hostileLab(t)
	ctx := context.Background()
	start := time.Now()
	clone, err := d.Lab.Start(ctx, "ep4", filepath.Join(binDir, "tapbeat-agent"), "run", "--bundle", d.BundlePath("ep1"),
		"--state-dir", filepath.Join(t.TempDir(), "clone"))
	if err != nil {
		t.Fatal(err)
	}
	defer clone.Stop()
	ev, err := d.WaitAlert(ctx, 5*interval, func(ev schema.Event) bool { return ev.Type == schema.EventDuplicateIdentity })
	if err != nil {
		t.Fatal(err)
	}
	ep1, _ := d.Lab.Addr("ep1")
	ep4, _ := d.Lab.Addr("ep4")
	if !slices.Contains(ev.IPs, ep1) || !slices.Contains(ev.IPs, ep4) {
		t.Errorf("duplicate_identity addresses %v, want %s and %s", ev.IPs, ep1, ep4)
	}
	time.Sleep(5 * interval)
	if n := len(alertsOf(t, d, schema.EventDuplicateIdentity)); n != 1 {
		t.Errorf("%d duplicate_identity alerts, want 1", n)
	}
	var hist []schema.Event
	queryJSON(t, d, &hist, "query", "history", "--endpoint", "ep1", "--since", "1h")
	for _, ev := range hist {
		if ev.Time.After(start) && (ev.Type == schema.EventEndpointDisconnected || ev.Type == schema.EventEndpointHello) {
			t.Errorf("ep1 flapped: %s at %v", ev.Type, ev.Time)
		}
	}
}

// testHelloFlood: enrolled ep4 sends maximum-size hellos every 50 ms,
// reconnecting whenever it is cut off. The sensor's RSS grows by less
// than 50 MB and one limit_exceeded names ep4.
func testHelloFlood(t *testing.T) {
	t.Parallel()
	d := hostileLab(t)
	pid := d.SensorPID()
	before := rss(t, pid)
	big := wire.Hello{Health: schema.HealthGreen}
	for i := range 40 {
		itf := wire.Interface{Name: fmt.Sprintf("e%02d", i), MAC: schema.MACFromUint64(0x020000ab0000 + uint64(i))}
		for j := range 64 {
			itf.IPs = append(itf.IPs, netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(i), byte(j)}))
		}
		big.Interfaces = append(big.Interfaces, itf)
	}
	frame, _ := wire.Marshal(wire.TypeHello, big)
	t.Logf("hello frame %d bytes", len(frame))
	var sent, conns, refused int
	peak := before
	for end := time.Now().Add(8 * interval); time.Now().Before(end); {
		c, err := tryDialAs(t, d, "ep4", "ep4")
		if err != nil {
			refused++
			time.Sleep(100 * time.Millisecond)
			continue
		}
		conns++
		for time.Now().Before(end) {
			if err := send(t, c, wire.TypeHello, big); err != nil {
				break
			}
			sent++
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
		peak = max(peak, rss(t, pid))
	}
	time.Sleep(interval)
	after := max(peak, rss(t, pid))
	t.Logf("%d hellos of %d bytes over %d connections (%d refused): sensor RSS %d MB -> %d MB", sent, len(frame), conns, refused, before>>20, after>>20)
	if after-before > 50<<20 {
		t.Errorf("sensor RSS grew by %d MB under the hello flood, want < 50 MB", (after-before)>>20)
	}
	if n := len(alertsOf(t, d, schema.EventLimitExceeded)); n < 1 {
		t.Error("no limit_exceeded alert for the hello flood")
	}
}

// rss returns a process's resident set size in bytes.
func rss(t *testing.T, pid int) uint64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}
