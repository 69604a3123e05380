package labdeploy

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// The product's real timings: heartbeats every 15 s, missing after 3 of
// them, a 3 s reconnect grace, a startup grace of 3 intervals.
const (
	realInterval = 15 * time.Second
	startupGrace = 3 * realInterval
)

// talker pings from hosts to the sensor every 300 ms; a host can be
// silenced and resumed.
type talker struct {
	mu     sync.Mutex
	silent map[string]bool
}

func startTalking(t *testing.T, d *Deployment, hosts ...string) *talker {
	tk := &talker{silent: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	to, err := d.Lab.Addr(lab.HostSensor)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for _, h := range hosts {
				tk.mu.Lock()
				quiet := tk.silent[h]
				tk.mu.Unlock()
				if !quiet {
					_ = d.Lab.Ping(ctx, h, to, 1)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return tk
}

func (tk *talker) setSilent(host string, silent bool) {
	tk.mu.Lock()
	tk.silent[host] = silent
	tk.mu.Unlock()
}

// upRealLab brings up a lab at the product's 15 s interval, its hosts
// talking, and waits until its endpoints are connected. It returns when the
// sensor was ready.
func upRealLab(t *testing.T, n int) (*Deployment, *talker, time.Time) {
	t.Helper()
	return upRealLabOf(t, lab.Endpoints(n))
}

func upRealLabOf(t *testing.T, specs []lab.EndpointSpec) (*Deployment, *talker, time.Time) {
	t.Helper()
	n := len(specs)
	d := upLab(t, specs, Options{HeartbeatInterval: realInterval})
	started := time.Now()
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("ep%d", i+1)
	}
	tk := startTalking(t, d, hosts...)
	waitConnected(t, d, n)
	return d, tk, started
}

// afterStartupGrace waits until the sensor's startup grace has passed, so
// the rules under test are in force.
func afterStartupGrace(ready time.Time) {
	time.Sleep(time.Until(ready.Add(startupGrace + time.Second)))
}

// noMissing fails the test if any endpoint was called missing.
func noMissing(t *testing.T, d *Deployment) {
	t.Helper()
	for _, ev := range alertsOf(t, d, schema.EventHeartbeatMissing) {
		t.Errorf("%s called missing at %s: %s", ev.EndpointName, ev.Time.Format(time.RFC3339Nano), ev.Reason)
	}
}

func historyOf(t *testing.T, d *Deployment, host string, typ schema.EventType) []schema.Event {
	t.Helper()
	var hist []schema.Event
	queryJSON(t, d, &hist, "query", "history", "--endpoint", host, "--since", "10m")
	var out []schema.Event
	for _, ev := range hist {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// dropTrials is how many times the kill scenario kills the agent:
// TAPBEAT_DROP_TRIALS (the benchmark in BENCHMARKS.md runs 20), else 3.
func dropTrials(t *testing.T) int {
	if s := os.Getenv("TAPBEAT_DROP_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("TAPBEAT_DROP_TRIALS=%q: want a positive number of trials", s)
		}
		return n
	}
	return 3
}

// TestDroppedConnection runs the dropped-connection scenarios at the real
// 15 s interval, each in a lab of its own, in parallel:
//
//   - kill: SIGKILL of an agent whose host keeps sending is missing within
//     5 s (the 3-interval rule takes 45 s);
//   - restart: a service restart (goodbye, then a new agent within 2 s) is
//     never missing;
//   - crash-restart: SIGKILL and a new agent within 1 s is never missing and
//     raises one agent_restarted;
//   - link-flap: the endpoint's link down for 5 s is never missing;
//   - suspend: agent and traffic frozen for 60 s is offline, not missing.
//
// Each ends by asking whether any healthy endpoint was called missing.
//
// The scenarios run at once, each on its own goroutine, rather than with
// t.Parallel: they mostly wait on the real timers, and go test's -parallel
// cap (GOMAXPROCS, 2 on CI) would run them two at a time.
func TestDroppedConnection(t *testing.T) {
	var wg sync.WaitGroup
	defer wg.Wait()
	run := func(name string, f func(t *testing.T)) {
		wg.Add(1)
		go func() { defer wg.Done(); t.Run(name, f) }()
	}
	run("kill", func(t *testing.T) {
		d, _, ready := upRealLab(t, 2)
		ctx := context.Background()
		afterStartupGrace(ready)
		var took []time.Duration
		for trial := range dropTrials(t) {
			waitConnected(t, d, 2)
			killed := time.Now()
			if err := d.StopAgent("ep1", true); err != nil {
				t.Fatal(err)
			}
			ev, err := d.WaitAlert(ctx, 2*realInterval, func(ev schema.Event) bool {
				return ev.Type == schema.EventHeartbeatMissing && ev.EndpointName == "ep1" && ev.Time.After(killed)
			})
			if err != nil {
				t.Fatalf("trial %d: %v", trial+1, err)
			}
			took = append(took, ev.Time.Sub(killed))
			if !strings.Contains(ev.Reason, "connection dropped without goodbye") || !strings.Contains(ev.Reason, "host still sending") {
				t.Errorf("trial %d: missing alert does not say how the agent left: %q", trial+1, ev.Reason)
			}
			if err := d.StartAgent(ctx, "ep1"); err != nil {
				t.Fatal(err)
			}
			if _, err := d.WaitAlert(ctx, 2*realInterval, func(ev schema.Event) bool {
				return ev.Type == schema.EventHeartbeatRestored && ev.EndpointName == "ep1" && ev.Time.After(killed)
			}); err != nil {
				t.Fatalf("trial %d: %v", trial+1, err)
			}
		}
		sorted := slices.Clone(took)
		slices.Sort(sorted)
		t.Logf("detection after SIGKILL over %d trials: min %v, median %v, p90 %v, max %v; all %v",
			len(sorted), sorted[0], sorted[len(sorted)/2], sorted[(len(sorted)*9)/10], sorted[len(sorted)-1], took)
		for i, d := range took {
			if d > 5*time.Second {
				t.Errorf("trial %d: missing %v after the kill, want within 5 s", i+1, d)
			}
		}
		for _, ev := range alertsOf(t, d, schema.EventHeartbeatMissing) {
			if ev.EndpointName != "ep1" {
				t.Errorf("healthy %s called missing: %s", ev.EndpointName, ev.Reason)
			}
		}
	})

	run("restart", func(t *testing.T) {
		d, _, ready := upRealLab(t, 2)
		ctx := context.Background()
		afterStartupGrace(ready)
		begin := time.Now()
		if err := d.StopAgent("ep1", false); err != nil { // SIGTERM: goodbye, close_notify
			t.Fatal(err)
		}
		if err := d.StartAgent(ctx, "ep1"); err != nil {
			t.Fatal(err)
		}
		if gap := time.Since(begin); gap > 2*time.Second {
			t.Fatalf("the restart took %v, want within 2 s", gap)
		}
		time.Sleep(15 * time.Second)
		waitConnected(t, d, 2)
		noMissing(t, d)
		stopped := historyOf(t, d, "ep1", schema.EventAgentStopped)
		if len(stopped) != 1 || stopped[0].Details.(*schema.AgentStoppedDetails).Goodbye != "stop" {
			t.Errorf("agent_stopped in ep1's history: %+v, want one with goodbye stop", stopped)
		}
		if r := historyOf(t, d, "ep1", schema.EventAgentRestarted); len(r) != 0 {
			t.Errorf("a restart announced by goodbye raised agent_restarted: %+v", r)
		}
	})

	run("crash-restart", func(t *testing.T) {
		d, _, ready := upRealLab(t, 2)
		ctx := context.Background()
		afterStartupGrace(ready)
		begin := time.Now()
		if err := d.StopAgent("ep1", true); err != nil {
			t.Fatal(err)
		}
		if err := d.StartAgent(ctx, "ep1"); err != nil {
			t.Fatal(err)
		}
		if gap := time.Since(begin); gap > time.Second {
			t.Fatalf("the restart took %v, want within 1 s", gap)
		}
		time.Sleep(15 * time.Second)
		waitConnected(t, d, 2)
		noMissing(t, d)
		r := historyOf(t, d, "ep1", schema.EventAgentRestarted)
		if len(r) != 1 {
			t.Fatalf("%d agent_restarted events in ep1's history, want 1: %+v", len(r), r)
		}
		t.Logf("agent_restarted: %s", r[0].Reason)
	})

	run("link-flap", func(t *testing.T) {
		d, _, ready := upRealLab(t, 2)
		ctx := context.Background()
		afterStartupGrace(ready)
		if err := d.Lab.SetPortLink(ctx, "ep1", 0, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if err := d.Lab.SetPortLink(ctx, "ep1", 0, true); err != nil {
			t.Fatal(err)
		}
		time.Sleep(15 * time.Second)
		waitConnected(t, d, 2)
		noMissing(t, d)
	})

	run("roam", func(t *testing.T) {
		// A laptop leaves Wi-Fi for its cable: the interface carrying the
		// agent's connection loses its address and its link; the agent
		// notices, reconnects over the other interface, and the sensor
		// replaces the old connection. Never missing.
		d, _, ready := upRealLabOf(t, []lab.EndpointSpec{{Interfaces: 2}, {}})
		ctx := context.Background()
		afterStartupGrace(ready)
		itfs, err := d.Lab.Interfaces("ep1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Lab.Run(ctx, "ep1", "ip", "addr", "flush", "dev", itfs[0].Name); err != nil {
			t.Fatal(err)
		}
		if err := d.Lab.SetPortLink(ctx, "ep1", 0, false); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(d.AgentOutput("ep1"), "went away") {
			if time.Now().After(deadline) {
				t.Fatalf("the agent did not notice its interface went away:\n%s", d.AgentOutput("ep1"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(5 * time.Second)
		waitConnected(t, d, 2)
		noMissing(t, d)
	})

	run("suspend", func(t *testing.T) {
		// A suspended laptop: the agent is frozen and the host answers
		// nothing (a frozen agent on a live host is different: its kernel
		// still answers the sensor, and that is missing).
		d, tk, _ := upRealLab(t, 2)
		ctx := context.Background()
		if err := d.PauseAgent("ep1", true); err != nil {
			t.Fatal(err)
		}
		tk.setSilent("ep1", true)
		if err := d.Lab.SetPortLink(ctx, "ep1", 0, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Second)
		var answer endpointList
		queryJSON(t, d, &answer, "query", "endpoints")
		for _, e := range answer.Endpoints {
			if e.Name == "ep1" && e.Status != schema.StatusOffline {
				t.Errorf("ep1 suspended for 60 s is %s, want offline", e.Status)
			}
		}
		if err := d.Lab.SetPortLink(ctx, "ep1", 0, true); err != nil {
			t.Fatal(err)
		}
		if err := d.PauseAgent("ep1", false); err != nil {
			t.Fatal(err)
		}
		tk.setSilent("ep1", false)
		waitConnected(t, d, 2)
		noMissing(t, d)
	})
}
