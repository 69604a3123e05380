package labdeploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// DemoOptions configure the demo scenario.
type DemoOptions struct {
	Bin      string // directory with tapbeat and tapbeat-agent
	Name     string // lab name (default "tbdemo")
	StateDir string // lab state directory (default lab.DefaultStateDir)
	WorkDir  string // sensor state and scripts (default a temporary directory)
	Keep     bool   // leave the lab up at the end
}

// demo is the scenario's running state.
type demo struct {
	out  io.Writer
	d    *Deployment
	work string
	t0   time.Time
	mu   sync.Mutex
}

func (m *demo) say(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintf(m.out, "[%5.1fs] "+format+"\n", append([]any{time.Since(m.t0).Seconds()}, args...)...)
}

func (m *demo) step(format string, args ...any) {
	m.mu.Lock()
	fmt.Fprintf(m.out, "\n==> "+format+"\n", args...)
	m.mu.Unlock()
}

// setHealth rewrites an endpoint's health check script: a Nagios-style
// plugin whose exit code is the health and whose first line is the reason.
func (m *demo) setHealth(host string, code int, reason string) error {
	script := fmt.Sprintf("#!/bin/sh\necho %q\nexit %d\n", reason, code)
	return os.WriteFile(m.checkPath(host), []byte(script), 0o755)
}

func (m *demo) checkPath(host string) string { return filepath.Join(m.work, "checks", host+".sh") }

