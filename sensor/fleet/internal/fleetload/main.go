// Command fleetload measures a fleet of three `tapbeat run` sensor processes
// on loopback under simulated endpoints: it sets the fleet up with the CLI
// (init, fleet add, init --join), enrolls N endpoints on each sensor, starts
// the sensors (no capture) and one simulator process per sensor (each
// endpoint tries its own sensor first, then the others in name order, as
// an agent does with the sensor's config message), and reports per sensor
// the steady-state CPU and RSS, heartbeat-to-correlator latency (from the
// sensor's /metrics histogram over the window), the fleet's NATS bytes per
// heartbeat (route counters of the embedded nodes), and, after restarting
// one sensor (SIGTERM, then SIGKILL), how long until every one of its
// endpoints is connected again somewhere, with the heartbeat_missing,
// no_heartbeat and other events the fleet's alert logs recorded meanwhile.
// A reference run with fewer endpoints is made in the same invocation.
//
//	go build -o bin/tapbeat ./cmd/tapbeat
//	go run ./sensor/fleet/internal/fleetload -bin bin/tapbeat -count 17000 -reference 1000
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tapbeat/tapbeat/cmd/agent"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/fleet"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

const sensors = 3

func main() {
	sim := flag.Bool("sim", false, "run a simulator process (internal)")
	bundlesFile := flag.String("bundles", "", "bundles JSON (sim mode)")
	first := flag.Int("first", 0, "index of the first endpoint (sim mode)")
	addrs := flag.String("sensors", "", "sensor addresses, comma-separated, tried in order (sim mode)")
	ramp := flag.Duration("ramp", 120*time.Second, "spread of the first connections")
	bin := flag.String("bin", "bin/tapbeat", "the tapbeat `BINARY` to run the sensors with")
	count := flag.Int("count", 17000, "endpoints per sensor")
	reference := flag.Int("reference", 1000, "endpoints per sensor of the reference run (0: none)")
	interval := flag.Duration("interval", 15*time.Second, "heartbeat interval")
	steady := flag.Duration("steady", 60*time.Second, "steady-state measurement window")
	restart := flag.String("restart", "term,kill", "restarts of sensor s1 to time: term, kill, both comma-separated, or none")
	settle := flag.Duration("settle", 60*time.Second, "wait after each recovery before counting events (missing deadline is 3 intervals)")
	keep := flag.Bool("keep", false, "keep the sensor directories (logs, alert logs)")
	trustWait := flag.Duration("trust-wait", 5*time.Minute, "how long to wait for the trust-store journals to converge before connecting")
	sensorEnv := flag.String("sensor-env", "", "space-separated `NAME=VALUE` pairs added to the sensors' environment (e.g. GOGC=off GOMEMLIMIT=3GiB)")
	flag.Parse()
	if *sim {
		if err := runSim(*bundlesFile, *first, strings.Split(*addrs, ","), *ramp); err != nil {
			fmt.Fprintln(os.Stderr, "fleetload sim:", err)
			os.Exit(1)
		}
		return
	}
	if _, err := os.Stat(*bin); err != nil {
		fmt.Fprintf(os.Stderr, "fleetload: %v: build the sensor first (go build -o %s ./cmd/tapbeat)\n", err, *bin)
		os.Exit(2)
	}
	absBin, _ := filepath.Abs(*bin)
	var results []*result
	for _, n := range []int{*reference, *count} {
		if n <= 0 {
			continue
		}
		r, err := runOnce(config{bin: absBin, n: n, interval: *interval, ramp: *ramp, steady: *steady,
			restarts: strings.Split(*restart, ","), settle: *settle, keep: *keep, trustWait: *trustWait, sensorEnv: strings.Fields(*sensorEnv)})
		if r != nil {
			r.print(os.Stdout)
			results = append(results, r)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleetload:", err)
			os.Exit(1)
		}
	}
	if len(results) == 2 {
		ref, big := results[0], results[1]
		fmt.Printf("\nratios %d vs %d endpoints per sensor (x%.0f): CPU x%.1f, RSS x%.1f, p99 x%.1f, bytes/heartbeat x%.2f\n",
			big.N, ref.N, float64(big.N)/float64(ref.N), big.meanCPU()/ref.meanCPU(), big.meanRSS()/ref.meanRSS(),
			big.maxP99().Seconds()/ref.maxP99().Seconds(), big.RouteBytesPerBeat/ref.RouteBytesPerBeat)
	}
}

