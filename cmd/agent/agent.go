// Package agent is the tapbeat endpoint agent: it proves to the sensor that
// its endpoint is alive and healthy (hello and heartbeats over mutual TLS),
// runs the health checks that decide that health, follows the sensor's
// configuration, and acts on the at-risk list (state file, hook, optional
// nftables isolation). It also holds the load simulator used by benchmarks.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Config configures an Agent. Zero fields take the defaults noted.
type Config struct {
	// Bundle is the endpoint's enrollment bundle. Required.
	Bundle *pki.Bundle
	// Sensors overrides the sensor addresses (host:port), e.g. behind NAT;
	// the pin still authenticates the sensor.
	Sensors []string
	// Checks are Nagios-convention command lines run by /bin/sh.
	Checks []string
	// CheckTimeout bounds each check (default 10s).
	CheckTimeout time.Duration
	// SignatureFile enables the built-in signature-age check.
	SignatureFile string
	// SignatureMaxAge is the age after which signatures are stale (default 24h).
	SignatureMaxAge time.Duration
	// StateDir keeps the at-risk list and the last sensor addresses (created 0700).
	StateDir string
	// OnAtRisk is a command line run by /bin/sh whenever the at-risk list
	// changes, with TAPBEAT_AT_RISK_FILE set.
	OnAtRisk string
	// Isolate drops traffic from red and missing endpoints with nftables.
	Isolate bool
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// DiscoverEvery is how often interfaces and users are re-read (default 10s).
	DiscoverEvery time.Duration
	// BackoffMin and BackoffMax bound reconnect delays (default
	// ReconnectMin, ReconnectMax).
	BackoffMin, BackoffMax time.Duration
	// DialTimeout bounds connecting to one address (default 5s).
	DialTimeout time.Duration
	// Version is the agent's version, reported in the hello.
	Version string
	// StopReason is asked, when Run's context ends, why the agent stops;
	// the answer goes to the sensor in the goodbye (default: always
	// "stop"). See StopReason for the reference answer.
	StopReason func() schema.GoodbyeReason
}

// Agent is a running endpoint agent.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	instance string // random per process: tells the sensor a restart from a reconnect
	tls      *tls.Config
	id       string
	isol     *Isolator
	hookc    chan struct{}
	healthc  chan struct{} // the health changed: heartbeat now

	mu       sync.Mutex
	addrs    []string
	health   schema.Health
	reasons  []string
	ifaces   []wire.Interface
	users    []string
	atRisk   []wire.AtRiskEndpoint
	haveRisk bool

	interval  atomic.Int64
	connected atomic.Pointer[string]
	sessions  atomic.Int64
}

// New checks the configuration and prepares the agent.
func New(cfg Config) (*Agent, error) {
	if cfg.Bundle == nil {
		return nil, errors.New("agent: no bundle")
	}
	if cfg.Bundle.Admin {
		return nil, errors.New("agent: this is an administrator bundle; enroll the endpoint with `tapbeat enroll --name HOST`")
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 10 * time.Second
	}
	if cfg.SignatureMaxAge <= 0 {
		cfg.SignatureMaxAge = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DiscoverEvery <= 0 {
		cfg.DiscoverEvery = 10 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = ReconnectMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = ReconnectMax
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.StateDir == "" {
		return nil, errors.New("agent: no state directory")
	}
	for _, s := range cfg.Sensors {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return nil, fmt.Errorf("agent: --sensor %q: want HOST:PORT", s)
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: state directory: %w", err)
	}
	tc, err := pki.ClientConfig(cfg.Bundle)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.StopReason == nil {
		cfg.StopReason = func() schema.GoodbyeReason { return schema.GoodbyeStop }
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, tls: tc, id: cfg.Bundle.ID, hookc: make(chan struct{}, 1), healthc: make(chan struct{}, 1), health: schema.HealthGreen,
		instance: rand.Text()[:16]}
	a.interval.Store(int64(15 * time.Second))
	a.addrs = a.initialAddrs()
	if cfg.Isolate {
		isol, err := NewIsolator(-1)
		if err != nil {
			return nil, fmt.Errorf("agent: --isolate: %w", err)
		}
		a.isol = isol
	}
	return a, nil
}

// initialAddrs: --sensor, else the addresses of the last config message,
// else the bundle's.
func (a *Agent) initialAddrs() []string {
	if len(a.cfg.Sensors) > 0 {
		return slices.Clone(a.cfg.Sensors)
	}
	var saved struct {
		Addresses []string `json:"addresses"`
	}
	if b, err := os.ReadFile(filepath.Join(a.cfg.StateDir, SensorFile)); err == nil {
		if json.Unmarshal(b, &saved) == nil && len(saved.Addresses) > 0 {
			return saved.Addresses
		}
	}
	return slices.Clone(a.cfg.Bundle.Addresses)
}

// Connected returns the sensor address of the current session, or "".
func (a *Agent) Connected() string {
	if p := a.connected.Load(); p != nil {
		return *p
	}
	return ""
}

// Sessions returns how many sessions the agent has established.
func (a *Agent) Sessions() int64 { return a.sessions.Load() }

// Interval returns the heartbeat interval in force.
func (a *Agent) Interval() time.Duration { return time.Duration(a.interval.Load()) }

// Addresses returns the sensor addresses the agent tries, in order.
func (a *Agent) Addresses() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.addrs)
}

