// Command loadtest measures the LAN zone under a simulated fleet: it enrolls
// N endpoints in a fresh sensor directory, runs the sensor side (listener and
// correlator) in a child process so its memory and CPU are its own, connects
// the fleet from 127.0.0.0/8 source addresses with the agent's simulator, and
// reports connect time, steady-state sensor CPU and RSS, heartbeat-to-
// correlator latency, and how long the whole fleet takes to come back after
// a sensor restart (with the number of missing alerts, which must be zero).
// A reference run with fewer endpoints is made in the same invocation, and
// figures are also given as ratios against it.
//
//	go run ./lanzone/loadtest -count 50000 -reference 1000
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
	"net/http"
	_ "net/http/pprof"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tapbeat/tapbeat/cmd/agent"
	"github.com/tapbeat/tapbeat/lanzone"
	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// report is what the sensor child prints every second.
type report struct {
	Stats  lanzone.Stats  `json:"stats"`
	Events map[string]int `json:"events"`
	// Go memory in MiB: heap in use, goroutine stacks, total from the OS.
	HeapMiB, StackMiB, SysMiB uint64
}

func main() {
	serve := flag.Bool("serve", false, "run the sensor side (internal)")
	dir := flag.String("dir", "", "sensor directory (serve mode)")
	listen := flag.String("listen", "127.0.0.1:0", "listen address (serve mode)")
	count := flag.Int("count", 50000, "endpoints")
	reference := flag.Int("reference", 1000, "endpoints of the reference run (0: none)")
	interval := flag.Duration("interval", 15*time.Second, "heartbeat interval")
	ramp := flag.Duration("ramp", 60*time.Second, "spread of the first connections")
	steady := flag.Duration("steady", 60*time.Second, "steady-state measurement window")
	restart := flag.Bool("restart", true, "restart the sensor and time the fleet's return")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof of the sensor side on this `HOST:PORT`")
	flag.Parse()
	limit := raiseFileLimit()
	if *serve {
		if *pprofAddr != "" {
			go func() { _ = http.ListenAndServe(*pprofAddr, nil) }()
		}
		if err := runSensor(*dir, *listen); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest sensor:", err)
			os.Exit(1)
		}
		return
	}
	if need := uint64(max(*count, *reference)) + 200; limit < need {
		fmt.Fprintf(os.Stderr, "loadtest: %d endpoints need about %d open files per process, and this machine allows %d "+
			"(RLIMIT_NOFILE hard limit; raising it needs root with CAP_SYS_RESOURCE): lower -count or raise the limit\n",
			max(*count, *reference), need, limit)
		os.Exit(2)
	}
	var results []result
	for _, n := range []int{*reference, *count} {
		if n <= 0 {
			continue
		}
		r, err := runOnce(n, *interval, *ramp, *steady, *restart, *pprofAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadtest:", err)
			os.Exit(1)
		}
		results = append(results, r)
		r.print(os.Stdout)
	}
	if len(results) == 2 {
		ref, big := results[0], results[1]
		fmt.Printf("\nratios %d vs %d endpoints (x%.0f endpoints): CPU x%.1f, RSS x%.1f, latency p99 x%.1f, restart recovery x%.1f\n",
			big.N, ref.N, float64(big.N)/float64(ref.N), big.CPU/ref.CPU, float64(big.RSSKB)/float64(ref.RSSKB),
			float64(big.P99)/float64(ref.P99), big.Recovery.Seconds()/ref.Recovery.Seconds())
	}
}

type result struct {
	N          int
	Enroll     time.Duration
	Connect    time.Duration
	CPU        float64 // percent of one core, steady state
	RSSKB      int     // after the steady window
	PeakRSSKB  int     // VmHWM
	P50, P99   time.Duration
	Max        time.Duration
	Beats      uint64
	Expected   float64
	Recovery   time.Duration
	Missing    int
	Resumed    uint64
	Handshakes uint64
	HeapMiB    uint64
	StackMiB   uint64
	SysMiB     uint64
	Startup    time.Duration // restarted sensor: exec to listening
	RecCPU     float64       // sensor CPU during the recovery, percent of one core
}

