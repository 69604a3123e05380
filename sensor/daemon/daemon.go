package daemon

import (
	"context"
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
	"github.com/tapbeat/tapbeat/lanzone"
	lzconfig "github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/alert"
	"github.com/tapbeat/tapbeat/sensor/api"
	"github.com/tapbeat/tapbeat/sensor/fleet"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/web"
)

// Options start a sensor.
type Options struct {
	// Dir is the state directory: config, PKI, history.
	Dir string
	// Config is the resolved configuration the sensor starts with.
	Config Resolved
	// Resolve resolves the configuration again from the same sources
	// (file, environment, flags): on Reload, and when the file changes.
	// nil means the configuration never changes.
	Resolve func() (Resolved, error)
	// Logger receives the daemon's logs.
	Logger *slog.Logger
	// Version is written in CEF headers and logs.
	Version string
	// Reload delivers reload requests (SIGHUP); nil means none.
	Reload <-chan struct{}
	// WatchEvery is how often the configuration file is checked for
	// changes (tapbeat config set, an edit); default 1s, negative never.
	WatchEvery time.Duration
}

// Sensor is a running daemon's parts, for Run and for tests.
type Sensor struct {
	opts     Options
	cfg      Config
	resolved Resolved // the configuration in force (reloads replace it)
	log      *slog.Logger
	store    *history.Store
	engine   *sensor.Engine
	listener *lanzone.Listener
	queue    *eventQueue
	jsonLog  *alert.JSONLog
	metrics  *metrics
	inv      *inventoryParts
	web      atomic.Pointer[web.Server]

	applyMu sync.Mutex // one configuration change at a time
	// bridge joins the engine to the fleet (nil without a [fleet] table);
	// fleetCtx bounds the fleet membership.
	bridge   atomic.Pointer[fleet.Bridge]
	fleetCtx context.Context

	mu         sync.Mutex
	outbox     *alert.Outbox
	dispatcher *alert.Dispatcher
	stopAlerts context.CancelFunc
	alertsDone chan struct{}

	// held are events history could not store for lack of disk space, in
	// sequence order; the pipeline goroutine alone touches them. Their
	// alerts are delivered from memory meanwhile (Outbox.Hold).
	held      []schema.Event
	heldLost  uint64
	spillRead string        // a spill file whose events are in held, removed once they are stored
	stored    atomic.Uint64 // highest sequence number stored
	storeErrs atomic.Uint64
	diskFull  atomic.Bool // a history write was refused for lack of disk space, and none succeeded since
}