type config struct {
	bin            string
	n              int
	interval, ramp time.Duration
	steady, settle time.Duration
	restarts       []string
	keep           bool
	trustWait      time.Duration
	sensorEnv      []string // added to the sensors' environment
}

// sensorResult is one sensor's figures over the steady window.
type sensorResult struct {
	Name          string
	CPU           float64 // percent of one core
	RSSKB, HWMKB  int
	P50, P99, Max time.Duration // Max is the upper bound of the slowest bucket (10 % wide)
	Beats         uint64
	RouteOut      uint64 // bytes sent on its routes in the window
	NodeInOut     uint64 // bytes in+out of every connection of its node
	Connected     int
	SimCPU        float64
}

type restartResult struct {
	How       string
	Startup   time.Duration // signal to the restarted sensor's /metrics answering
	Recovery  time.Duration // signal to every endpoint of s1 connected again (anywhere)
	Home      time.Duration // signal to every endpoint of s1 connected to s1 again (0: not within the settle)
	Placement [sensors]int  // connections per sensor when all were back
	Events    map[string]int
	Lost      int64 // connections the simulators lost
}

type result struct {
	N                 int
	Enroll            time.Duration
	Form              time.Duration // sensors started to fleet healthy (3 sensors, R3)
	TrustSync         time.Duration // fleet healthy to every journal holding every enrollment (-1: not within -trust-wait)
	Connect           time.Duration
	Sensors           [sensors]sensorResult
	Window            time.Duration
	Beats             uint64
	RouteBytes        uint64
	RouteBytesPerBeat float64
	NodeBytesPerBeat  float64
	Restarts          []restartResult
	EventsBefore      map[string]int // events in the alert logs up to the first restart
	Notes             []string
}

func (r *result) meanCPU() float64 {
	var s float64
	for _, x := range r.Sensors {
		s += x.CPU
	}
	return s / sensors
}

func (r *result) meanRSS() float64 {
	var s float64
	for _, x := range r.Sensors {
		s += float64(x.RSSKB)
	}
	return s / sensors
}

func (r *result) maxP99() time.Duration {
	var m time.Duration
	for _, x := range r.Sensors {
		m = max(m, x.P99)
	}
	return m
}

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "\n== %d sensors x %d endpoints (%d fleet-wide) ==\n", sensors, r.N, sensors*r.N)
	fmt.Fprintf(w, "enroll %v, fleet healthy %v after start, trust-store journals in step %v later, all connected %v after the simulators started\n",
		r.Enroll.Round(time.Millisecond), r.Form.Round(time.Millisecond), r.TrustSync.Round(time.Millisecond), r.Connect.Round(time.Millisecond))
	for _, s := range r.Sensors {
		fmt.Fprintf(w, "  %s: cpu=%.1f%% of one core, rss=%d MiB (peak %d), latency p50=%s p99=%s max<=%s, heartbeats=%d, route_out=%d B, connected=%d, simulator cpu=%.1f%%\n",
			s.Name, s.CPU, s.RSSKB/1024, s.HWMKB/1024, latency(s.P50), latency(s.P99), latency(s.Max), s.Beats, s.RouteOut, s.Connected, s.SimCPU)
	}
	fmt.Fprintf(w, "  window %v: heartbeats %d (expected ~%.0f), route bytes %d: %.0f B per heartbeat on the routes, %.0f B per heartbeat through the nodes (routes + local clients, in+out)\n",
		r.Window.Round(time.Millisecond), r.Beats, float64(sensors*r.N)*r.Window.Seconds()/15, r.RouteBytes, r.RouteBytesPerBeat, r.NodeBytesPerBeat)
	fmt.Fprintf(w, "  events before the restarts: %v\n", r.EventsBefore)
	for _, x := range r.Restarts {
		home := "not within the settle"
		if x.Home > 0 {
			home = x.Home.Round(time.Millisecond).String()
		}
		fmt.Fprintf(w, "  restart s1 (%s): listening after %v, all %d back after %v (placement %v), all home after %s, simulator connections lost %d, events %v\n",
			x.How, x.Startup.Round(time.Millisecond), r.N, x.Recovery.Round(time.Millisecond), x.Placement, home, x.Lost, x.Events)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// proc is a child process with a line reader on its stdout.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	last string
}