func (r result) print(w io.Writer) {
	fmt.Fprintf(w, "endpoints=%d enroll=%v connect_all=%v\n", r.N, r.Enroll.Round(time.Millisecond), r.Connect.Round(time.Millisecond))
	fmt.Fprintf(w, "  steady: sensor_cpu=%.1f%% of one core, rss=%d MiB (peak %d MiB), heartbeats=%d (expected ~%.0f)\n",
		r.CPU, r.RSSKB/1024, r.PeakRSSKB/1024, r.Beats, r.Expected)
	fmt.Fprintf(w, "  go memory: heap in use %d MiB, stacks %d MiB, from the OS %d MiB\n", r.HeapMiB, r.StackMiB, r.SysMiB)
	fmt.Fprintf(w, "  heartbeat->correlator latency: p50=%v p99=%v max=%v\n", r.P50, r.P99, r.Max)
	if r.Recovery > 0 {
		fmt.Fprintf(w, "  restart: all %d back in %v (sensor listening after %v; handshakes %d, resumed %d; sensor CPU %.0f%% of one core meanwhile), heartbeat_missing events=%d\n",
			r.N, r.Recovery.Round(time.Millisecond), r.Startup.Round(time.Millisecond), r.Handshakes, r.Resumed, r.RecCPU, r.Missing)
	}
}

// child is a running sensor process.
type child struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	last report
	done chan struct{}
}

func startChild(dir, listen, pprofAddr string) (*child, error) {
	cmd := exec.Command(os.Args[0], "-serve", "-dir", dir, "-listen", listen, "-pprof", pprofAddr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "ready "); ok {
				ready <- a
				continue
			}
			var r report
			if json.Unmarshal([]byte(line), &r) == nil {
				c.mu.Lock()
				c.last = r
				c.mu.Unlock()
			}
		}
		cmd.Wait()
	}()
	select {
	case c.addr = <-ready:
		return c, nil
	case <-c.done:
		return nil, errors.New("sensor child exited before listening")
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return nil, errors.New("sensor child did not start")
	}
}

func (c *child) report() report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