// Run runs the sensor until ctx ends, then shuts down cleanly: inputs stop
// first, every queued event is stored and the snapshot saved, then the
// outputs stop.
func Run(ctx context.Context, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WatchEvery == 0 {
		opts.WatchEvery = time.Second
	}
	cfg := opts.Config.Config
	s := &Sensor{opts: opts, cfg: cfg, resolved: opts.Config, log: opts.Logger, queue: newEventQueue(1 << 20)}
	s.metrics = newMetrics(s)

	// Events recorded before the engine exists (none today) or from
	// callbacks go through this indirection.
	var engine atomic.Pointer[sensor.Engine]
	record := func(ev schema.Event) {
		if e := engine.Load(); e != nil {
			e.Record(ev)
		}
	}

	histDir := filepath.Join(opts.Dir, "history")
	store, err := history.Open(histDir, history.Options{
		Retention:    cfg.History.Retention,
		MinFreeBytes: uint64(cfg.History.MinFreeMiB) << 20,
		Logger:       s.log.With("part", "history"),
		OnStorageLow: record,
	})
	if err != nil {
		return fmt.Errorf("open history in %s: %w", histDir, err)
	}
	s.store = store
	defer func() {
		if err := store.Close(); err != nil {
			s.log.Error("close history", "err", err)
		}
	}()

	if err := s.openInventory(cfg); err != nil {
		return err
	}
	snap, err := store.LoadSnapshot()
	if err != nil {
		return fmt.Errorf("load the saved state from %s: %w", histDir, err)
	}
	if next := store.NextSeq(); next > snap.NextSeq {
		snap.NextSeq = next
	}
	spilled, err := s.loadSpill(opts.Dir)
	if err != nil {
		return err
	}
	if n := len(spilled); n > 0 && spilled[n-1].Seq >= snap.NextSeq {
		snap.NextSeq = spilled[n-1].Seq + 1
	}
	corr, err := sensor.NewCorrelator(s.sensorConfig(opts.Config), sensor.WallClock{})
	if err != nil {
		return err
	}
	if err := corr.Restore(snap); err != nil {
		return fmt.Errorf("restore the saved state: %w", err)
	}
	// A fleet sensor's engine is fed through the fleet bridge (see
	// sensor/fleet); without a [fleet] table nothing of it runs.
	var bridge *fleet.Bridge
	if cfg.Fleet.Enabled() {
		f, err := fleet.Start(ctx, fleet.Options{Dir: opts.Dir, Config: cfg.Fleet, Logger: s.log,
			Interval: cfg.LANZone.WithDefaults().HeartbeatInterval, LAN: cfg.LANZone.AddrPorts(),
			Handlers: fleetQueries(api.Local{Store: store})})
		if err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
		bridge = fleet.NewBridge(f)
		defer bridge.Close()
		s.bridge.Store(bridge)
		defer s.bridge.Store(nil)
		s.fleetCtx = ctx
	}
	s.engine = sensor.NewEngine(corr, s.queue.push)
	engine.Store(s.engine)
	var lzCorr lanzone.Correlator = s.engine
	var failover func([]string) []string
	var knownSource func(netip.Addr) bool
	if bridge != nil {
		bridge.SetEngine(s.engine, s.queue.push)
		lzCorr = bridge
		failover, knownSource = bridge.FailoverAddresses, bridge.KnownSource
	}
	knownSource = knownAtStart(snap, knownSource)

	if p := *cfg.Alerts.Log; p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(opts.Dir, p)
		}
		if s.jsonLog, err = alert.OpenJSONLog(p, alert.JSONLogOptions{}); err != nil {
			return fmt.Errorf("open the alert log: %w", err)
		}
		defer s.jsonLog.Close()
	}
	if err := s.startAlerts(cfg.Alerts, record); err != nil {
		return err
	}
	defer s.stopAlertDispatch()

	fds := newFDBudget(openFileLimit())
	s.log.Info("file descriptor budget", "limit", openFileLimit(), "lan_zone_connections", fds.lanConns, "api_connections_per_listener", fds.apiConns)
	var listen []string
	if opts.Config.BindFixed {
		listen = opts.Config.BindSpecs()
	}
	lan := cfg.LANZone
	s.listener, err = lanzone.New(lanzone.Options{
		Dir: opts.Dir, Config: &lan, Listen: listen, Correlator: lzCorr, Logger: s.log.With("part", "lanzone"),
		MaxConns: fds.lanConns, FailoverAddresses: failover, KnownSource: knownSource,
	})
	if err != nil {
		return err
	}
	if err := s.listener.Bind(); err != nil {
		return err
	}

	// Outputs: the pipeline, the API, metrics, retention. They outlive the
	// inputs so that everything the inputs produced is stored.
	outCtx, stopOutputs := context.WithCancel(context.Background())
	defer stopOutputs()
	var outputs sync.WaitGroup
	pipelineDone := make(chan struct{})
	pipeCtx, drainPipeline := context.WithCancel(context.Background())
	defer drainPipeline()
	go func() {
		defer close(pipelineDone)
		s.pipeline(pipeCtx)
	}()
	srv := api.NewServer(store, s.engine, s.log.With("part", "api"))
	srv.SetLimits(api.Limits{MaxConns: fds.apiConns, Record: s.engine.Record})
	srv.HandleEnrollment(func() (api.Enroller, error) {
		a, err := pki.Open(opts.Dir)
		if err != nil {
			return nil, err
		}
		return resolvedEnroller{a, s}, nil
	})
	srv.HandleConfig(func(_ context.Context, key, value string) (api.ConfigAnswer, error) {
		return s.setConfig(key, value, record)
	})
	srv.HandleEnrollmentCodes(opts.Dir, time.Now)
	apiLn, err := api.ListenUnix(cfg.API.Socket)
	if err != nil {
		return fmt.Errorf("local API: %w", err)
	}
	outputs.Add(1)
	go func() {
		defer outputs.Done()
		if err := srv.ServeLocal(outCtx, apiLn, cfg.API.Socket); err != nil && outCtx.Err() == nil {
			s.log.Error("local API stopped", "socket", cfg.API.Socket, "err", err)
		}
	}()
	if err := s.startConsole(outCtx, srv.Handler(), &outputs); err != nil {
		return err
	}
	if cfg.API.AdminListen != "" {
		tlsCfg, err := pki.AdminServerConfigWithCodes(opts.Dir)
		if err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		ln, err := net.Listen("tcp", cfg.API.AdminListen)
		if err != nil {
			return fmt.Errorf("admin API: listen on %s: %w", cfg.API.AdminListen, err)
		}
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			if err := srv.ServeTLS(outCtx, ln, tlsCfg); err != nil && outCtx.Err() == nil {
				s.log.Error("admin API stopped", "addr", cfg.API.AdminListen, "err", err)
			}
		}()
	}
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics: listen on %s: %w", cfg.Metrics.Listen, err)
		}
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			s.metrics.serve(outCtx, ln, s.log)
		}()
	}
	outputs.Add(1)
	go func() {
		defer outputs.Done()
		// Retention once an hour; the free-space guard (storage_low)
		// every minute.
		if err := store.Run(outCtx, time.Minute); err != nil && outCtx.Err() == nil {
			s.log.Error("history maintenance stopped", "err", err)
		}
	}()

	// Inputs: ticks, LAN zone, capture, snapshots, reloads.
	inCtx, stopInputs := context.WithCancel(ctx)
	defer stopInputs()
	var inputs sync.WaitGroup
	inputs.Add(1)
	go func() {
		defer inputs.Done()
		_ = s.engine.Run(inCtx, tickEvery)
	}()
	inputs.Add(1)
	go func() {
		defer inputs.Done()
		s.snapshots(inCtx)
	}()
	inputs.Add(1)
	go func() {
		defer inputs.Done()
		s.triageExpiries(inCtx)
	}()
	if bridge != nil {
		inputs.Add(1)
		go func() {
			defer inputs.Done()
			bridge.Run(inCtx)
		}()
	}
	if opts.Resolve != nil {
		inputs.Add(1)
		go func() {
			defer inputs.Done()
			s.followConfig(inCtx, record)
		}()
	}
	captureErr := make(chan error, 1)
	if len(cfg.Capture.Interfaces) > 0 {
		inputs.Add(1)
		go func() {
			defer inputs.Done()
			captureErr <- s.runCapture(inCtx)
		}()
	}
	listenErr := make(chan error, 1)
	inputs.Add(1)
	go func() {
		defer inputs.Done()
		listenErr <- s.listener.Serve(inCtx)
	}()

	addrs := make([]string, 0)
	for _, a := range s.listener.Addrs() {
		addrs = append(addrs, a.String())
	}
	s.log.Info("sensor ready", "version", opts.Version, "listen", addrs, "capture", cfg.Capture.Interfaces,
		"api", cfg.API.Socket, "admin", cfg.API.AdminListen, "metrics", cfg.Metrics.Listen,
		"endpoints", len(snap.Endpoints), "next_seq", snap.NextSeq)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-listenErr:
		runErr = fmt.Errorf("LAN-zone listener: %w", err)
	case err := <-captureErr:
		if err != nil {
			runErr = fmt.Errorf("capture: %w", err)
		}
	}
	s.log.Info("sensor stopping: inputs first, then storing every queued event")
	stopInputs()
	inputs.Wait()
	if s.diskFull.Load() {
		s.log.Warn("history disk is full: storing what is queued is not possible; events in memory go to the spill file",
			"queued", s.queue.len(), "spill", spillPath(opts.Dir))
	}
	drainPipeline()
	<-pipelineDone
	s.spillHeld(opts.Dir)
	if err := store.SaveSnapshot(s.engine.Snapshot()); err != nil {
		s.log.Error("save the state snapshot", "err", err)
	}
	if err := store.Flush(); err != nil {
		s.log.Error("flush history", "err", err)
	}
	stopOutputs()
	outputs.Wait()
	s.log.Info("sensor stopped", "last_seq", s.stored.Load())
	return runErr
}

