package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Names of the fleet's streams and buckets.
const (
	BucketEndpoints = "tapbeat_endpoints" // endpoint id -> EndpointRecord
	BucketSensors   = "tapbeat_sensors"   // sensor name -> SensorRecord
	StreamTrust     = "TAPBEAT_TRUST"     // trust-store journal lines
	StreamEvents    = "TAPBEAT_EVENTS"    // every sensor's events, de-duplicated
	subjTrust       = "tapbeat.trust"
	subjEvents      = "tapbeat.events." // + sensor name
	subjQuery       = "tapbeat.query."  // + kind
)

// DegradeAfter is how long the shared state may be unwritable before the
// sensor declares the fleet degraded: a stream leader election after a
// node is lost takes up to about ten seconds and is not a degradation.
// It stays below the missing deadline (3 intervals of 15 s).
const DegradeAfter = 12 * time.Second

// Options configure a fleet member.
type Options struct {
	Dir    string
	Config Config
	Logger *slog.Logger
	// Interval is the agents' heartbeat interval: it bounds how stale a
	// shared heartbeat record may be before the fleet stops vouching for it.
	Interval time.Duration
	// LAN are this sensor's LAN-zone addresses as host:port, published in
	// the sensor registry so agents learn every sensor.
	LAN []string
	// OnTrust is called after trust-store lines from other sensors were
	// appended to the local journal (nil: nothing to do, the listener
	// re-reads the journal every second anyway).
	OnTrust func()
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// DegradeAfter overrides the package's DegradeAfter (tests with short
	// intervals).
	DegradeAfter time.Duration
	// Handlers answer the fleet's queries, by kind (see Handle).
	Handlers map[string]Handler
}

// Fleet is one sensor's membership of the fleet.
type Fleet struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	node *node
	nc   *nats.Conn
	js   jetstream.JetStream

	// wmu guards what the heartbeat path writes, apart from the shared
	// state the watch applies under mu. The heartbeat path only queues a
	// record (pending); writeLoop sends it, so no heartbeat waits on the
	// client connection.
	wmu     sync.Mutex
	written map[string]writtenRecord // what this sensor last wrote per endpoint
	writeTo jetstream.KeyValue       // the endpoints bucket, once it exists
	pending map[string]EndpointRecord
	wake    chan struct{}
	// unreleased are releases the fleet did not store; orphanSince is
	// when the watch first brought a record saying this sensor holds an
	// endpoint it does not; suspect are held endpoints whose record came
	// back different. reconcile works through them. releasing is set
	// while reconcile's releases run.
	unreleased  map[string]schema.Disconnect
	orphanSince map[string]time.Time
	suspect     map[string]struct{}
	releasing   atomic.Bool

	mu        sync.Mutex
	ready     bool // streams and buckets exist and answer
	endpoints jetstream.KeyValue
	sensors   jetstream.KeyValue
	claims    jetstream.KeyValue
	events    jetstream.Stream
	state     map[string]EndpointRecord  // the fleet's heartbeat state, from the watch
	changed   map[string]*EndpointRecord // received since the bridge last fed them (nil: deleted)
	ips       map[netip.Addr]int         // addresses the records declare, with how many records declare each
	macs      map[schema.MAC]int         // MACs the records declare, likewise
	peers     map[string]SensorRecord
	degraded  bool
	synced    bool     // the endpoint records present when the watch began were all received
	routed    []string // names of the nodes this sensor's node has routes to
	cutOffWhy string   // why this node's JetStream is held (hold.go); "" while it runs
	why       string
	changes   chan Change
	startedAt time.Time

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Change is a change of the fleet's health, for fleet_degraded and
// fleet_restored events.
type Change struct {
	Degraded bool
	Reason   string
	At       time.Time
}

