package labdeploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// verdictLab is a lab of three endpoints whose agents run and whose hosts
// ping the sensor every 300 ms, with the sensor's file saying fileInterval.
func verdictLab(t *testing.T, fileInterval time.Duration, opts Options) *Deployment {
	t.Helper()
	testenv.RequireCommands(t, "env")
	opts.HeartbeatInterval = fileInterval
	d := upLab(t, lab.Endpoints(3), opts)
	keepTalking(t, d, "ep1", "ep2", "ep3")
	waitConnected(t, d, 3)
	return d
}

// waitToldInterval waits until every agent has logged being told iv, more
// often than before (seen), and fails if that takes longer than 2 s.
func waitToldInterval(t *testing.T, d *Deployment, iv time.Duration, seen map[string]int) {
	t.Helper()
	line := "interval=" + iv.String()
	start := time.Now()
	for _, h := range []string{"ep1", "ep2", "ep3"} {
		for strings.Count(d.AgentOutput(h), line) <= seen[h] {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s not told heartbeat %s within 2 s:\n%s", h, line, d.AgentOutput(h))
			}
			time.Sleep(50 * time.Millisecond)
		}
		seen[h] = strings.Count(d.AgentOutput(h), line)
	}
	t.Logf("agents heartbeat every %s, told within %s", iv, time.Since(start).Round(10*time.Millisecond))
}

// noFalseMissing fails the test for any heartbeat_missing so far.
func noFalseMissing(t *testing.T, d *Deployment, when string) {
	t.Helper()
	if m := alertsOf(t, d, schema.EventHeartbeatMissing); len(m) != 0 {
		t.Fatalf("%s: %d false heartbeat_missing, first %s: %s", when, len(m), m[0].EndpointName, m[0].Reason)
	}
}

// killedIsMissing SIGKILLs ep1's agent (its host keeps pinging) and
// requires heartbeat_missing for it, and for no other endpoint. The killed
// agent's connection drops without goodbye, so the verdict comes from the
// dropped-connection rule: after the reconnect grace (3 s, or half the
// missing deadline if shorter) and no later than one interval after the
// 3-interval deadline.
func killedIsMissing(t *testing.T, d *Deployment, iv time.Duration) {
	t.Helper()
	noFalseMissing(t, d, "before the kill")
	killed := time.Now()
	if err := d.StopAgent("ep1", true); err != nil {
		t.Fatal(err)
	}
	deadline := 3 * iv
	grace := min(3*time.Second, deadline/2)
	ev, err := d.WaitAlert(context.Background(), deadline+5*iv, func(ev schema.Event) bool {
		return ev.Type == schema.EventHeartbeatMissing && ev.EndpointName == "ep1"
	})
	if err != nil {
		t.Fatal(err)
	}
	took := ev.Time.Sub(killed)
	var silent float64
	if d, ok := ev.Details.(*schema.HeartbeatMissingDetails); ok {
		silent = d.SilentForSeconds
	}
	if took < grace || took > deadline+iv {
		t.Errorf("ep1 raised missing %s after its agent was killed, want %s-%s", took, grace, deadline+iv)
	}
	if !strings.Contains(ev.Reason, "without goodbye") {
		t.Errorf("missing alert does not say how the agent left: %q", ev.Reason)
	}
	t.Logf("killed agent raised missing after %.2fs of silence, %s after the kill (deadline %s)", silent, took.Round(10*time.Millisecond), deadline)
	time.Sleep(iv)
	for _, m := range alertsOf(t, d, schema.EventHeartbeatMissing) {
		if m.EndpointName != "ep1" {
			t.Errorf("false heartbeat_missing for %s: %s", m.EndpointName, m.Reason)
		}
	}
}