func startProc(name string, logf io.Writer, env []string, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stderr = logf
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.last = sc.Text()
			p.mu.Unlock()
			if logf != nil {
				fmt.Fprintln(logf, sc.Text())
			}
		}
		p.cmd.Wait()
	}()
	return p, nil
}

func (p *proc) lastLine() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

func (p *proc) stop(sig syscall.Signal, within time.Duration) {
	p.signal(sig)
	select {
	case <-p.done:
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// node is one fleet sensor.
type node struct {
	name, dir      string
	lan, fleetAddr string
	metrics        string
	log            *os.File
	p              *proc
	sim            *proc
}

func (nd *node) start(bin string, env []string) error {
	p, err := startProc(nd.name, nd.log, env, bin, "run", "--dir", nd.dir, "--metrics", nd.metrics, "--log-format", "text")
	if err != nil {
		return err
	}
	nd.p = p
	return nil
}

// waitMetrics waits until the sensor's /metrics answers.
func (nd *node) waitMetrics(within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if _, err := scrape(nd.metrics); err == nil {
			return nil
		}
		select {
		case <-nd.p.done:
			return fmt.Errorf("sensor %s exited (see %s)", nd.name, nd.log.Name())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("sensor %s: /metrics not answering after %v (see %s)", nd.name, within, nd.log.Name())
}

func run(bin string, args ...string) error {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return nil
}

func runOnce(cfg config) (*result, error) {
	res := &result{N: cfg.n}
	base, err := os.MkdirTemp("", "tapbeat-fleetload")
	if err != nil {
		return nil, err
	}
	if cfg.keep {
		fmt.Fprintf(os.Stderr, "fleetload: directories kept in %s\n", base)
	} else {
		defer os.RemoveAll(base)
	}
	nodes := make([]*node, sensors)
	for i := range nodes {
		// LAN and fleet addresses outside 127.1.0.0/16, where the simulated
		// endpoints' source addresses live (agent.SimSource).
		nodes[i] = &node{name: fmt.Sprintf("s%d", i+1), dir: filepath.Join(base, fmt.Sprintf("s%d", i+1)),
			lan: fmt.Sprintf("127.200.0.%d", i+1), fleetAddr: fmt.Sprintf("127.201.0.%d:7422", i+1),
			metrics: fmt.Sprintf("127.0.0.1:%d", 19100+i)}
	}
	s1 := nodes[0]
	if err := run(cfg.bin, "init", "--dir", s1.dir, "--org", "Fleet Load", "--lan", s1.lan, "--fleet-addr", s1.fleetAddr,
		"--fleet-name", s1.name, "--heartbeat-interval", cfg.interval.String()); err != nil {
		return nil, err
	}
	for _, nd := range nodes[1:] {
		jf := filepath.Join(base, nd.name+".fleet.json")
		if err := run(cfg.bin, "fleet", "add", "--dir", s1.dir, "--name", nd.name, "--lan", nd.lan, "--fleet-addr", nd.fleetAddr, "--out", jf); err != nil {
			return nil, err
		}
		if err := run(cfg.bin, "init", "--dir", nd.dir, "--join", jf); err != nil {
			return nil, err
		}
	}
	for i, nd := range nodes {
		// Three nodes on one host need their own loopback client ports.
		c, err := fleet.Load(nd.dir)
		if err != nil {
			return nil, err
		}
		c.ClientPort = 19200 + i
		if err := fleet.Save(nd.dir, c); err != nil {
			return nil, err
		}
		if nd.log, err = os.Create(filepath.Join(base, nd.name+".log")); err != nil {
			return nil, err
		}
	}

	// Enrollment: each sensor enrolls its own endpoints (the trust-store
	// journal reaches the other sensors through the fleet).
	t0 := time.Now()
	bundleFiles := make([]string, sensors)
	for i, nd := range nodes {
		a, err := pki.Open(nd.dir)
		if err != nil {
			return nil, err
		}
		names := make([]string, cfg.n)
		for j := range names {
			names[j] = fmt.Sprintf("%s-load-%06d", nd.name, j)
		}
		bs, err := a.EnrollMany(names, pki.EnrollOptions{})
		if err != nil {
			return nil, fmt.Errorf("enroll on %s: %w", nd.name, err)
		}
		raw, err := json.Marshal(bs)
		if err != nil {
			return nil, err
		}
		bundleFiles[i] = filepath.Join(base, nd.name+"-bundles.json")
		if err := os.WriteFile(bundleFiles[i], raw, 0o600); err != nil {
			return nil, err
		}
	}
	res.Enroll = time.Since(t0)
	fmt.Fprintf(os.Stderr, "fleetload: %d endpoints enrolled on each of %d sensors in %v; starting the sensors\n", cfg.n, sensors, res.Enroll.Round(time.Millisecond))

	t0 = time.Now()
	for _, nd := range nodes {
		if err := nd.start(cfg.bin, cfg.sensorEnv); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, nd := range nodes {
			if nd.sim != nil {
				nd.sim.stop(syscall.SIGTERM, 30*time.Second)
			}
		}
		for _, nd := range nodes {
			if nd.p != nil {
				nd.p.stop(syscall.SIGTERM, 30*time.Second)
			}
			nd.log.Close()
		}
	}()
	for _, nd := range nodes {
		if err := nd.waitMetrics(60 * time.Second); err != nil {
			return res, err
		}
	}
	if res.Form, err = waitHealthy(cfg.bin, s1.dir, 3*time.Minute); err != nil {
		return res, err
	}
	fmt.Fprintf(os.Stderr, "fleetload: fleet healthy %v after start; starting %d simulators over a %v ramp\n", time.Since(t0).Round(time.Millisecond), sensors, cfg.ramp)
	res.Form = time.Since(t0)
	if res.TrustSync, err = waitTrust(nodes, sensors*cfg.n, cfg.trustWait); err != nil {
		res.Notes = append(res.Notes, err.Error()+": endpoints that fail over may be refused as not enrolled")
		res.TrustSync = -1
	}
	fmt.Fprintf(os.Stderr, "fleetload: trust-store journals in step %v after the fleet was healthy\n", res.TrustSync.Round(time.Millisecond))

	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	lans := make([]string, sensors)
	for i, nd := range nodes {
		lans[i] = nd.lan + ":8347"
	}
	for i, nd := range nodes {
		order := append([]string{lans[i]}, slices.Delete(slices.Clone(lans), i, i+1)...)
		sl, err := os.Create(filepath.Join(base, nd.name+"-sim.log"))
		if err != nil {
			return res, err
		}
		defer sl.Close()
		if nd.sim, err = startProc(nd.name+"-sim", sl, nil, self, "-sim", "-bundles", bundleFiles[i], "-first", strconv.Itoa(i*cfg.n),
			"-sensors", strings.Join(order, ","), "-ramp", cfg.ramp.String()); err != nil {
			return res, err
		}
	}
	t0 = time.Now()
	if err := waitAll(nodes, cfg.n, cfg.ramp+3*time.Minute, time.Time{}); err != nil {
		return res, err
	}
	res.Connect = time.Since(t0)
	fmt.Fprintf(os.Stderr, "fleetload: all %d connected after %v; warming up for 2 intervals\n", sensors*cfg.n, res.Connect.Round(time.Millisecond))
	time.Sleep(2 * cfg.interval)

	// Steady window.
	type snap struct {
		m           metrics
		cpu, simCPU time.Duration
	}
	take := func() ([sensors]snap, time.Time, error) {
		var s [sensors]snap
		for i, nd := range nodes {
			m, err := scrape(nd.metrics)
			if err != nil {
				return s, time.Time{}, err
			}
			s[i] = snap{m: m, cpu: testenv.ProcCPU(nd.p.cmd.Process.Pid), simCPU: testenv.ProcCPU(nd.sim.cmd.Process.Pid)}
		}
		return s, time.Now(), nil
	}
	a, ta, err := take()
	if err != nil {
		return res, err
	}
	time.Sleep(cfg.steady)
	b, tb, err := take()
	if err != nil {
		return res, err
	}
	res.Window = tb.Sub(ta)
	var nodeBytes uint64
	for i, nd := range nodes {
		sr := &res.Sensors[i]
		sr.Name = nd.name
		sr.CPU = 100 * (b[i].cpu - a[i].cpu).Seconds() / res.Window.Seconds()
		sr.SimCPU = 100 * (b[i].simCPU - a[i].simCPU).Seconds() / res.Window.Seconds()
		sr.RSSKB, sr.HWMKB = testenv.ProcMem(nd.p.cmd.Process.Pid)
		sr.P50, sr.P99, sr.Max, sr.Beats = windowLatency(a[i].m, b[i].m)
		sr.RouteOut = uint64(b[i].m.get(`tapbeat_fleet_route_bytes_total{direction="out"}`) - a[i].m.get(`tapbeat_fleet_route_bytes_total{direction="out"}`))
		sr.NodeInOut = uint64(b[i].m.sum("tapbeat_fleet_node_bytes_total") - a[i].m.sum("tapbeat_fleet_node_bytes_total"))
		sr.Connected = int(b[i].m.get("tapbeat_lanzone_connections"))
		res.Beats += sr.Beats
		res.RouteBytes += sr.RouteOut
		nodeBytes += sr.NodeInOut
		if a[i].m.get("tapbeat_fleet_routes") != b[i].m.get("tapbeat_fleet_routes") {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: routes changed in the window (%v to %v): route bytes of a closed route are lost",
				nd.name, a[i].m.get("tapbeat_fleet_routes"), b[i].m.get("tapbeat_fleet_routes")))
		}
	}
	if res.Beats > 0 {
		res.RouteBytesPerBeat = float64(res.RouteBytes) / float64(res.Beats)
		res.NodeBytesPerBeat = float64(nodeBytes) / float64(res.Beats)
	}
	res.EventsBefore = countEvents(nodes)
	fmt.Fprintf(os.Stderr, "fleetload: steady window done (%d heartbeats, %.0f B/heartbeat on the routes)\n", res.Beats, res.RouteBytesPerBeat)

	for _, how := range cfg.restarts {
		var sig syscall.Signal
		switch how {
		case "term":
			sig = syscall.SIGTERM
		case "kill":
			sig = syscall.SIGKILL
		case "none", "":
			continue
		default:
			return res, fmt.Errorf("-restart %q: want term, kill or none", how)
		}
		rr, err := restartS1(cfg, nodes, sig, how)
		res.Restarts = append(res.Restarts, rr)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// restartS1 stops s1 with sig, starts it again, and times the return of
// its endpoints (to any sensor, then to s1 itself).
func restartS1(cfg config, nodes []*node, sig syscall.Signal, how string) (restartResult, error) {
	rr := restartResult{How: how}
	s1 := nodes[0]
	before := countEvents(nodes)
	lost0 := totalLost(nodes)
	fmt.Fprintf(os.Stderr, "fleetload: restarting s1 (%s)\n", how)
	t0 := time.Now()
	s1.p.stop(sig, 60*time.Second)
	stopped := time.Now()
	if err := s1.start(cfg.bin, cfg.sensorEnv); err != nil {
		return rr, err
	}
	if err := s1.waitMetrics(60 * time.Second); err != nil {
		return rr, err
	}
	rr.Startup = time.Since(t0)
	// Every endpoint of s1's simulator connected again, wherever.
	if err := waitAll(nodes[:1], cfg.n, 3*time.Minute, stopped); err != nil {
		return rr, err
	}
	rr.Recovery = time.Since(t0)
	for i, nd := range nodes {
		rr.Placement[i] = connections(nd)
	}
	fmt.Fprintf(os.Stderr, "fleetload: s1's %d endpoints back after %v (placement %v); settling %v\n", cfg.n, rr.Recovery.Round(time.Millisecond), rr.Placement, cfg.settle)
	deadline := t0.Add(rr.Recovery + cfg.settle)
	for time.Now().Before(deadline) {
		if rr.Home == 0 {
			if connections(s1) >= cfg.n {
				rr.Home = time.Since(t0)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	after := countEvents(nodes)
	rr.Events = map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			rr.Events[k] = d
		}
	}
	rr.Lost = totalLost(nodes) - lost0
	return rr, nil
}

// connections returns the sensor's LAN-zone connections (-1: /metrics did
// not answer within three tries).
func connections(nd *node) int {
	for range 3 {
		if m, err := scrape(nd.metrics); err == nil {
			return int(m.get("tapbeat_lanzone_connections"))
		}
		time.Sleep(time.Second)
	}
	return -1
}

// waitTrust waits until every sensor's trust-store journal holds want
// records: until then an endpoint failing over to another sensor is
// refused as not enrolled there.
func waitTrust(nodes []*node, want int, within time.Duration) (time.Duration, error) {
	start := time.Now()
	lastLog := start
	for {
		var got []int
		all := true
		for _, nd := range nodes {
			b, _ := os.ReadFile(filepath.Join(nd.dir, pki.TrustFile))
			n := strings.Count(string(b), "\n")
			got = append(got, n)
			all = all && n >= want
		}
		if all {
			return time.Since(start), nil
		}
		if time.Since(start) > within {
			return 0, fmt.Errorf("trust-store journals hold %v records, %d wanted, after %v", got, want, within)
		}
		if time.Since(lastLog) > 15*time.Second {
			fmt.Fprintf(os.Stderr, "fleetload: trust-store journals hold %v of %d records after %v\n", got, want, time.Since(start).Round(time.Second))
			lastLog = time.Now()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitHealthy polls `tapbeat fleet status --format json` on dir until the
// fleet reports healthy with every sensor registered and R3 streams.
func waitHealthy(bin, dir string, within time.Duration) (time.Duration, error) {
	start := time.Now()
	var last string
	for time.Since(start) < within {
		out, err := exec.Command(bin, "fleet", "status", "--dir", dir, "--format", "json").Output()
		last = string(out)
		if err == nil {
			var st fleet.Status
			if json.Unmarshal(out, &st) == nil && st.Healthy && len(st.Sensors) == sensors && len(st.Assets) > 0 {
				r3 := true
				for _, a := range st.Assets {
					r3 = r3 && a.Replicas == sensors && a.Leader != ""
				}
				if r3 {
					return time.Since(start), nil
				}
			}
		}
		time.Sleep(time.Second)
	}
	return 0, fmt.Errorf("fleet not healthy with %d sensors at R%d after %v; last status:\n%s", sensors, sensors, within, last)
}

// simStats is a simulator process's report line.
type simStats struct {
	agent.SimStats
	At time.Time `json:"at"`
}

func simOf(nd *node) (simStats, bool) {
	var s simStats
	l := nd.sim.lastLine()
	return s, l != "" && json.Unmarshal([]byte(l), &s) == nil
}

func totalLost(nodes []*node) int64 {
	var n int64
	for _, nd := range nodes {
		if s, ok := simOf(nd); ok {
			n += s.Lost
		}
	}
	return n
}

// waitAll waits until every simulator of nodes reports n connected in a
// report made after since.
func waitAll(nodes []*node, n int, within time.Duration, since time.Time) error {
	start := time.Now()
	lastLog := start
	for time.Since(start) < within {
		all := true
		var got []int64
		for _, nd := range nodes {
			s, ok := simOf(nd)
			got = append(got, s.Connected)
			all = all && ok && s.At.After(since) && s.Connected >= int64(n)
		}
		if all {
			return nil
		}
		if time.Since(lastLog) > 15*time.Second {
			fmt.Fprintf(os.Stderr, "fleetload: %v connected of %d each after %v\n", got, n, time.Since(start).Round(time.Second))
			lastLog = time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	var got []string
	for _, nd := range nodes {
		got = append(got, nd.sim.lastLine())
	}
	return fmt.Errorf("not all %d endpoints of each simulator connected after %v: %s", n, within, strings.Join(got, "; "))
}

// countEvents counts events by type in every sensor's alert log.
func countEvents(nodes []*node) map[string]int {
	out := map[string]int{}
	for _, nd := range nodes {
		f, err := os.Open(filepath.Join(nd.dir, "alerts.jsonl"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type != "" {
				out[e.Type]++
			}
		}
		f.Close()
	}
	return out
}

// metrics is one scrape of a sensor's /metrics: sample name with labels ->
// value.
type metrics map[string]float64

func scrape(addr string) (metrics, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

func (m metrics) get(k string) float64 { return m[k] }

// sum adds every sample of a metric name, whatever its labels.
func (m metrics) sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

const latencyMetric = "tapbeat_lanzone_heartbeat_latency_seconds"

// windowLatency computes percentiles of the heartbeats between two scrapes
// from the cumulative histogram buckets.
func windowLatency(a, b metrics) (p50, p99, mx time.Duration, n uint64) {
	type bucket struct {
		le  float64
		cum float64
	}
	var bs []bucket
	for k, v := range b {
		rest, ok := strings.CutPrefix(k, latencyMetric+`_bucket{le="`)
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, `"}`), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v - a[k]})
	}
	slices.SortFunc(bs, func(x, y bucket) int {
		switch {
		case x.le < y.le:
			return -1
		case x.le > y.le:
			return 1
		}
		return 0
	})
	total := b[latencyMetric+"_count"] - a[latencyMetric+"_count"]
	if total <= 0 {
		return 0, 0, 0, 0
	}
	q := func(p float64) time.Duration {
		target := math.Ceil(p * total)
		for _, x := range bs {
			if x.cum >= target {
				return secs(x.le)
			}
		}
		return secs(math.Inf(1))
	}
	mx = secs(math.Inf(1))
	for _, x := range bs {
		if x.cum >= total {
			mx = secs(x.le)
			break
		}
	}
	return q(0.5), q(0.99), mx, uint64(total)
}

// latency prints a window percentile; past the histogram's last bound it
// says so instead of printing the largest duration.
func latency(d time.Duration) string {
	if d == time.Duration(math.MaxInt64) {
		return "over-last-bucket"
	}
	return d.String()
}

func secs(s float64) time.Duration {
	if math.IsInf(s, 1) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond)
}

// runSim is a simulator process: its endpoints, with a JSON line of
// SimStats every second on stdout.
func runSim(file string, first int, addrs []string, ramp time.Duration) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var bs []*pki.Bundle
	if err := json.Unmarshal(raw, &bs); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, a := range addrs {
		if _, err := netip.ParseAddrPort(a); err != nil {
			return fmt.Errorf("-sensors: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	sim, err := agent.NewSimulator(agent.SimConfig{Bundles: bs, Sensors: addrs, First: first, Ramp: ramp, RampByNetwork: true, Report: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()
	enc := json.NewEncoder(os.Stdout)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case <-t.C:
			_ = enc.Encode(simStats{SimStats: sim.Stats(), At: time.Now()})
		}
	}
}