// knownAtStart extends known (nil: none) with the addresses the saved
// state's endpoints declared: after a restart every agent comes back at
// once, from addresses the new process has not seen complete a handshake
// yet, and those of enrolled endpoints are admitted as known rather than
// held to the limits on unknown networks.
func knownAtStart(snap sensor.Snapshot, known func(netip.Addr) bool) func(netip.Addr) bool {
	ips := map[netip.Addr]bool{}
	for _, e := range snap.Endpoints {
		for _, itf := range e.Interfaces {
			for _, ip := range itf.IPs {
				ips[ip.Unmap()] = true
			}
		}
	}
	if len(ips) == 0 {
		return known
	}
	return func(ip netip.Addr) bool {
		return ips[ip.Unmap()] || known != nil && known(ip)
	}
}

// tickEvery is how often the correlator's time rules run. A verdict comes
// at the first tick past a deadline, so at a 1 s heartbeat interval a tick
// of a quarter second keeps it well within one interval of the deadline;
// a pass over 100k endpoints costs under a millisecond (BENCHMARKS.md).
const tickEvery = 250 * time.Millisecond

// pipeline stores events in sequence order, then hands them on. It retries
// a failing store without dropping anything; the queue bounds memory. Once
// ctx ends it returns as soon as the queue is empty.
func (s *Sensor) pipeline(ctx context.Context) {
	for {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if len(s.held) > 0 {
			// Look again for disk space every second even when idle.
			tctx, cancel = context.WithTimeout(ctx, time.Second)
		}
		evs, dropped := s.queue.take(tctx)
		cancel()
		if dropped > 0 {
			s.log.Error("event queue overflowed while history could not keep up; events were lost",
				"lost", dropped)
			s.engine.Record(schema.Event{Type: schema.EventStorageLow, Severity: schema.SeverityCritical,
				Reason:  fmt.Sprintf("%d events were lost because history could not store them in time", dropped),
				Details: &schema.StorageLowDetails{LostEvents: uint64(dropped)}})
		}
		if len(evs) == 0 {
			if len(s.held) > 0 && ctx.Err() == nil {
				s.storeAndForward(nil)
			}
			if ctx.Err() != nil && s.queue.len() == 0 {
				return
			}
			continue
		}
		if b := s.bridge.Load(); b != nil {
			// Ownership and fleet-wide claims, off the engine's lock.
			evs = b.Own(evs)
		}
		s.storeAndForward(evs)
	}
}