func (c *child) waitConnected(n int, within time.Duration) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < within {
		if c.report().Stats.Connected >= n {
			return time.Since(start), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("only %d of %d endpoints connected after %v", c.report().Stats.Connected, n, within)
}

func runOnce(n int, interval, ramp, steady time.Duration, restart bool, pprofAddr string) (result, error) {
	res := result{N: n}
	dir, err := os.MkdirTemp("", "tapbeat-loadtest")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	sdir := filepath.Join(dir, "sensor")
	if _, err := pki.Init(sdir, "Load Test", []netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		return res, err
	}
	if err := config.Save(sdir, config.LANZone{Addresses: []string{"127.0.0.1"}, HeartbeatInterval: interval}); err != nil {
		return res, err
	}
	a, err := pki.Open(sdir)
	if err != nil {
		return res, err
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("load-%06d", i)
	}
	t0 := time.Now()
	bundles, err := a.EnrollMany(names, pki.EnrollOptions{})
	if err != nil {
		return res, err
	}
	res.Enroll = time.Since(t0)

	c, err := startChild(sdir, "127.0.0.1:0", pprofAddr)
	if err != nil {
		return res, err
	}
	defer func() { c.stop() }()
	sim, err := agent.NewSimulator(agent.SimConfig{Bundles: bundles, Sensor: c.addr, Ramp: ramp, Report: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	simDone := make(chan struct{})
	go func() { sim.Run(ctx); close(simDone) }()
	defer func() { cancel(); <-simDone }()
	fmt.Fprintf(os.Stderr, "loadtest: %d endpoints enrolled in %v, connecting over %v\n", n, res.Enroll.Round(time.Millisecond), ramp)
	if res.Connect, err = c.waitConnected(n, ramp+3*time.Minute); err != nil {
		return res, err
	}
	fmt.Fprintf(os.Stderr, "loadtest: all %d connected after %v; warming up for 2 intervals\n", n, res.Connect.Round(time.Millisecond))
	time.Sleep(2 * interval)
	pid := c.cmd.Process.Pid
	c.cmd.Process.Signal(syscall.SIGUSR1) // reset the latency histogram
	time.Sleep(1500 * time.Millisecond)
	beats0 := c.report().Stats.Heartbeats
	cpu0, w0 := testenv.ProcCPU(pid), time.Now()
	time.Sleep(steady)
	cpu1, w1 := testenv.ProcCPU(pid), time.Now()
	time.Sleep(1100 * time.Millisecond) // one more report line
	r := c.report()
	res.CPU = 100 * (cpu1 - cpu0).Seconds() / w1.Sub(w0).Seconds()
	res.RSSKB, res.PeakRSSKB = testenv.ProcMem(pid)
	res.HeapMiB, res.StackMiB, res.SysMiB = r.HeapMiB, r.StackMiB, r.SysMiB
	res.P50, res.P99, res.Max = r.Stats.LatencyP50, r.Stats.LatencyP99, r.Stats.LatencyMax
	res.Beats = r.Stats.Heartbeats - beats0
	res.Expected = float64(n) * (w1.Sub(w0).Seconds() + 1.1) / interval.Seconds()
	res.Missing = r.Events[string(schema.EventHeartbeatMissing)]
	if !restart {
		return res, nil
	}
	fmt.Fprintf(os.Stderr, "loadtest: restarting the sensor\n")
	addr := c.addr
	c.stop()
	t1 := time.Now()
	if c, err = startChild(sdir, addr, pprofAddr); err != nil {
		return res, err
	}
	res.Startup = time.Since(t1)
	rc0 := testenv.ProcCPU(c.cmd.Process.Pid)
	if _, err := c.waitConnected(n, 3*time.Minute); err != nil {
		return res, err
	}
	res.Recovery = time.Since(t1)
	res.RecCPU = 100 * (testenv.ProcCPU(c.cmd.Process.Pid) - rc0).Seconds() / (res.Recovery - res.Startup).Seconds()
	time.Sleep(1100 * time.Millisecond)
	r = c.report()
	res.Missing += r.Events[string(schema.EventHeartbeatMissing)]
	res.Handshakes, res.Resumed = r.Stats.Handshakes, r.Stats.Resumed
	_, hwm := testenv.ProcMem(c.cmd.Process.Pid)
	res.PeakRSSKB = max(res.PeakRSSKB, hwm)
	return res, nil
}

// runSensor is the sensor side: listener and correlator, printing a report
// every second.
func runSensor(dir, listen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	lan, err := config.Load(dir)
	if err != nil {
		return err
	}
	corr, err := sensor.NewCorrelator(sensor.Config{HeartbeatInterval: lan.HeartbeatInterval}, sensor.WallClock{})
	if err != nil {
		return err
	}
	var mu sync.Mutex
	events := map[string]int{}
	var l *lanzone.Listener
	engine := sensor.NewEngine(corr, func(evs []schema.Event) {
		mu.Lock()
		for _, e := range evs {
			events[string(e.Type)]++
		}
		mu.Unlock()
		if l != nil {
			l.Notify(evs)
		}
	})
	l, err = lanzone.New(lanzone.Options{Dir: dir, Listen: []string{listen}, Correlator: engine,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	if err := l.Bind(); err != nil {
		return err
	}
	fmt.Printf("ready %s\n", l.Addrs()[0])
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go engine.Run(ctx, time.Second)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		enc := json.NewEncoder(os.Stdout)
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				l.ResetLatency()
			case <-t.C:
				mu.Lock()
				ev := make(map[string]int, len(events))
				for k, v := range events {
					ev[k] = v
				}
				mu.Unlock()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				enc.Encode(report{Stats: l.Stats(), Events: ev, HeapMiB: ms.HeapInuse >> 20, StackMiB: ms.StackInuse >> 20, SysMiB: ms.Sys >> 20})
			}
		}
	}()
	return l.Serve(ctx)
}

// raiseFileLimit lifts the open-file limit as far as allowed and returns
// the soft limit in force: each side of the test holds one socket per
// endpoint.
func raiseFileLimit() uint64 {
	want := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
		return want.Cur
	}
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	r.Cur = r.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	return r.Cur
}
