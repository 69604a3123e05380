// Package labdeploy runs tapbeat inside a namespace lab (package lab): the
// sensor daemon in the sensor namespace, capturing the switch's mirror port
// and listening on its LAN port, and enrolled agents in the endpoint
// namespaces. The demo and the end-to-end tests both use it; it drives the
// real binaries, exactly as an administrator would.
package labdeploy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Options describe a deployment.
type Options struct {
	// Bin is the directory holding the tapbeat and tapbeat-agent binaries.
	Bin string
	// Dir is the sensor's state directory (created by tapbeat init).
	Dir string
	// Org is the organisation name.
	Org string
	// HeartbeatInterval is the (short) interval of the lab; default 2s.
	HeartbeatInterval time.Duration
	// ExtraConfig is TOML appended to the sensor's configuration file
	// (policies, infrastructure MACs).
	ExtraConfig string
	// SensorArgs are extra `tapbeat run` flags (e.g. --syslog).
	SensorArgs []string
	// SensorEnv are NAME=VALUE variables set for `tapbeat run` (e.g.
	// TAPBEAT_HEARTBEAT_INTERVAL=1s).
	SensorEnv []string
	// EndpointPrefix prefixes the endpoints' enrolled names ("s2-" makes
	// ep1 "s2-ep1"), so the sites of a fleet keep distinct names.
	EndpointPrefix string
}

// Deployment is tapbeat running in a lab.
type Deployment struct {
	Lab  *lab.Lab
	Opts Options

	mu     sync.Mutex
	sensor *lab.Process
	ended  *lab.Process // the sensor process that ran last, once stopped
	agents map[string]*lab.Process
}

// Deploy initialises the sensor's authority for the lab's LAN address,
// enrolls every managed endpoint and starts the sensor. Agents are started
// with StartAgent.
func Deploy(ctx context.Context, l *lab.Lab, opts Options) (*Deployment, error) {
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 2 * time.Second
	}
	if opts.Org == "" {
		opts.Org = "Lab"
	}
	d := &Deployment{Lab: l, Opts: opts, agents: map[string]*lab.Process{}}
	lanAddr, err := l.Addr(lab.HostSensor)
	if err != nil {
		return nil, err
	}
	if _, err := d.tapbeat(ctx, "init", "--dir", opts.Dir, "--org", opts.Org, "--lan", lanAddr.String(),
		"--heartbeat-interval", opts.HeartbeatInterval.String()); err != nil {
		return nil, err
	}
	if err := d.extendConfig(); err != nil {
		return nil, err
	}
	for _, ep := range l.Endpoints {
		if !ep.Managed {
			continue
		}
		if err := d.Enroll(ctx, ep.Name); err != nil {
			return nil, err
		}
	}
	if err := d.StartSensor(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Deployment) tapbeat(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(d.Opts.Bin, "tapbeat"), args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tapbeat %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Tapbeat runs a tapbeat command on the host (the CLI reaches the daemon
// through its socket in the state directory).
func (d *Deployment) Tapbeat(ctx context.Context, args ...string) (string, error) {
	return d.tapbeat(ctx, args...)
}

// BundlePath is where an endpoint's bundle is kept.
func (d *Deployment) BundlePath(host string) string {
	return filepath.Join(d.Opts.Dir, "bundles", host+".bundle.json")
}

// EndpointName is the name host is enrolled under.
func (d *Deployment) EndpointName(host string) string { return d.Opts.EndpointPrefix + host }

// Enroll issues a certificate for the endpoint host.
func (d *Deployment) Enroll(ctx context.Context, host string) error {
	return d.EnrollWith(ctx, d, host)
}

// EnrollWith has issuer's sensor issue the certificate for this
// deployment's endpoint host (another sensor of a fleet: the bundle names
// the issuer's LAN-zone addresses first). An existing bundle is replaced.
func (d *Deployment) EnrollWith(ctx context.Context, issuer *Deployment, host string) error {
	if err := os.MkdirAll(filepath.Join(d.Opts.Dir, "bundles"), 0o700); err != nil {
		return err
	}
	if err := os.Remove(d.BundlePath(host)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	_, err := issuer.tapbeat(ctx, "enroll", "--dir", issuer.Opts.Dir, "--name", d.EndpointName(host), "--out", d.BundlePath(host))
	return err
}

// StartSensor starts `tapbeat run` in the sensor namespace and waits until
// it says "sensor ready".
func (d *Deployment) StartSensor(ctx context.Context) error {
	args := append([]string{filepath.Join(d.Opts.Bin, "tapbeat"), "run", "--dir", d.Opts.Dir,
		"--capture", lab.MirrorInterface}, d.Opts.SensorArgs...)
	if len(d.Opts.SensorEnv) > 0 {
		// env execs the sensor: the process id stays the sensor's.
		args = append(append([]string{"env"}, d.Opts.SensorEnv...), args...)
	}
	p, err := d.Lab.Start(ctx, lab.HostSensor, args...)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.sensor = p
	d.mu.Unlock()
	return waitFor(ctx, p, "sensor ready", 30*time.Second)
}

// StopSensor stops the sensor gracefully (SIGTERM) and waits for it.
func (d *Deployment) StopSensor() error {
	p := d.takeSensor()
	if p == nil {
		return nil
	}
	return p.Stop()
}

// takeSensor returns the running sensor process, if any, and forgets it
// (its output stays readable).
func (d *Deployment) takeSensor() *lab.Process {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := d.sensor
	d.sensor = nil
	if p != nil {
		d.ended = p
	}
	return p
}

// KillSensor kills the sensor (SIGKILL), as a crash or a power cut would,
// and waits for it.
func (d *Deployment) KillSensor() error {
	p := d.takeSensor()
	if p == nil {
		return errors.New("the sensor is not running")
	}
	if err := p.Cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill the sensor: %w", err)
	}
	_ = p.Wait()
	return nil
}

// SensorPID returns the running sensor's process id, 0 when it is stopped.
func (d *Deployment) SensorPID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sensor == nil || d.sensor.Cmd.Process == nil {
		return 0
	}
	return d.sensor.Cmd.Process.Pid
}

// Reload sends the sensor SIGHUP.
func (d *Deployment) Reload() error {
	d.mu.Lock()
	p := d.sensor
	d.mu.Unlock()
	if p == nil {
		return errors.New("the sensor is not running")
	}
	return p.Cmd.Process.Signal(syscall.SIGHUP)
}

// FreezeSensor stops the sensor process (SIGSTOP) for how long, then lets
// it continue (SIGCONT), as a paused virtual machine or a stalled process.
func (d *Deployment) FreezeSensor(ctx context.Context, how time.Duration) error {
	d.mu.Lock()
	p := d.sensor
	d.mu.Unlock()
	if p == nil {
		return errors.New("the sensor is not running")
	}
	if err := p.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("stop the sensor: %w", err)
	}
	t := time.NewTimer(how)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	if err := p.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("continue the sensor: %w", err)
	}
	return ctx.Err()
}

