package isotest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// endToEnd drives the daemon inside the appliance from the host: an agent
// enrolled against the sensor directory heartbeats through the forwarded
// LAN-zone port, and the admin API (forwarded too) is asked what the
// sensor knows, with the administrator bundle, as a remote admin would.
type endToEnd struct {
	tapbeat, agent string
	hostBundle     string
	adminBundle    string
	work           string
}

// provision runs tapbeat init and enroll on the host into dir, as an
// administrator would on a workstation before writing dir to the data
// disk. The LAN-zone address is the one qemu's DHCP server hands out.
func provision(t testing.TB, tapbeat, dir string) *endToEnd {
	t.Helper()
	work := filepath.Dir(dir)
	e := &endToEnd{tapbeat: tapbeat, work: work,
		hostBundle: filepath.Join(work, "host1.bundle.json"), adminBundle: filepath.Join(work, "admin.json")}
	run(t, tapbeat, "init", "--dir", dir, "--org", "Appliance Test", "--lan", "10.0.2.15", "--heartbeat-interval", "5s")
	// Judge silent stations quickly so the test need not wait out the
	// production grace periods.
	f, err := os.OpenFile(filepath.Join(dir, "tapbeat.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\n[correlation]\nstartup_grace = 1\nno_heartbeat_after = \"3s\"\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Only the administrator is enrolled on the workstation; endpoints are
	// enrolled later through the appliance's admin API (see check).
	run(t, tapbeat, "enroll", "--dir", dir, "--admin", "--name", "admin", "--out", e.adminBundle)
	e.agent = os.Getenv("TAPBEAT_AGENT_BIN")
	if e.agent == "" {
		e.agent = filepath.Join(work, "tapbeat-agent")
		b := exec.Command("go", "build", "-o", e.agent, "./cmd/tapbeat-agent")
		b.Dir, b.Env = repoRoot(t), append(os.Environ(), "CGO_ENABLED=0")
		if out, err := b.CombinedOutput(); err != nil {
			t.Fatalf("build tapbeat-agent: %v\n%s", err, out)
		}
	}
	return e
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

// query asks the admin API through the forwarded port; it returns the
// command's error instead of failing so callers can poll.
// greenAndConnected asks the sensor's admin API whether host is green and
// connected.
func (e *endToEnd) greenAndConnected(adminPort int, host string) error {
	out, err := e.query(adminPort, "endpoints")
	if err != nil {
		return err
	}
	var r struct {
		Endpoints []struct {
			Name      string `json:"name"`
			Status    string `json:"status"`
			Connected bool   `json:"connected"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("endpoints answer %q: %w", out, err)
	}
	for _, ep := range r.Endpoints {
		if ep.Name == host && ep.Status == "green" && ep.Connected {
			return nil
		}
	}
	return fmt.Errorf("%s not green and connected: %s", host, out)
}

func (e *endToEnd) query(adminPort int, args ...string) ([]byte, error) {
	full := append([]string{"query"}, args...)
	full = append(full, "--server", fmt.Sprintf("https://127.0.0.1:%d", adminPort), "--bundle", e.adminBundle, "--format", "json")
	cmd := exec.Command(e.tapbeat, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tapbeat %s: %v: %s", strings.Join(full, " "), err, stderr.String())
	}
	return out, nil
}

// poll retries f every second until it returns nil or timeout passes.
func poll(t *testing.T, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

// check verifies through the forwarded ports that the agent's endpoint is
// known and green and the injected MAC is listed unmanaged; after a reboot
// it also requires the history recorded before bootStart.
func (e *endToEnd) check(t *testing.T, v *vm, lanPort, adminPort, capFrom int, afterReboot bool, bootStart time.Time) {
	t.Helper()
	if _, err := os.Stat(e.hostBundle); err != nil {
		// The endpoint enrolls through the forwarded admin API, as an
		// administrator does with an appliance that has no shell.
		poll(t, "enroll host1 through the admin API", 90*time.Second, func() error {
			cmd := exec.Command(e.tapbeat, "enroll", "--server", fmt.Sprintf("https://127.0.0.1:%d", adminPort),
				"--bundle", e.adminBundle, "--name", "host1", "--out", e.hostBundle)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
	agent := exec.Command(e.agent, "run", "--bundle", e.hostBundle, "--sensor", fmt.Sprintf("127.0.0.1:%d", lanPort),
		"--state-dir", filepath.Join(e.work, "agent-state"))
	agentLog, _ := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Kill()
		_ = agent.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(agentLog.Name())
			t.Logf("agent output:\n%s", b)
		}
	})
	// Keep the stray station talking while the sensor is asked about it.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
				injectQuiet(capFrom, 5)
			}
		}
	}()

	start := time.Now()
	poll(t, "endpoint host1 green through the admin API", 90*time.Second, func() error { return e.greenAndConnected(adminPort, "host1") })
	t.Logf("agent heartbeating through the forwarded port, seen green after %.1f s", time.Since(start).Seconds())
	v.waitFor("endpoints [green=1]", 30*time.Second)

	start = time.Now()
	poll(t, "no_heartbeat alert for the stray MAC through the admin API", 120*time.Second, func() error {
		out, err := e.query(adminPort, "alerts", "--type", "no_heartbeat", "--since", "24h")
		if err != nil {
			return err
		}
		var evs []struct {
			MACs []string `json:"macs"`
		}
		if err := json.Unmarshal(out, &evs); err != nil {
			return fmt.Errorf("alerts answer %q: %w", out, err)
		}
		for _, ev := range evs {
			for _, m := range ev.MACs {
				if strings.EqualFold(m, strayMAC) {
					return nil
				}
			}
		}
		return fmt.Errorf("no no_heartbeat alert names %s: %s", strayMAC, out)
	})
	t.Logf("stray MAC reported as sending without a heartbeat after %.1f s", time.Since(start).Seconds())

	if afterReboot {
		// The unmanaged inventory the first boot wrote (flushed when the
		// daemon stopped at the power button) is still there.
		out, err := e.query(adminPort, "unmanaged", "--since", "24h")
		if err != nil {
			t.Fatal(err)
		}
		var stations []struct {
			MAC       string    `json:"mac"`
			FirstSeen time.Time `json:"first_seen"`
		}
		if err := json.Unmarshal(out, &stations); err != nil {
			t.Fatalf("unmanaged answer %q: %v", out, err)
		}
		var firstSeen time.Time
		for _, s := range stations {
			if strings.EqualFold(s.MAC, strayMAC) {
				firstSeen = s.FirstSeen
			}
		}
		if firstSeen.IsZero() || !firstSeen.Before(bootStart) {
			t.Errorf("stray MAC first seen %s, not before this boot (%s): the history of the first boot is gone", firstSeen, bootStart)
		}
		out, err = e.query(adminPort, "history", "--endpoint", "host1", "--since", "24h")
		if err != nil {
			t.Fatal(err)
		}
		var evs []struct {
			Time time.Time `json:"time"`
			Type string    `json:"type"`
		}
		if err := json.Unmarshal(out, &evs); err != nil {
			t.Fatalf("history answer %q: %v", out, err)
		}
		old := 0
		for _, ev := range evs {
			if ev.Time.Before(bootStart) {
				old++
			}
		}
		if old == 0 {
			t.Errorf("no event of host1 from before the reboot in the history: %s", out)
		}
		t.Logf("after the reboot the history holds %d events of host1 from the first boot", old)
	}
}