// maxHeld bounds the events kept in memory while the disk is full.
const maxHeld = 1 << 20

// storeAndForward stores events (and their outbox entries) durably, then
// writes the local alert log, tells the LAN zone and counts them. Events
// held for lack of disk space go first. On a full disk it does not wait:
// the events join the held ones, their alerts go to the collectors from
// memory, and the pipeline moves on.
func (s *Sensor) storeAndForward(evs []schema.Event) {
	all := evs
	if len(s.held) > 0 {
		all = append(s.held[:len(s.held):len(s.held)], evs...)
	}
	if len(all) == 0 {
		return
	}
	retry := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5, Multiplier: 2, MaxInterval: 10 * time.Second}
	for {
		s.mu.Lock()
		ob := s.outbox
		s.mu.Unlock()
		err := s.store.Append(all, func(b *history.Batch) error { return ob.Stage(b, all) })
		if err == nil {
			s.noteStore(nil, "")
			if n := len(s.held); n > 0 {
				ob.Release(s.held[n-1].Seq)
				s.log.Info("history disk has room again: stored the events that waited in memory", "events", n)
				s.held = nil
			}
			if s.spillRead != "" {
				if err := os.Remove(s.spillRead); err != nil {
					s.log.Error("remove the spill file (its events are stored; remove it by hand)", "spill", s.spillRead, "err", err)
				}
				s.spillRead = ""
			}
			break
		}
		s.storeErrs.Add(1)
		wait := retry.NextBackOff()
		if errors.Is(err, history.ErrDiskFull) {
			s.noteStore(err, "cannot store events: they wait in memory until the history disk has room; alerts go to the collectors meanwhile")
			if over := len(all) - maxHeld; over > 0 {
				all = all[over:]
				s.heldLost += uint64(over)
				s.log.Error("too many events waiting for disk space; the oldest were dropped", "dropped", over)
			}
			s.held = all
			if lost := ob.Hold(evs); lost > 0 {
				s.log.Error("too many alerts waiting in memory for disk space; the oldest were dropped", "dropped", lost)
			}
			s.forward(evs)
			return
		}
		s.log.Error("cannot store events; retrying, nothing is dropped (check free disk space in the state directory)",
			"events", len(all), "first_seq", all[0].Seq, "err", err, "retry_in", wait)
		if errors.Is(err, history.ErrClosed) {
			return
		}
		time.Sleep(wait)
	}
	s.stored.Store(all[len(all)-1].Seq)
	s.forward(evs)
}