// Start joins the fleet: starts the embedded node (unless the fleet is an
// external NATS cluster), connects, and keeps the streams and buckets, the
// trust-store journal and the sensor registry in step until ctx ends or
// Close. It returns once connected; shared state becomes available when
// the cluster has quorum (Healthy reports it).
func Start(ctx context.Context, opts Options) (*Fleet, error) {
	cfg := opts.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("fleet: no [fleet] table configured")
	}
	opts.Config = cfg
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = 15 * time.Second
	}
	if opts.DegradeAfter <= 0 {
		opts.DegradeAfter = DegradeAfter
	}
	f := &Fleet{
		opts: opts, log: opts.Logger.With("part", "fleet"), now: opts.Now,
		state: map[string]EndpointRecord{}, changed: map[string]*EndpointRecord{}, ips: map[netip.Addr]int{}, macs: map[schema.MAC]int{}, written: map[string]writtenRecord{},
		pending: map[string]EndpointRecord{}, wake: make(chan struct{}, 1),
		unreleased: map[string]schema.Disconnect{}, orphanSince: map[string]time.Time{}, suspect: map[string]struct{}{},
		peers: map[string]SensorRecord{}, changes: make(chan Change, 16),
		degraded: true, why: "joining the fleet", startedAt: opts.Now(),
	}
	nopts := []nats.Option{
		nats.Name("tapbeat " + cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
	}
	url := cfg.NATSURL
	if cfg.External() {
		if cfg.Credentials != "" {
			nopts = append(nopts, nats.UserCredentials(cfg.Credentials))
		}
	} else {
		n, err := startNode(opts.Dir, cfg, f.log)
		if err != nil {
			return nil, err
		}
		f.node = n
		url = n.url
		nopts = append(nopts, nats.Token(n.token), nats.InProcessServer(n.srv))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		f.shutdownNode()
		return nil, fmt.Errorf("fleet: connect to %s: %w", url, err)
	}
	f.nc = nc
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncErrHandler(f.asyncFailed), jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fleet: %w", err)
	}
	f.js = js
	// Every sensor tells the names it knows, so a query can name the
	// sensors that did not answer even when the registry has no quorum.
	if err := f.Handle(kindRegistry, func(context.Context, []byte) (any, error) {
		var names []string
		for _, r := range f.Sensors() {
			names = append(names, r.Name)
		}
		return names, nil
	}); err != nil {
		f.Close()
		return nil, err
	}
	for kind, h := range opts.Handlers {
		if err := f.Handle(kind, h); err != nil {
			f.Close()
			return nil, err
		}
	}
	ctx, f.cancel = context.WithCancel(ctx)
	f.wg.Add(2)
	go func() { defer f.wg.Done(); f.run(ctx) }()
	go func() { defer f.wg.Done(); f.writeLoop(ctx) }()
	if f.node != nil && len(cfg.Peers) > 0 {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); f.holdJetStream(ctx) }()
	}
	return f, nil
}

// Name returns this sensor's name in the fleet.
func (f *Fleet) Name() string { return f.opts.Config.Name }

// Conn returns the client connection (queries use it).
func (f *Fleet) Conn() *nats.Conn { return f.nc }

// Changes delivers fleet_degraded / fleet_restored transitions.
func (f *Fleet) Changes() <-chan Change { return f.changes }

// Healthy reports whether the fleet's shared state is available and current,
// and if not, why.
func (f *Fleet) Healthy() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.degraded, f.why
}

// Close leaves the fleet: stops the loops, closes the connection, shuts
// the node down.
func (f *Fleet) Close() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	if f.nc != nil {
		f.nc.Close()
	}
	f.shutdownNode()
	f.mu.Lock()
	f.degraded, f.why = true, "left the fleet"
	f.mu.Unlock()
}

func (f *Fleet) shutdownNode() {
	if f.node != nil {
		f.node.srv.Shutdown()
		f.node.srv.WaitForShutdown()
		f.node = nil
	}
}

