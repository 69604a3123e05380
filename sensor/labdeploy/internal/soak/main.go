// Command soak runs the sensor and many agents in a namespace lab for a
// long time, every endpoint's host sending traffic throughout, optionally
// freezing the sensor process now and then, and counts false
// heartbeat_missing verdicts. At the end it kills one agent and reports how
// long the sensor took to call it missing. It needs root, iproute2 and
// ping; it is a tool, not part of the test suite (see BENCHMARKS.md).
//
//	go run ./sensor/labdeploy/internal/soak -endpoints 20 -duration 10m -interval 1s
//	go run ./sensor/labdeploy/internal/soak -freeze-every 2m -freeze 5s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tapbeat/tapbeat/sensor/lab"
	"github.com/tapbeat/tapbeat/sensor/labdeploy"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

func main() {
	var (
		endpoints   = flag.Int("endpoints", 20, "endpoints (namespaces, each with an agent)")
		duration    = flag.Duration("duration", 10*time.Minute, "how long to run before the final kill")
		interval    = flag.Duration("interval", time.Second, "heartbeat interval (missing after 3)")
		freezeEvery = flag.Duration("freeze-every", 0, "freeze the sensor this often (0: never)")
		freeze      = flag.Duration("freeze", 5*time.Second, "how long each freeze lasts")
		bin         = flag.String("bin", "", "directory with tapbeat and tapbeat-agent (default: build them)")
		name        = flag.String("lab", fmt.Sprintf("soak%d", os.Getpid()%100000), "lab name")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, log, config{*endpoints, *duration, *interval, *freezeEvery, *freeze, *bin, *name})
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(out))
	if res.FalseMissing > 0 {
		os.Exit(2)
	}
}

type config struct {
	endpoints   int
	duration    time.Duration
	interval    time.Duration
	freezeEvery time.Duration
	freeze      time.Duration
	bin, name   string
}

// result is what the run printed, as JSON.
type result struct {
	Endpoints       int     `json:"endpoints"`
	Seconds         float64 `json:"seconds"`
	IntervalSeconds float64 `json:"interval_seconds"`
	Freezes         int     `json:"freezes"`
	FreezeSeconds   float64 `json:"freeze_seconds"`
	FalseMissing    int     `json:"false_missing"`
	OfflineChanges  int     `json:"status_changes_to_offline_or_unknown"`
	SensorStalled   int     `json:"sensor_stalled_events"`
	Heartbeats      int     `json:"connected_at_end"`
	KillToMissing   float64 `json:"kill_to_missing_seconds"`
}

func run(ctx context.Context, log *slog.Logger, cfg config) (result, error) {
	res := result{Endpoints: cfg.endpoints, IntervalSeconds: cfg.interval.Seconds(), FreezeSeconds: cfg.freeze.Seconds()}
	work, err := os.MkdirTemp("", "tapbeat-soak")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	if cfg.bin == "" {
		cfg.bin = filepath.Join(work, "bin")
		for _, cmd := range []string{"tapbeat", "tapbeat-agent"} {
			b := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(cfg.bin, cmd), "github.com/tapbeat/tapbeat/cmd/"+cmd)
			b.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := b.CombinedOutput(); err != nil {
				return res, fmt.Errorf("build %s: %w\n%s", cmd, err, out)
			}
		}
	}
	l, err := lab.Up(ctx, lab.Config{Name: cfg.name, Endpoints: lab.Endpoints(cfg.endpoints), StateDir: work})
	if err != nil {
		return res, err
	}
	defer l.Down(context.Background())
	d, err := labdeploy.Deploy(ctx, l, labdeploy.Options{Bin: cfg.bin, Dir: filepath.Join(work, "sensor"), HeartbeatInterval: cfg.interval})
	if err != nil {
		return res, err
	}
	defer d.Stop()
	var hosts []string
	for _, ep := range l.Endpoints {
		hosts = append(hosts, ep.Name)
		if err := d.StartAgent(ctx, ep.Name); err != nil {
			return res, err
		}
	}
	tctx, cancel := context.WithCancel(ctx)
	done, err := d.KeepTalking(tctx, 300*time.Millisecond, hosts...)
	if err != nil {
		cancel()
		return res, err
	}
	defer func() { cancel(); <-done }()
	if err := waitConnected(ctx, d, cfg.endpoints); err != nil {
		return res, err
	}
	log.Info("all endpoints connected; soaking", "endpoints", cfg.endpoints, "duration", cfg.duration, "freeze_every", cfg.freezeEvery)
	start := time.Now()
	var freezeC <-chan time.Time
	if cfg.freezeEvery > 0 {
		t := time.NewTicker(cfg.freezeEvery)
		defer t.Stop()
		freezeC = t.C
	}
	end := time.After(cfg.duration)