// forward hands stored (or held) events to the local alert log, the LAN
// zone and the metrics.
func (s *Sensor) forward(evs []schema.Event) {
	if len(evs) == 0 {
		return
	}
	if s.jsonLog != nil {
		if err := s.jsonLog.Write(evs); err != nil {
			s.log.Error("write the local alert log", "err", err)
		}
	}
	s.listener.Notify(evs)
	s.metrics.observe(evs)
	if w := s.web.Load(); w != nil {
		w.Publish(evs)
	}
}

// noteStore reports the outcome of a write to history (what says which): an
// error is logged, except that a full disk is logged once until a write
// succeeds again, since every write fails the same way meanwhile and what
// it would have written waits in memory.
func (s *Sensor) noteStore(err error, what string) {
	switch {
	case err == nil:
		if s.diskFull.Swap(false) {
			s.log.Info("history disk has room again: writing what waited in memory")
		}
	case errors.Is(err, history.ErrDiskFull):
		if !s.diskFull.Swap(true) {
			s.log.Error(what, "err", err)
		}
	default:
		s.log.Error(what, "err", err)
	}
}

// sensorConfig is the correlator's configuration, with the LAN zone's own
// addresses so the heartbeat channel is told apart from other flows (an
// unspecified address, from ":PORT", matches every address on the port).
func (s *Sensor) sensorConfig(r Resolved) sensor.Config {
	sc := r.SensorConfig()
	sc.SensorAddrs = slices.Clone(r.Bind)
	// The sensor's own interfaces answer heartbeats on the LAN: they are
	// infrastructure, not stations without a heartbeat.
	sc.Infrastructure = append(s.infrastructure(r.Config), ownMACs()...)
	return sc
}

// ownMACs lists the MACs of this host's interfaces.
func ownMACs() []string {
	itfs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []string
	for _, itf := range itfs {
		if len(itf.HardwareAddr) == 6 {
			out = append(out, itf.HardwareAddr.String())
		}
	}
	return out
}