// ReconnectMin and ReconnectMax bound the delay before an agent tries its
// sensors again. The cap is what a sensor's restart costs its agents on
// top of the restart itself: 10 s keeps a restarted sensor's endpoints
// back within a minute, while a dead sensor's port costs its agents one
// refused connection each per 5-15 s.
const (
	ReconnectMin = time.Second
	ReconnectMax = 10 * time.Second
)

// reconnectBackoff doubles the delay from min to max, with jitter of half
// the delay either way, so agents do not reconnect in step.
func reconnectBackoff(min, max time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: min, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: max}
}

// Run runs the agent until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	defer func() {
		if a.isol != nil {
			if err := a.isol.Close(); err != nil {
				a.log.Warn("removing isolation failed", "err", err)
			}
		}
	}()
	a.runChecks(ctx)
	a.discover()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.checkLoop(ctx) }()
	go func() { defer wg.Done(); a.hookLoop(ctx) }()
	defer wg.Wait()
	retry := reconnectBackoff(a.cfg.BackoffMin, a.cfg.BackoffMax)
	for ctx.Err() == nil {
		established := false
		for _, addr := range a.Addresses() {
			conn, err := a.dial(ctx, addr)
			if err != nil {
				a.log.Warn("sensor unreachable", "addr", addr, "err", err)
				continue
			}
			established = true
			a.sessions.Add(1)
			a.connected.Store(&addr)
			a.log.Info("connected to sensor", "addr", addr)
			err = a.session(ctx, conn)
			a.connected.Store(nil)
			if ctx.Err() != nil {
				return nil
			}
			a.log.Warn("sensor connection lost", "addr", addr, "err", err)
			break
		}
		if established {
			retry.Reset()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry.NextBackOff()):
		}
	}
	return nil
}