// replicas is the replica count for the fleet's streams and buckets.
func (f *Fleet) replicas() int {
	if r := f.opts.Config.Replicas; r > 0 {
		return r
	}
	n := 3
	if f.node != nil {
		n = 1
		if f.node.srv.JetStreamIsClustered() {
			n = len(f.node.srv.JetStreamClusterPeers())
		}
		n = max(n, len(f.opts.Config.Peers)+1)
	}
	f.mu.Lock()
	n = max(n, len(f.peers))
	f.mu.Unlock()
	return min(max(n, 1), 3)
}

// ensure creates (or scales up) the fleet's streams and buckets, each
// within assetTimeout.
func (f *Fleet) ensure(ctx context.Context, r int) error {
	kvs := []jetstream.KeyValueConfig{
		{Bucket: BucketEndpoints, Description: "per-endpoint heartbeat state", History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: BucketSensors, Description: "fleet sensors", History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: BucketClaims, Description: "observer-owned verdicts: the first claimant raises them", History: 1,
			Replicas: r, Storage: jetstream.FileStorage, LimitMarkerTTL: time.Minute},
	}
	streams := []jetstream.StreamConfig{
		{Name: StreamTrust, Subjects: []string{subjTrust}, Replicas: r, Storage: jetstream.FileStorage,
			Duplicates: 10 * time.Minute, Description: "trust-store journal lines (enroll, revoke)"},
		{Name: StreamEvents, Subjects: []string{subjEvents + ">"}, Replicas: r, Storage: jetstream.FileStorage,
			Duplicates: 10 * time.Minute, MaxAge: 30 * 24 * time.Hour, MaxBytes: 1 << 30,
			Description: "every sensor's events; Msg-Id sensor/seq drops duplicates"},
	}
	// A new replicated asset waits for its first leader election (several
	// seconds): create them side by side.
	got := make([]jetstream.KeyValue, len(kvs))
	var evs jetstream.Stream
	errs := make([]error, len(kvs)+len(streams))
	var wg sync.WaitGroup
	for i, c := range kvs {
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, assetTimeout)
			defer cancel()
			kv, err := f.js.CreateOrUpdateKeyValue(actx, c)
			if err != nil {
				errs[i] = fmt.Errorf("bucket %s (R%d): %w", c.Bucket, r, err)
			}
			got[i] = kv
		})
	}
	for i, c := range streams {
		wg.Go(func() {
			actx, cancel := context.WithTimeout(ctx, assetTimeout)
			defer cancel()
			st, err := f.js.CreateOrUpdateStream(actx, c)
			if err != nil {
				errs[len(kvs)+i] = fmt.Errorf("stream %s (R%d): %w", c.Name, r, err)
			} else if c.Name == StreamEvents {
				evs = st
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	f.mu.Lock()
	f.endpoints, f.sensors, f.claims, f.events = got[0], got[1], got[2], evs
	f.wmu.Lock()
	f.writeTo = got[0]
	f.wmu.Unlock()
	f.mu.Unlock()
	return nil
}

// assetTimeout bounds the creation or update of one stream or bucket: a
// new replicated one waits for its first leader election.
const assetTimeout = 10 * time.Second

// run keeps the fleet in step: assets, watches, journal sync, registry,
// health. Every step retries on its own; nothing here stops the sensor.
func (f *Fleet) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		watching  bool
		trust     *trustSync
		lastReg   time.Time
		lastEns   time.Time
		ensured   int // replicas of the last successful ensure
		lastErr   = "fleet registry not written"
		stopWatch context.CancelFunc
	)
	for {
		if !f.isReady() || f.replicas() > ensured && time.Since(lastEns) > 5*time.Second {
			r := f.replicas()
			if err := f.ensure(ctx, r); err != nil && !f.isReady() {
				f.setHealth(true, "fleet streams unavailable: "+shortErr(err))
			} else if err != nil {
				// The assets exist and serve; scaling them up waits for the
				// cluster (a node catching up after a partition answers
				// "temporarily unavailable" for a while).
				f.log.Debug("fleet: scale the streams", "replicas", r, "err", err)
				lastEns = time.Now()
			} else {
				f.mu.Lock()
				f.ready = true
				f.mu.Unlock()
				if ensured != 0 && r != ensured {
					// The streams moved to new replicas: follow them afresh.
					if trust != nil {
						trust.stop()
						trust = nil
					}
					if stopWatch != nil {
						stopWatch()
						watching = false
					}
				}
				lastEns, ensured = time.Now(), r
			}
		}
		if f.isReady() && !watching {
			wctx, cancel := context.WithCancel(ctx)
			if err := f.watch(wctx); err == nil {
				watching, stopWatch = true, cancel
			} else {
				cancel()
				f.log.Warn("fleet: watch", "err", err)
			}
		}
		if f.isReady() && trust == nil {
			t, err := startTrustSync(ctx, f)
			if err != nil {
				f.log.Warn("fleet: trust-store sync", "err", err)
			} else {
				trust = t
			}
		}
		if trust != nil {
			trust.tail(ctx)
		}
		if f.isReady() && time.Since(lastReg) >= registryEvery {
			if err := f.register(ctx); err != nil {
				lastErr = "fleet registry unavailable: " + shortErr(err)
				if why := f.cutOff(); why != "" {
					lastErr = why
				}
			} else {
				lastReg = time.Now()
				f.setHealth(false, "")
			}
		}
		// A stream leader election takes a few seconds: only a failure that
		// lasts DegradeAfter degrades the fleet.
		if !lastReg.IsZero() && time.Since(lastReg) > f.opts.DegradeAfter {
			f.setHealth(true, lastErr)
		}
		f.followRoutes()
		if f.nc.Status() != nats.CONNECTED {
			f.setHealth(true, "not connected to the fleet node")
		}
		select {
		case <-ctx.Done():
			if trust != nil {
				trust.stop()
			}
			return
		case <-tick.C:
		}
	}
}

// asyncFailed handles an asynchronous write the fleet did not store (no
// quorum, a leader election): an endpoint record is written again at the
// endpoint's next heartbeat. A write left unanswered for publishTimeout
// has failed too.
func (f *Fleet) asyncFailed(_ jetstream.JetStream, m *nats.Msg, err error) {
	if id, ok := strings.CutPrefix(m.Subject, "$KV."+BucketEndpoints+"."); ok {
		f.wmu.Lock()
		delete(f.written, id)
		f.wmu.Unlock()
		f.log.Debug("fleet: endpoint write not stored; written again at the next heartbeat", "endpoint", id, "err", err)
	}
}

// followRoutes notes which nodes the embedded node has routes to.
func (f *Fleet) followRoutes() {
	if f.node == nil {
		return
	}
	names, err := f.node.routedNames()
	if err != nil {
		return
	}
	f.mu.Lock()
	f.routed = names
	f.mu.Unlock()
}

func (f *Fleet) isReady() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

// setHealth records the fleet's health and reports transitions.
func (f *Fleet) setHealth(degraded bool, why string) {
	f.mu.Lock()
	changed := f.degraded != degraded
	f.degraded, f.why = degraded, why
	f.mu.Unlock()
	if !changed {
		return
	}
	if degraded {
		f.log.Warn("fleet degraded", "reason", why)
	} else {
		f.log.Info("fleet restored")
	}
	select {
	case f.changes <- Change{Degraded: degraded, Reason: why, At: f.now()}:
	default:
	}
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i > 0 && len(s) > 160 {
		s = s[i+2:]
	}
	return s
}

// Token reads the loopback client token a running sensor wrote in dir.
func Token(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil {
		return "", fmt.Errorf("fleet: %w (is `tapbeat run --dir %s` running with a fleet?)", err, dir)
	}
	return strings.TrimSpace(string(b)), nil
}