loop:
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-end:
			break loop
		case <-freezeC:
			log.Info("freezing the sensor", "for", cfg.freeze)
			if err := d.FreezeSensor(ctx, cfg.freeze); err != nil {
				return res, err
			}
			res.Freezes++
		}
	}
	res.Seconds = time.Since(start).Seconds()
	evs, err := d.Alerts()
	if err != nil {
		return res, err
	}
	var all []schema.Event
	for _, h := range hosts {
		evs, err := history(ctx, d, h)
		if err != nil {
			return res, err
		}
		all = append(all, evs...)
	}
	for _, ev := range evs {
		switch ev.Type {
		case schema.EventHeartbeatMissing:
			res.FalseMissing++
			log.Error("false missing", "endpoint", ev.EndpointName, "reason", ev.Reason, "time", ev.Time)
		case schema.EventSensorStalled:
			res.SensorStalled++
		}
	}
	for _, ev := range all {
		if ev.Type == schema.EventStatusChanged && (ev.Status == schema.StatusOffline || ev.Status == schema.StatusUnknown) {
			res.OfflineChanges++
		}
	}
	res.Heartbeats, _ = connected(ctx, d)
	// A real missing endpoint is still seen.
	killed := time.Now()
	if err := d.StopAgent(hosts[0], true); err != nil {
		return res, err
	}
	ev, err := d.WaitAlert(ctx, 10*cfg.interval+10*time.Second, func(ev schema.Event) bool {
		return ev.Type == schema.EventHeartbeatMissing && ev.EndpointName == hosts[0]
	})
	if err != nil {
		return res, fmt.Errorf("the killed agent was not raised missing: %w", err)
	}
	res.KillToMissing = ev.Time.Sub(killed).Seconds()
	return res, nil
}

type endpointList struct {
	Endpoints []schema.EndpointState `json:"endpoints"`
}

func connected(ctx context.Context, d *labdeploy.Deployment) (int, error) {
	out, err := d.Tapbeat(ctx, "query", "endpoints", "--dir", d.Opts.Dir, "--format", "json")
	if err != nil {
		return 0, err
	}
	var list endpointList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range list.Endpoints {
		if e.Connected && e.Status == schema.StatusGreen {
			n++
		}
	}
	return n, nil
}

func waitConnected(ctx context.Context, d *labdeploy.Deployment, want int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := connected(ctx, d)
		if err == nil && n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d endpoints connected and green after 2 minutes (%v)", n, want, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// history returns the status changes the sensor stored for an endpoint
// (they are not alerts, so the alert log does not hold them).
func history(ctx context.Context, d *labdeploy.Deployment, host string) ([]schema.Event, error) {
	out, err := d.Tapbeat(ctx, "query", "history", "--dir", d.Opts.Dir, "--format", "json", "--since", "24h",
		"--endpoint", host, "--type", string(schema.EventStatusChanged))
	if err != nil {
		return nil, err
	}
	var evs []schema.Event
	if err := json.Unmarshal([]byte(out), &evs); err != nil {
		var wrapped struct {
			Events []schema.Event `json:"events"`
		}
		if err2 := json.Unmarshal([]byte(out), &wrapped); err2 != nil {
			return nil, errors.Join(err, err2)
		}
		evs = wrapped.Events
	}
	return evs, nil
}