func (a *Agent) dial(ctx context.Context, addr string) (*tls.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
	defer cancel()
	d := tls.Dialer{Config: a.tls}
	c, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

func (a *Agent) helloMsg() wire.Hello {
	a.mu.Lock()
	defer a.mu.Unlock()
	return wire.Hello{Health: a.health, Reasons: a.reasons, Interfaces: a.ifaces, Users: a.users, Agent: "tapbeat-agent " + a.cfg.Version,
		Instance: a.instance}
}

// session speaks the protocol on one connection until it fails.
func (a *Agent) session(ctx context.Context, c *tls.Conn) error {
	defer c.Close()
	var wmu sync.Mutex
	send := func(t wire.Type, v any) error {
		f, err := wire.Marshal(t, v)
		if err != nil {
			return err
		}
		wmu.Lock()
		defer wmu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Write(f)
		return err
	}
	if err := send(wire.TypeHello, a.helloMsg()); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		<-sctx.Done()
		if ctx.Err() != nil {
			// Stopping on purpose: say so before the close_notify, so the
			// sensor does not take the close for a killed agent.
			a.goodbye(c, &wmu)
		}
		c.Close()
	}()
	defer func() { cancel(); <-closed }()
	intervalChanged := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	go func() { readErr <- a.readLoop(c, intervalChanged) }()

	var local netip.Addr
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		local = ta.AddrPort().Addr().Unmap()
	}
	hadLocal := a.hasAddr(local)
	tick := time.NewTicker(a.Interval())
	defer tick.Stop()
	disc := time.NewTicker(a.cfg.DiscoverEvery)
	defer disc.Stop()
	var seq uint64
	heartbeat := func() error {
		seq++
		a.mu.Lock()
		hb := wire.Heartbeat{Health: a.health, Reasons: a.reasons, Seq: seq, SentAt: time.Now().UnixNano()}
		a.mu.Unlock()
		if err := send(wire.TypeHeartbeat, hb); err != nil {
			return fmt.Errorf("send heartbeat: %w", err)
		}
		return nil
	}
	for {
		select {
		case err := <-readErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-intervalChanged:
			tick.Reset(a.Interval())
		case <-disc.C:
			if a.discover() {
				// The interface carrying the connection went away (Wi-Fi
				// to cable): its packets can no longer arrive, so
				// reconnect now over another one rather than after
				// timeouts; the sensor replaces the old connection.
				if local.IsValid() && hadLocal && !a.hasAddr(local) {
					return fmt.Errorf("the interface with address %s that carried the connection went away", local)
				}
				if err := send(wire.TypeHello, a.helloMsg()); err != nil {
					return fmt.Errorf("send hello: %w", err)
				}
			}
		case <-a.healthc:
			// A health change is reported at once, not at the next tick.
			tick.Reset(a.Interval())
			if err := heartbeat(); err != nil {
				return err
			}
		case <-tick.C:
			if err := heartbeat(); err != nil {
				return err
			}
		}
	}
}

// goodbye sends the goodbye message, within 2 s (the network may already be
// going away at shutdown).
func (a *Agent) goodbye(c *tls.Conn, wmu *sync.Mutex) {
	reason := a.cfg.StopReason()
	f, err := wire.Marshal(wire.TypeGoodbye, wire.Goodbye{Reason: reason, Message: "tapbeat-agent " + a.cfg.Version + " stopping"})
	if err != nil {
		a.log.Warn("encoding the goodbye failed", "err", err)
		return
	}
	wmu.Lock()
	defer wmu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(f); err != nil {
		a.log.Warn("saying goodbye to the sensor failed", "err", err)
		return
	}
	a.log.Info("said goodbye to the sensor", "reason", reason)
}

func (a *Agent) readLoop(c *tls.Conn, intervalChanged chan<- struct{}) error {
	var asm wire.AtRiskAssembler
	for {
		// The sensor sends at least every second heartbeat.
		_ = c.SetReadDeadline(time.Now().Add(4*a.Interval() + 10*time.Second))
		f, err := wire.ReadFrame(c)
		if err != nil {
			return err
		}
		switch f.Type {
		case wire.TypeConfig:
			cfg, err := wire.DecodeConfig(f.Payload)
			if err != nil {
				return err
			}
			a.applyConfig(cfg, intervalChanged)
		case wire.TypeAtRisk:
			p, err := wire.DecodeAtRisk(f.Payload)
			if err != nil {
				return err
			}
			if list, ok := asm.Add(p); ok {
				a.applyAtRisk(list)
			}
		case wire.TypeError:
			e, _ := wire.DecodeError(f.Payload)
			return fmt.Errorf("sensor closed the session: %s: %s", e.Code, e.Message)
		}
	}
}