// KeepTalking pings the sensor's LAN address from each host every period
// until ctx ends, so every endpoint's MACs keep sending. It returns at
// once; done is closed when the pinging has stopped.
func (d *Deployment) KeepTalking(ctx context.Context, period time.Duration, hosts ...string) (done <-chan struct{}, err error) {
	to, err := d.Lab.Addr(lab.HostSensor)
	if err != nil {
		return nil, err
	}
	c := make(chan struct{})
	go func() {
		defer close(c)
		for ctx.Err() == nil {
			for _, h := range hosts {
				_ = d.Lab.Ping(ctx, h, to, 1)
			}
			select {
			case <-ctx.Done():
			case <-time.After(period):
			}
		}
	}()
	return c, nil
}

// SensorOutput returns what the sensor logged so far (the last one to run,
// once stopped).
func (d *Deployment) SensorOutput() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.sensor != nil:
		return d.sensor.Output()
	case d.ended != nil:
		return d.ended.Output()
	}
	return ""
}

// StartAgent starts tapbeat-agent in the endpoint's namespace with the
// given health check commands.
func (d *Deployment) StartAgent(ctx context.Context, host string, checks ...string) error {
	state := filepath.Join(d.Opts.Dir, "agents", host)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	args := []string{filepath.Join(d.Opts.Bin, "tapbeat-agent"), "run", "--bundle", d.BundlePath(host), "--state-dir", state}
	for _, c := range checks {
		args = append(args, "--check", c)
	}
	p, err := d.Lab.Start(ctx, host, args...)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.agents[host] = p
	d.mu.Unlock()
	return nil
}

// StopAgent stops an endpoint's agent; kill means SIGKILL, as when malware
// kills it, rather than a clean stop.
func (d *Deployment) StopAgent(host string, kill bool) error {
	d.mu.Lock()
	p := d.agents[host]
	delete(d.agents, host)
	d.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no agent running on %s", host)
	}
	if kill {
		_ = p.Cmd.Process.Kill()
		_ = p.Wait()
		return nil
	}
	return p.Stop()
}

// PauseAgent freezes (SIGSTOP) or resumes (SIGCONT) an endpoint's agent, as
// a suspended laptop or a stalled process would.
func (d *Deployment) PauseAgent(host string, pause bool) error {
	d.mu.Lock()
	p := d.agents[host]
	d.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no agent running on %s", host)
	}
	sig := syscall.SIGCONT
	if pause {
		sig = syscall.SIGSTOP
	}
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal the agent on %s: %w", host, err)
	}
	return nil
}

// AgentOutput returns what an endpoint's agent logged so far.
func (d *Deployment) AgentOutput(host string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p := d.agents[host]; p != nil {
		return p.Output()
	}
	return ""
}

// Stop stops every agent and the sensor.
func (d *Deployment) Stop() {
	d.mu.Lock()
	agents := d.agents
	d.agents = map[string]*lab.Process{}
	d.mu.Unlock()
	for _, p := range agents {
		_ = p.Stop()
	}
	_ = d.StopSensor()
}

func waitFor(ctx context.Context, p *lab.Process, text string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Output(), text) {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited before %q:\n%s", p.Host, text, p.Output())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not say %q within %s:\n%s", p.Host, text, limit, p.Output())
}

// AlertLog is the sensor's local JSON-lines alert log.
func (d *Deployment) AlertLog() string { return filepath.Join(d.Opts.Dir, "alerts.jsonl") }

// Alerts reads every alert the local log holds so far.
func (d *Deployment) Alerts() ([]schema.Event, error) {
	f, err := os.Open(d.AlertLog())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []schema.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev schema.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return out, fmt.Errorf("alert log line %q: %w", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out, sc.Err()
}

// WaitAlert waits until an alert matching match is in the log and returns it.
func (d *Deployment) WaitAlert(ctx context.Context, limit time.Duration, match func(schema.Event) bool) (schema.Event, error) {
	deadline := time.Now().Add(limit)
	for {
		evs, err := d.Alerts()
		if err != nil {
			return schema.Event{}, err
		}
		for _, ev := range evs {
			if match(ev) {
				return ev, nil
			}
		}
		if time.Now().After(deadline) {
			return schema.Event{}, fmt.Errorf("no matching alert within %s (%d alerts so far)", limit, len(evs))
		}
		select {
		case <-ctx.Done():
			return schema.Event{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