// TestVerdictsYouCanTrust runs each way of setting the interval, a frozen
// sensor and a CPU-starved sensor in labs of their own, side by side (all
// at once, whatever -parallel says, so the whole takes about as long as
// the longest): no healthy endpoint may be called missing, and a killed
// agent still is. The CPU starvation ends before any other lab kills its
// agent, so it only adds load to their observation windows.
func TestVerdictsYouCanTrust(t *testing.T) {
	testenv.RequireRoot(t)
	var wg sync.WaitGroup
	scenario := func(name string, f func(t *testing.T)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, f)
		}()
	}
	defer wg.Wait()
	observe := 60 * time.Second
	if v, err := time.ParseDuration(os.Getenv("TAPBEAT_VERDICT_OBSERVE")); err == nil {
		observe = v // shorter while debugging a scenario
	}
	scenario("flag", func(t *testing.T) {
		d := verdictLab(t, 15*time.Second, Options{SensorArgs: []string{"--heartbeat-interval", "1s", "--missing-after", "3"}})
		waitToldInterval(t, d, time.Second, map[string]int{})
		time.Sleep(observe)
		killedIsMissing(t, d, time.Second)
	})
	scenario("environment", func(t *testing.T) {
		d := verdictLab(t, 15*time.Second, Options{SensorEnv: []string{"TAPBEAT_HEARTBEAT_INTERVAL=1s", "TAPBEAT_MISSING_AFTER=3"}})
		waitToldInterval(t, d, time.Second, map[string]int{})
		time.Sleep(observe)
		killedIsMissing(t, d, time.Second)
	})
	scenario("file", func(t *testing.T) {
		d := verdictLab(t, time.Second, Options{})
		waitToldInterval(t, d, time.Second, map[string]int{})
		time.Sleep(observe)
		killedIsMissing(t, d, time.Second)
	})
	scenario("config-set", func(t *testing.T) {
		d := verdictLab(t, 15*time.Second, Options{})
		set := func(iv time.Duration) {
			if out, err := d.Tapbeat(context.Background(), "config", "set", "--dir", d.Opts.Dir, "heartbeat-interval", iv.String()); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}
		seen := map[string]int{}
		set(time.Second) // 15 s -> 1 s
		waitToldInterval(t, d, time.Second, seen)
		time.Sleep(observe / 3)
		noFalseMissing(t, d, "after 15s -> 1s")
		set(15 * time.Second) // 1 s -> 15 s
		waitToldInterval(t, d, 15*time.Second, map[string]int{})
		time.Sleep(observe / 3)
		noFalseMissing(t, d, "after 1s -> 15s")
		set(time.Second)
		waitToldInterval(t, d, time.Second, seen)
		time.Sleep(observe / 3)
		killedIsMissing(t, d, time.Second)
	})
	scenario("frozen", func(t *testing.T) {
		d := verdictLab(t, time.Second, Options{})
		start := time.Now()
		time.Sleep(5 * time.Second)
		if err := d.FreezeSensor(context.Background(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(max(observe-time.Since(start), 15*time.Second))
		noFalseMissing(t, d, "after the sensor was frozen for 5 s")
		st := alertsOf(t, d, schema.EventSensorStalled)
		if len(st) == 0 {
			t.Fatal("no sensor_stalled event after a 5 s freeze")
		}
		var s float64
		if d, ok := st[0].Details.(*schema.SensorStalledDetails); ok {
			s = d.StalledSeconds
		}
		if s < 4 || s > 7 {
			t.Errorf("sensor_stalled says %v s, want about 5: %s", s, st[0].Reason)
		}
		t.Logf("%s", st[0].Reason)
		killedIsMissing(t, d, time.Second)
	})
	scenario("cpu-starved", func(t *testing.T) {
		testenv.RequireCommands(t, "taskset", "nproc")
		out, _ := exec.Command("nproc").Output()
		ncpu, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		if ncpu < 2 {
			t.Skip("one CPU: pinning the sensor with busy loops would starve everything")
		}
		d := verdictLab(t, time.Second, Options{})
		pid := strconv.Itoa(d.SensorPID())
		testenv.Run(t, "taskset", "-a", "-p", "-c", "1", pid)
		ctx, cancel := context.WithCancel(context.Background())
		var loops []*exec.Cmd
		for range 3 {
			c := exec.CommandContext(ctx, "taskset", "-c", "1", "sh", "-c", "while :; do :; done")
			if err := c.Start(); err != nil {
				cancel()
				t.Fatal(err)
			}
			loops = append(loops, c)
		}
		stop := func() {
			cancel()
			for _, c := range loops {
				_ = c.Wait()
			}
		}
		t.Cleanup(stop)
		time.Sleep(20 * time.Second)
		stop()
		testenv.Run(t, "taskset", "-a", "-p", "-c", fmt.Sprintf("0-%d", ncpu-1), pid)
		time.Sleep(3 * time.Second)
		noFalseMissing(t, d, "after 20 s sharing one CPU with three busy loops")
		killedIsMissing(t, d, time.Second)
	})
}