func (a *Agent) applyConfig(cfg wire.Config, intervalChanged chan<- struct{}) {
	if d := cfg.Interval(); d != a.Interval() {
		a.interval.Store(int64(d))
		a.log.Info("heartbeat interval set by the sensor", "interval", d)
		select {
		case intervalChanged <- struct{}{}:
		default:
		}
	}
	if len(a.cfg.Sensors) > 0 || len(cfg.Addresses) == 0 {
		return
	}
	a.mu.Lock()
	changed := !slices.Equal(a.addrs, cfg.Addresses)
	a.addrs = slices.Clone(cfg.Addresses)
	a.mu.Unlock()
	if changed {
		a.log.Info("sensor addresses updated", "addresses", cfg.Addresses)
		if err := writeJSON(filepath.Join(a.cfg.StateDir, SensorFile), map[string]any{"addresses": cfg.Addresses}); err != nil {
			a.log.Warn("saving sensor addresses failed", "err", err)
		}
	}
}

func (a *Agent) applyAtRisk(list []wire.AtRiskEndpoint) {
	a.mu.Lock()
	if a.haveRisk && sameAtRisk(a.atRisk, list) {
		a.mu.Unlock()
		return
	}
	a.atRisk, a.haveRisk = list, true
	a.mu.Unlock()
	path := filepath.Join(a.cfg.StateDir, AtRiskFile)
	if err := writeJSON(path, AtRiskState{Updated: time.Now().UTC(), Endpoints: list}); err != nil {
		a.log.Warn("saving the at-risk list failed", "err", err)
	}
	if a.isol != nil {
		ips, macs := isolationTargets(list, a.id, a.sensorIPs())
		if err := a.isol.Apply(ips, macs); err != nil {
			a.log.Error("isolation update failed", "err", err)
		} else {
			a.log.Info("isolation updated", "addresses", len(ips), "macs", len(macs))
		}
	}
	if a.cfg.OnAtRisk != "" {
		select {
		case a.hookc <- struct{}{}:
		default:
		}
	}
}

func (a *Agent) sensorIPs() map[netip.Addr]bool {
	keep := map[netip.Addr]bool{}
	for _, s := range append(a.Addresses(), a.cfg.Bundle.Addresses...) {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			keep[ap.Addr().Unmap()] = true
		}
	}
	return keep
}

func (a *Agent) hookLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.hookc:
			runHook(ctx, a.log, a.cfg.OnAtRisk, filepath.Join(a.cfg.StateDir, AtRiskFile), time.Minute)
		}
	}
}

// hasAddr reports whether one of the endpoint's interfaces has ip.
func (a *Agent) hasAddr(ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, itf := range a.ifaces {
		for _, x := range itf.IPs {
			if x.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

// discover re-reads interfaces and users and reports whether they changed.
func (a *Agent) discover() bool {
	ifs, err := Interfaces()
	if err != nil {
		a.log.Warn("listing interfaces failed", "err", err)
	}
	users, err := Users()
	if err != nil {
		a.log.Warn("reading signed-in users failed", "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if sameInterfaces(ifs, a.ifaces) && slices.Equal(users, a.users) {
		return false
	}
	a.ifaces, a.users = ifs, users
	return true
}

func (a *Agent) runChecks(ctx context.Context) {
	results := make([]CheckResult, len(a.cfg.Checks))
	var wg sync.WaitGroup
	for i, c := range a.cfg.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = RunCheck(ctx, c, a.cfg.CheckTimeout)
		}()
	}
	wg.Wait()
	if a.cfg.SignatureFile != "" {
		results = append(results, SignatureCheck(a.cfg.SignatureFile, a.cfg.SignatureMaxAge, time.Now()))
	}
	h, reasons := Worst(results)
	a.mu.Lock()
	changed := h != a.health
	a.health, a.reasons = h, reasons
	a.mu.Unlock()
	if changed {
		a.log.Info("health changed", "health", h, "reasons", reasons)
		select {
		case a.healthc <- struct{}{}:
		default:
		}
	}
}

// checkLoop re-runs the checks every heartbeat interval (which the sensor
// may change at any time).
func (a *Agent) checkLoop(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(last) >= a.Interval() {
			last = time.Now()
			a.runChecks(ctx)
		}
	}
}

// Health returns the current health and reasons.
func (a *Agent) Health() (schema.Health, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.health, slices.Clone(a.reasons)
}
