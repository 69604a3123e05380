package labdeploy

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// fleetInterval is the fleet lab's heartbeat interval: long enough that a
// silent sensor is noticed (fleet.silentAfter, 2 intervals) well before an
// endpoint record's freshness bound runs out (3 intervals).
const fleetInterval = 5 * time.Second

// upFleetLab brings up three labs joined into one network, one sensor per
// lab in one fleet, and the agents. Sites and their endpoints:
//
//	s1 (lab 1): ep1 "A1", agent on s1; ep2 "A2", agent on s3
//	s2 (lab 2): ep1 "E1", agent on s1; ep2 "E2", agent on s2
//	s3 (lab 3): ep1 "C1", agent on s1
//
// so every sensor sees the frames of an endpoint another sensor holds.
func upFleetLab(t *testing.T) *Fleet {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ping", "nft")
	ctx := context.Background()
	specs := [][]lab.EndpointSpec{lab.Endpoints(2), lab.Endpoints(2), lab.Endpoints(1)}
	var labs []*lab.Lab
	for i, sp := range specs {
		name := strings.ReplaceAll(testenv.UniqueName("fl"), "-", "")
		l, err := lab.Up(ctx, lab.Config{Name: name, Endpoints: sp, StateDir: t.TempDir(),
			Subnet: netip.MustParsePrefix(fmt.Sprintf("10.83.%d.0/24", 47+i))})
		if err != nil {
			t.Fatal(err)
		}
		labs = append(labs, l)
	}
	t.Cleanup(func() {
		for _, l := range labs {
			if err := l.Down(context.Background()); err != nil {
				t.Errorf("lab down: %v", err)
			}
		}
	})
	if err := lab.Join(ctx, labs...); err != nil {
		t.Fatal(err)
	}
	issuedBy := map[string]int{"0/ep2": 2, "1/ep1": 0, "2/ep1": 0}
	start := time.Now()
	fl, err := DeployFleet(ctx, labs, FleetOptions{
		Options:     Options{Bin: binDir, HeartbeatInterval: fleetInterval},
		Base:        t.TempDir(),
		StartAgents: true,
		IssuedBy: func(site int, host string) int {
			if s, ok := issuedBy[fmt.Sprintf("%d/%s", site, host)]; ok {
				return s
			}
			return site
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fleet of 3 deployed and healthy in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		outs := make([]string, len(fl.Sites))
		for i, d := range fl.Sites {
			outs[i] = d.SensorOutput()
		}
		fl.Stop()
		if t.Failed() {
			for i, o := range outs {
				t.Logf("%s log:\n%s", SiteName(i), o)
			}
		}
	})
	waitFleetConnected(t, fl, map[string]int{"s1": 3, "s2": 1, "s3": 1}, 4*fleetInterval)
	// Every endpoint keeps sending on its own switch: pings to its own
	// site's sensor.
	for _, d := range fl.Sites {
		var hosts []string
		for _, ep := range d.Lab.Endpoints {
			hosts = append(hosts, ep.Name)
		}
		keepTalking(t, d, hosts...)
	}
	return fl
}

// waitFleetConnected waits until the fleet's shared state counts want
// connected endpoints per holding sensor, as every sensor sees it.
func waitFleetConnected(t *testing.T, fl *Fleet, want map[string]int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for time.Since(start) < limit {
		ok := true
		for i := range fl.Sites {
			st, err := fl.Status(context.Background(), i)
			if err != nil {
				last, ok = err.Error(), false
				break
			}
			for s, n := range want {
				if st.Endpoints[s] != n {
					last, ok = fmt.Sprintf("%s sees %v connected, want %v", SiteName(i), st.Endpoints, want), false
				}
			}
		}
		if ok {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("endpoints not connected as wanted within %s: %s", limit, last)
	return 0
}

// verdicts returns every sensor's alerts of typ, "sensor: endpoint-or-MAC".
func verdicts(t *testing.T, fl *Fleet, typ schema.EventType) []string {
	t.Helper()
	all, err := fl.Alerts()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for s, evs := range all {
		for _, ev := range evs {
			if ev.Type != typ {
				continue
			}
			who := ev.EndpointName
			if who == "" {
				who = fmt.Sprint(ev.MACs)
			}
			out = append(out, fmt.Sprintf("%s: %s at %s (%s)", s, who, ev.Time.Format("15:04:05.000"), ev.Reason))
		}
	}
	return out
}

// noFalseVerdicts fails the test for any heartbeat_missing or no_heartbeat
// anywhere in the fleet beyond the expected ones: missing episodes of
// heartbeat_missing in all, and at most one no_heartbeat per MAC of
// revoked. An episode's escalations (still missing at the deadline, then
// later) are reminders, not new verdicts: they must come from the sensor
// that raised the episode.
func noFalseVerdicts(t *testing.T, fl *Fleet, step string, missing int, revoked ...schema.MAC) {
	t.Helper()
	all, err := fl.Alerts()
	if err != nil {
		t.Fatal(err)
	}
	var episodes []string
	raisedBy := map[string]string{} // endpoint -> the sensor that raised its episode
	for s, evs := range all {
		for _, ev := range evs {
			if ev.Type == schema.EventHeartbeatMissing && ev.PreviousStatus != schema.StatusMissing {
				episodes = append(episodes, fmt.Sprintf("%s: %s at %s (%s)", s, ev.EndpointName, ev.Time.Format("15:04:05.000"), ev.Reason))
				raisedBy[ev.EndpointID] = s
			}
		}
	}
	if len(episodes) != missing {
		t.Errorf("%s: %d heartbeat_missing episodes fleet-wide, want %d: %v", step, len(episodes), missing, episodes)
	}
	for s, evs := range all {
		for _, ev := range evs {
			if ev.Type == schema.EventHeartbeatMissing && ev.PreviousStatus == schema.StatusMissing && raisedBy[ev.EndpointID] != s {
				t.Errorf("%s: %s escalated heartbeat_missing for %s, raised by %q: %s", step, s, ev.EndpointName, raisedBy[ev.EndpointID], ev.Reason)
			}
		}
	}
	seen := map[schema.MAC]int{}
	for s, evs := range all {
		for _, ev := range evs {
			if ev.Type != schema.EventNoHeartbeat {
				continue
			}
			for _, m := range ev.MACs {
				seen[m]++
				if !slices.Contains(revoked, m) {
					t.Errorf("%s: %s raised no_heartbeat for %s, a MAC of an enrolled, heartbeating endpoint, at %s: %s",
						step, s, m, ev.Time.Format("15:04:05.000"), ev.Reason)
				}
			}
		}
	}
	for m, n := range seen {
		if n > 1 {
			t.Errorf("%s: no_heartbeat for %s raised %d times fleet-wide, want once", step, m, n)
		}
	}
}

// waitAgentLine waits until host's agent logs a line containing text after
// the first `after` bytes of its output, and returns how long that took.
func waitAgentLine(t *testing.T, d *Deployment, host, text string, after int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		out := d.AgentOutput(host)
		if len(out) > after && strings.Contains(out[after:], text) {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s's agent did not log %q within %s:\n%s", host, text, limit, d.AgentOutput(host))
	return 0
}

// A fleet of three sensors, each with its own switch and mirror port, and
// endpoints whose agents reach one sensor while their frames are mirrored
// to another: one verdict fleet-wide, through a moved link, a killed agent,
// a revocation on another sensor, a partitioned sensor and a killed sensor.
func TestFleetOneVerdict(t *testing.T) {
	fl := upFleetLab(t)
	s1, s2, s3 := fl.Sites[0], fl.Sites[1], fl.Sites[2]
	ctx := context.Background()

	// E1's agent is on s1, its frames reach only s2; C1's agent is on s1,
	// its frames reach only s3; A2's agent is on s3, its frames reach only
	// s1. Three intervals past the missing deadline: nothing raised.
	time.Sleep(6 * fleetInterval)
	noFalseVerdicts(t, fl, "heartbeat on one sensor, frames on another", 0)

	// E2's cable moves from s2's switch to s3's while it runs.
	if err := s2.Lab.MovePort(ctx, "ep2", 0, s3.Lab); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * fleetInterval)
	noFalseVerdicts(t, fl, "E2's link moved to another switch", 0)

	// SIGKILL E1's agent while E1 keeps sending: s1 sees the drop, s2 sees
	// the frames: exactly one heartbeat_missing fleet-wide, within one
	// interval after the reconnect grace.
	killed := time.Now()
	if err := s2.StopAgent("ep1", true); err != nil {
		t.Fatal(err)
	}
	ev, err := s2.WaitAlert(ctx, 3*time.Second+2*fleetInterval, func(ev schema.Event) bool {
		return ev.Type == schema.EventHeartbeatMissing && ev.EndpointName == "s2-ep1"
	})
	if err != nil {
		t.Fatalf("E1 killed: s2, which sees its frames, raised no heartbeat_missing: %v (fleet-wide: %v)", err,
			verdicts(t, fl, schema.EventHeartbeatMissing))
	}
	took := ev.Time.Sub(killed)
	t.Logf("E1's agent killed: heartbeat_missing on s2 after %v", took.Round(time.Millisecond))
	if limit := 3*time.Second + fleetInterval; took > limit {
		t.Errorf("heartbeat_missing %v after the kill, want within one interval after the 3 s reconnect grace (%v)", took, limit)
	}
	time.Sleep(2 * fleetInterval)
	noFalseVerdicts(t, fl, "E1's agent killed", 1)

	// E1's agent comes back: restored once, then revoked on s3 while it is
	// connected to s1: s1 closes its connection within 5 s.
	n := len(s2.AgentOutput("ep1"))
	if err := s2.StartAgent(ctx, "ep1"); err != nil {
		t.Fatal(err)
	}
	waitAgentLine(t, s2, "ep1", "connected to sensor", n, 2*fleetInterval)
	if _, err := s2.WaitAlert(ctx, 2*fleetInterval, func(ev schema.Event) bool {
		return ev.Type == schema.EventHeartbeatRestored && ev.EndpointName == "s2-ep1"
	}); err != nil {
		t.Errorf("E1's agent back: no heartbeat_restored on s2: %v", err)
	}
	if r := verdicts(t, fl, schema.EventHeartbeatRestored); len(r) != 1 {
		t.Errorf("heartbeat_restored fleet-wide: %v, want exactly one", r)
	}
	revoked := time.Now()
	if _, err := s3.Tapbeat(ctx, "revoke", "--dir", s3.Opts.Dir, "--name", "s2-ep1"); err != nil {
		t.Fatal(err)
	}
	ev, err = s1.WaitAlert(ctx, 10*time.Second, func(ev schema.Event) bool {
		return ev.Type == schema.EventEndpointRemoved && ev.EndpointName == "s2-ep1"
	})
	if err != nil {
		t.Fatalf("revoked on s3: s1, which holds E1's connection, did not remove it: %v", err)
	}
	took = ev.Time.Sub(revoked)
	t.Logf("revoked on s3: s1 closed E1's connection after %v", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("revocation on s3 reached s1's connection after %v, want within 5 s", took)
	}
	// E1 keeps sending without an agent: from now on it is a station
	// without heartbeat, raised once fleet-wide.
	if err := s2.StopAgent("ep1", false); err != nil {
		t.Fatal(err)
	}
	e1 := macOf(t, s2.Lab, "ep1")

	// Cut s3 off from s1 and s2: s3 raises fleet_degraded, nobody calls an
	// endpoint missing; after healing, the fleet is whole again within 10 s.
	a1, _ := s1.Lab.Addr(lab.HostSensor)
	a2, _ := s2.Lab.Addr(lab.HostSensor)
	heal, err := s3.Lab.Partition(ctx, lab.HostSensor, a1, a2)
	if err != nil {
		t.Fatal(err)
	}
	ev, err = s3.WaitAlert(ctx, 30*time.Second, func(ev schema.Event) bool { return ev.Type == schema.EventFleetDegraded })
	if err != nil {
		heal(ctx)
		t.Fatalf("s3 cut off: no fleet_degraded: %v", err)
	}
	if !strings.Contains(ev.Reason, "cut off from the majority of the fleet") {
		t.Errorf("s3's fleet_degraded says %q, want it cut off from the majority", ev.Reason)
	}
	time.Sleep(4 * fleetInterval)
	noFalseVerdicts(t, fl, "s3 partitioned", 1, e1)
	if err := heal(ctx); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	// Converged: s3 has the shared state again (fleet_restored) and the
	// majority's view of the fleet is whole (s3 registered and current,
	// every stream led).
	ev, err = s3.WaitAlert(ctx, 30*time.Second, func(ev schema.Event) bool {
		return ev.Type == schema.EventFleetRestored && ev.Time.After(healed.Add(-time.Second))
	})
	if err != nil {
		t.Fatalf("s3 healed: no fleet_restored: %v", err)
	}
	restored := ev.Time.Sub(healed)
	if _, err := fl.WaitReachable(ctx, 30*time.Second); err != nil {
		t.Fatalf("after healing: %v", err)
	}
	took = time.Since(healed)
	t.Logf("partition healed: fleet_restored on s3 after %v, every sensor sees every other current after %v",
		restored.Round(time.Millisecond), took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("the fleet converged %v after healing, want within 10 s", took)
	}
	// s3 stopped its JetStream while cut off, so its Raft terms did not
	// move on: its return leaves the majority's stream leaders in place,
	// and every stream is led and every status healthy within the bound.
	if _, err := fl.WaitHealthy(ctx, 30*time.Second); err != nil {
		t.Fatalf("after healing: %v", err)
	}
	took = time.Since(healed)
	t.Logf("every stream led again and every sensor's status healthy %v after healing", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("streams led and every status healthy %v after healing, want within 10 s", took)
	}
	// E1, revoked before the partition and still sending, is a station
	// without heartbeat: held back while the fleet could not vouch for its
	// MAC, raised once after healing.
	if _, err := s2.WaitAlert(ctx, 6*fleetInterval, func(ev schema.Event) bool {
		return ev.Type == schema.EventNoHeartbeat && slices.Contains(ev.MACs, e1)
	}); err != nil {
		t.Errorf("E1 revoked and still sending: no no_heartbeat on s2 after healing: %v", err)
	}
	time.Sleep(2 * fleetInterval)
	noFalseVerdicts(t, fl, "partition healed", 1, e1)

	// SIGKILL s1: its agents (A1, C1) are back on s2 or s3 within 2
	// intervals; C1's frames reach s3 throughout: no false missing.
	nC1 := len(s3.AgentOutput("ep1"))
	nA1 := len(s1.AgentOutput("ep1"))
	if err := s1.KillSensor(); err != nil {
		t.Fatal(err)
	}
	tC1 := waitAgentLine(t, s3, "ep1", "connected to sensor", nC1, 4*fleetInterval)
	tA1 := waitAgentLine(t, s1, "ep1", "connected to sensor", nA1, 4*fleetInterval)
	t.Logf("s1 killed: C1 back on another sensor after %v, A1 after %v", tC1.Round(time.Millisecond), tA1.Round(time.Millisecond))
	for what, d := range map[string]time.Duration{"C1": tC1, "A1": tA1} {
		if d > 2*fleetInterval {
			t.Errorf("%s failed over after %v, want within 2 intervals (%v)", what, d, 2*fleetInterval)
		}
	}
	time.Sleep(4 * fleetInterval)
	noFalseVerdicts(t, fl, "s1 killed", 1, e1)
}

// A sensor running alone (`init --fleet-addr`) with its agents connected
// becomes a fleet when `tapbeat fleet add` names a second sensor: it
// rejoins as a cluster node without a restart, its agents stay connected,
// and the second sensor joins it.
func TestFleetGrowsWhileRunning(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ping")
	ctx := context.Background()
	var labs []*lab.Lab
	for i := range 2 {
		name := strings.ReplaceAll(testenv.UniqueName("fg"), "-", "")
		l, err := lab.Up(ctx, lab.Config{Name: name, Endpoints: lab.Endpoints(1), StateDir: t.TempDir(),
			Subnet: netip.MustParsePrefix(fmt.Sprintf("10.83.%d.0/24", 57+i))})
		if err != nil {
			t.Fatal(err)
		}
		labs = append(labs, l)
		t.Cleanup(func() { _ = l.Down(context.Background()) })
	}
	if err := lab.Join(ctx, labs...); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	var sites []*Deployment
	for i, l := range labs {
		sites = append(sites, &Deployment{Lab: l, agents: map[string]*lab.Process{}, Opts: Options{Bin: binDir,
			Dir: filepath.Join(base, SiteName(i)), EndpointPrefix: SiteName(i) + "-", HeartbeatInterval: fleetInterval}})
	}
	s1, s2 := sites[0], sites[1]
	fl := &Fleet{Sites: sites[:1]}
	t.Cleanup(func() { s1.Stop(); s2.Stop() })
	a1, _ := labs[0].Addr(lab.HostSensor)
	a2, _ := labs[1].Addr(lab.HostSensor)
	if _, err := s1.Tapbeat(ctx, "init", "--dir", s1.Opts.Dir, "--org", "Lab", "--lan", a1.String(),
		"--heartbeat-interval", fleetInterval.String(), "--fleet-addr", fleetAddr(a1.String()), "--fleet-name", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := s1.Enroll(ctx, "ep1"); err != nil {
		t.Fatal(err)
	}
	if err := s1.StartSensor(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s1.StartAgent(ctx, "ep1"); err != nil {
		t.Fatal(err)
	}
	waitAgentLine(t, s1, "ep1", "connected to sensor", 0, 2*fleetInterval)
	keepTalking(t, s1, "ep1")
	if _, err := fl.WaitHealthy(ctx, 60*time.Second, 0); err != nil {
		t.Fatalf("the sensor alone in its fleet: %v", err)
	}

	join := filepath.Join(base, "s2.fleet.json")
	if _, err := s1.Tapbeat(ctx, "fleet", "add", "--dir", s1.Opts.Dir, "--name", "s2", "--lan", a2.String(),
		"--fleet-addr", fleetAddr(a2.String()), "--out", join); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Tapbeat(ctx, "init", "--dir", s2.Opts.Dir, "--join", join); err != nil {
		t.Fatal(err)
	}
	if err := s2.StartSensor(ctx); err != nil {
		t.Fatal(err)
	}
	fl.Sites = sites
	took, err := fl.WaitHealthy(ctx, 90*time.Second)
	if err != nil {
		t.Fatalf("after fleet add, without restarting s1: %v\ns1:\n%s", err, s1.SensorOutput())
	}
	t.Logf("s1 rejoined as a cluster node and s2 joined: the fleet of 2 healthy %v after s2 started", took.Round(time.Millisecond))
	if !strings.Contains(s1.SensorOutput(), "joining again") {
		t.Error("s1 did not rejoin the fleet in place")
	}
	if n := strings.Count(s1.AgentOutput("ep1"), "connected to sensor"); n != 1 {
		t.Errorf("ep1's agent connected %d times, want once: s1 kept it connected while it rejoined", n)
	}
	noFalseVerdicts(t, fl, "a sensor alone became a fleet", 0)
}