// snapshots persists the latest state per endpoint periodically, so a
// restart restores endpoints and their last heartbeat.
func (s *Sensor) snapshots(ctx context.Context) {
	t := time.NewTicker(s.cfg.History.SnapshotEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.store.SaveSnapshot(s.engine.Snapshot()); err != nil {
				s.log.Error("save the state snapshot", "err", err)
			}
		}
	}
}

// startAlerts builds the outbox and dispatcher for the configured syslog
// destinations and starts delivery.
func (s *Sensor) startAlerts(cfg Alerts, record func(schema.Event)) error {
	var dests []alert.Destination
	for _, raw := range cfg.Syslog {
		d, err := alert.ParseDestination(raw)
		if err != nil {
			return fmt.Errorf("alerts.syslog: %w", err)
		}
		dests = append(dests, d)
	}
	sp, err := s.store.Space(alert.SpaceName)
	if err != nil {
		return fmt.Errorf("alert outbox: %w", err)
	}
	ob, err := alert.NewOutbox(sp, alert.OutboxOptions{
		Destinations: dests, MaxEntries: cfg.OutboxLimit, Logger: s.log.With("part", "outbox"),
		Room: s.store.RoomToWrite,
	})
	if err != nil {
		return fmt.Errorf("alert outbox: %w", err)
	}
	dp, err := alert.NewDispatcher(ob, alert.DispatcherOptions{
		OnLoss: record, Logger: s.log.With("part", "syslog"), Version: s.opts.Version,
	})
	if err != nil {
		return fmt.Errorf("alert dispatcher: %w", err)
	}
	// The old dispatcher stops before the new one starts, so no destination
	// is served twice and no removed destination's cursor is rewritten.
	s.stopAlertDispatch()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.mu.Lock()
	s.outbox, s.dispatcher, s.stopAlerts, s.alertsDone = ob, dp, cancel, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		if err := dp.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("alert dispatcher stopped", "err", err)
		}
	}()
	return nil
}

func (s *Sensor) stopAlertDispatch() {
	s.mu.Lock()
	stop, done := s.stopAlerts, s.alertsDone
	s.stopAlerts, s.alertsDone = nil, nil
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// resolvedEnroller enrolls through the authority with the LAN-zone
// addresses of the configuration in force, wherever its file is.
type resolvedEnroller struct {
	*pki.Authority
	s *Sensor
}

func (e resolvedEnroller) Enroll(name string, opts pki.EnrollOptions) (*pki.Bundle, error) {
	if opts.Addresses == nil {
		e.s.applyMu.Lock()
		opts.Addresses = e.s.resolved.LANZone.AddrPorts()
		e.s.applyMu.Unlock()
		if len(opts.Addresses) == 0 {
			return nil, errors.New("the sensor's configuration lists no lanzone.addresses, so a bundle could not tell the agent where to connect: set them (tapbeat config set lan ADDR)")
		}
	}
	return e.Authority.Enroll(name, opts)
}

// followConfig applies configuration changes until ctx ends: on every
// reload request (SIGHUP) and whenever the configuration file changes
// (tapbeat config set, an edit). The daemon owns this watch; no part reads
// the file on its own.
func (s *Sensor) followConfig(ctx context.Context, record func(schema.Event)) {
	var tick <-chan time.Time
	if s.opts.WatchEvery > 0 {
		t := time.NewTicker(s.opts.WatchEvery)
		defer t.Stop()
		tick = t.C
	}
	path := s.opts.Config.Path // the sources, and so the file, stay the same
	seen := fileStamp(path)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.opts.Reload:
		case <-tick:
			now := fileStamp(path)
			if now == seen {
				continue
			}
			seen = now
		}
		if err := s.reload(record); err != nil {
			s.log.Error("configuration change refused; the running configuration stays", "err", err)
		}
	}
}

// stamp identifies a version of a file: a rename over it (an atomic save)
// or a write changes it.
type stamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func fileStamp(path string) stamp {
	st, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{mod: st.ModTime(), size: st.Size(), ino: inode(st)}
}