// Demo brings up a five-endpoint lab, runs the sensor and agents in it and
// plays a scenario that raises every kind of alert, printing alerts as they
// arrive; then it asks the forensic questions and tears the lab down.
func Demo(ctx context.Context, out io.Writer, opts DemoOptions) (err error) {
	if opts.Name == "" {
		opts.Name = "tbdemo"
	}
	m := &demo{out: out, t0: time.Now(), work: opts.WorkDir}
	if m.work == "" {
		if m.work, err = os.MkdirTemp("", "tapbeat-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(m.work)
	}
	if err := os.MkdirAll(filepath.Join(m.work, "checks"), 0o755); err != nil {
		return err
	}
	interval := 2 * time.Second
	m.step("Bringing up the lab: a switch with a mirror port, the sensor, 5 endpoints (ep5 runs no agent)")
	_ = lab.Teardown(ctx, opts.StateDir, opts.Name) // a previous run that crashed
	specs := lab.Endpoints(5)
	specs[4].Unmanaged = true
	l, err := lab.Up(ctx, lab.Config{Name: opts.Name, Endpoints: specs, StateDir: opts.StateDir})
	if err != nil {
		return fmt.Errorf("lab up: %w", err)
	}
	defer func() {
		if opts.Keep {
			m.say("lab %s left up: `tapbeat lab down --name %s` removes it", opts.Name, opts.Name)
			return
		}
		m.step("Tearing the lab down")
		if derr := l.Down(context.Background()); derr != nil && err == nil {
			err = derr
		}
		m.say("done")
	}()
	if err := l.WriteTable(out); err != nil {
		return err
	}
	ep1, _ := l.Addr("ep1")
	m.say("the intervals are shortened for the demo: heartbeat every %s, missing after 3 missed (%s)", interval, 3*interval)

	d, err := Deploy(ctx, l, Options{
		Bin: opts.Bin, Dir: filepath.Join(m.work, "sensor"), Org: "Demo Corp", HeartbeatInterval: interval,
		ExtraConfig: fmt.Sprintf(`[[correlation.policy]]
name = "app-server-needs-green"
destinations = ["%s"]
ports = [8080]
min_source_health = "green"
alert_source_without_heartbeat = true
`, ep1),
	})
	if err != nil {
		return err
	}
	m.d = d
	defer d.Stop()
	m.say("sensor ready in namespace %s-sensor: LAN zone on %s, capturing %s; policy: only green endpoints may reach %s:8080",
		opts.Name, l.ListenAddr(8347), lab.MirrorInterface, ep1)

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go m.printAlerts(watchCtx)
	go m.chatter(watchCtx)

	m.step("Starting agents on ep1..ep4 (all green)")
	for _, h := range []string{"ep1", "ep2", "ep3", "ep4"} {
		if err := m.setHealth(h, 0, "all checks passed"); err != nil {
			return err
		}
		if err := d.StartAgent(ctx, h, m.checkPath(h)); err != nil {
			return err
		}
	}
	if err := m.waitStatus(ctx, map[string]schema.Status{"ep1": "green", "ep2": "green", "ep3": "green", "ep4": "green"}, 20*time.Second); err != nil {
		return err
	}
	m.say("ep1..ep4 heartbeat and are green")

	m.step("ep5 runs no agent but talks on the network: no heartbeat")
	if _, err := d.WaitAlert(ctx, 20*time.Second, typeIs(schema.EventNoHeartbeat, "")); err != nil {
		return fmt.Errorf("no_heartbeat for ep5: %w", err)
	}

	m.step("ep2's signatures get old: its check turns yellow")
	if err := m.setHealth("ep2", 1, "virus signatures are 3 days old"); err != nil {
		return err
	}
	if _, err := d.WaitAlert(ctx, 15*time.Second, statusIs("ep2", schema.StatusYellow)); err != nil {
		return err
	}
	m.step("yellow ep2 opens a connection to the app server ep1:8080, which needs green")
	if err := l.TCPExchange(ctx, "ep2", "ep1", 8080, []byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		return err
	}
	if _, err := d.WaitAlert(ctx, 10*time.Second, typeIs(schema.EventPolicyViolation, "ep2")); err != nil {
		return err
	}

	m.step("ep2 detects malware: red. It then talks to ep4 (lateral movement)")
	if err := m.setHealth("ep2", 2, "malware detected: Trojan.Demo quarantine failed"); err != nil {
		return err
	}
	if _, err := d.WaitAlert(ctx, 15*time.Second, statusIs("ep2", schema.StatusRed)); err != nil {
		return err
	}
	if err := l.UDPExchange(ctx, "ep2", "ep4", 9999, 3); err != nil {
		return err
	}
	if _, err := d.WaitAlert(ctx, 10*time.Second, typeIs(schema.EventLateralMovement, "ep2")); err != nil {
		return err
	}
	m.say("ep4's agent received the at-risk list naming ep2: %s", strings.TrimSpace(m.atRisk("ep4")))

	m.step("Something kills ep3's agent; ep3 keeps talking")
	if err := d.StopAgent("ep3", true); err != nil {
		return err
	}
	missing, err := d.WaitAlert(ctx, 20*time.Second, typeIs(schema.EventHeartbeatMissing, "ep3"))
	if err != nil {
		return err
	}
	time.Sleep(3 * interval)
	m.step("ep3's agent comes back")
	if err := d.StartAgent(ctx, "ep3", m.checkPath("ep3")); err != nil {
		return err
	}
	if _, err := d.WaitAlert(ctx, 20*time.Second, typeIs(schema.EventHeartbeatRestored, "ep3")); err != nil {
		return err
	}
	m.step("ep2 is cleaned up: green again")
	if err := m.setHealth("ep2", 0, "all checks passed"); err != nil {
		return err
	}
	if _, err := d.WaitAlert(ctx, 15*time.Second, func(ev schema.Event) bool {
		return ev.EndpointName == "ep2" && ev.Status == schema.StatusGreen
	}); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	stopWatch()

	ep3, _ := l.Addr("ep3")
	at := missing.Time.Add(time.Second).Format(time.RFC3339)
	queries := [][]string{
		{"query", "endpoints"},
		{"query", "who", "--ip", ep3.String(), "--at", at},
		{"query", "history", "--endpoint", "ep3", "--since", "10m"},
		{"query", "unmanaged", "--since", "10m"},
		{"query", "alerts", "--since", "10m"},
	}
	for _, q := range queries {
		m.step("tapbeat %s", strings.Join(q, " "))
		outText, err := d.Tapbeat(ctx, append(q, "--dir", d.Opts.Dir)...)
		fmt.Fprint(out, outText)
		if err != nil {
			return err
		}
	}
	return nil
}

func typeIs(t schema.EventType, host string) func(schema.Event) bool {
	return func(ev schema.Event) bool { return ev.Type == t && (host == "" || ev.EndpointName == host) }
}

func statusIs(host string, st schema.Status) func(schema.Event) bool {
	return func(ev schema.Event) bool {
		return ev.Type == schema.EventStatusChanged && ev.EndpointName == host && ev.Status == st
	}
}

// waitStatus polls the daemon until every named endpoint has its status.
func (m *demo) waitStatus(ctx context.Context, want map[string]schema.Status, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		out, err := m.d.Tapbeat(ctx, "query", "endpoints", "--dir", m.d.Opts.Dir, "--format", "json")
		got := map[string]schema.Status{}
		var answer struct {
			Endpoints []schema.EndpointState `json:"endpoints"`
		}
		if err == nil {
			err = json.Unmarshal([]byte(out), &answer)
		}
		for _, e := range answer.Endpoints {
			got[e.Name] = e.Status
		}
		ok := true
		for h, st := range want {
			if got[h] != st {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("endpoints not as expected within %s: got %v, want %v (%v)\nsensor log:\n%s", limit, got, want, err, m.d.SensorOutput())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// chatter keeps the endpoints talking, as hosts on a real network do.
func (m *demo) chatter(ctx context.Context) {
	l := m.d.Lab
	pairs := [][2]string{{"ep3", "ep1"}, {"ep5", "ep4"}, {"ep4", "ep1"}, {"ep1", "ep2"}}
	for ctx.Err() == nil {
		for _, p := range pairs {
			to, err := l.Addr(p[1])
			if err != nil {
				return
			}
			_ = l.Ping(ctx, p[0], to, 1)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// printAlerts follows the sensor's JSON-lines alert log.
func (m *demo) printAlerts(ctx context.Context) {
	var offset int64
	for ctx.Err() == nil {
		f, err := os.Open(m.d.AlertLog())
		if err == nil {
			if _, err := f.Seek(offset, io.SeekStart); err == nil {
				r := bufio.NewReader(f)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						break
					}
					offset += int64(len(line))
					var ev schema.Event
					if json.Unmarshal(line, &ev) == nil {
						who := ev.EndpointName
						if who == "" && len(ev.MACs) > 0 {
							who = ev.MACs[0].String()
						}
						m.say("ALERT #%d %-8s %-18s %-18s %s", ev.Seq, ev.Severity, ev.Type, who, ev.Reason)
					}
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// atRisk returns the at-risk list an agent keeps in its state directory.
func (m *demo) atRisk(host string) string {
	dir := filepath.Join(m.d.Opts.Dir, "agents", host)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "risk") {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err == nil {
				if len(b) > 400 {
					b = append(b[:400], "..."...)
				}
				return string(b)
			}
		}
	}
	return "(no at-risk file yet)"
}