// reload resolves the configuration again and applies it.
func (s *Sensor) reload(record func(schema.Event)) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	r, err := s.opts.Resolve()
	if err != nil {
		return err
	}
	return s.apply(r, record)
}

// setConfig changes one LAN-zone setting for the admin API: it writes the
// configuration file, as `tapbeat config set` does, then resolves and
// applies it at once, as for any change of the file.
func (s *Sensor) setConfig(key, value string, record func(schema.Event)) (api.ConfigAnswer, error) {
	if s.opts.Resolve == nil {
		return api.ConfigAnswer{}, errors.New("this sensor runs without a configuration file to change")
	}
	path := s.opts.Config.Path
	z, err := lzconfig.LoadFile(path, s.opts.Dir)
	if err != nil {
		return api.ConfigAnswer{}, err
	}
	if err := z.Set(key, value); err != nil {
		return api.ConfigAnswer{}, err
	}
	if key == "lan" {
		a, err := pki.Open(s.opts.Dir)
		if err != nil {
			return api.ConfigAnswer{}, err
		}
		ips := make([]netip.Addr, len(z.Addresses))
		for i, a := range z.Addresses {
			ips[i] = netip.MustParseAddr(a) // Set parsed them
		}
		if err := a.ReissueServer(ips); err != nil {
			return api.ConfigAnswer{}, err
		}
	}
	if err := lzconfig.SaveFile(path, z); err != nil {
		return api.ConfigAnswer{}, err
	}
	if err := s.reload(record); err != nil {
		return api.ConfigAnswer{}, fmt.Errorf("%s was written, but the configuration it gives is refused: %w", path, err)
	}
	s.applyMu.Lock()
	r := s.resolved
	s.applyMu.Unlock()
	return api.ConfigAnswer{HeartbeatInterval: r.LANZone.HeartbeatInterval.String(), Addresses: r.LANZone.AddrPorts()}, nil
}

// apply hands a resolved configuration to every part that can change while
// running, together: the correlator first (so an endpoint is judged by the
// longer interval before its agent is told of a shorter one), then the LAN
// zone (agents are told at once), then alerting. Settings that need a
// restart are logged as such.
func (s *Sensor) apply(r Resolved, record func(schema.Event)) error {
	old := s.resolved
	if err := s.engine.Reconfigure(s.sensorConfig(r)); err != nil {
		return err
	}
	s.reconfigured(r)
	if err := s.listener.Apply(r.LANZone); err != nil {
		return err
	}
	if !slices.Equal(old.Alerts.Syslog, r.Alerts.Syslog) || old.Alerts.OutboxLimit != r.Alerts.OutboxLimit {
		if err := s.startAlerts(r.Alerts, record); err != nil {
			return err
		}
	}
	s.applyFleet(old.Fleet, r.Fleet)
	for _, c := range []struct {
		what    string
		changed bool
	}{
		{"capture", !slices.Equal(old.Capture.Interfaces, r.Capture.Interfaces) || old.Capture.RingMiB != r.Capture.RingMiB || old.Capture.Fanout != r.Capture.Fanout},
		{"LAN-zone port", old.LANPort() != r.LANPort()},
		{"API socket", old.API.Socket != r.API.Socket},
		{"admin API address", old.API.AdminListen != r.API.AdminListen},
		{"metrics address", old.Metrics.Listen != r.Metrics.Listen},
		{"history settings", old.History != r.History},
	} {
		if c.changed {
			s.log.Warn("configuration: a changed setting takes effect at the next start", "setting", c.what)
		}
	}
	s.resolved = r
	s.log.Info("configuration reloaded", "file", r.Path, "heartbeat_interval", r.LANZone.HeartbeatInterval,
		"missing_after", int(r.SensorConfig().MissingDeadline()/r.LANZone.HeartbeatInterval),
		"policies", len(r.Correlation.Policies), "infrastructure", len(r.Correlation.Infrastructure), "syslog", len(r.Alerts.Syslog))
	return nil
}
