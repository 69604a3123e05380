package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/access"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/inventory"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/web"
)

// Console is the [console] table: the operator console.
type Console struct {
	// Web is the console's HTTPS address ("" disables it), e.g.
	// "10.0.0.2:8443".
	Web string `toml:"web"`
	// WebCert and WebKey are a certificate the organisation already has;
	// by default the sensor issues one from its CA for the address at start.
	WebCert string `toml:"web_cert"`
	WebKey  string `toml:"web_key"`
}

// Inventory is the [inventory] table: new stations and flip flops.
type Inventory struct {
	// LearningPeriod: MACs first seen within it of the first start are
	// learnt silently, later ones raise new_station (default 24h).
	LearningPeriod time.Duration `toml:"learning_period"`
	// FlipWindow: an IP moving to another MAC within it of the previous
	// MAC's last claim raises ip_mac_changed (default 1h).
	FlipWindow time.Duration `toml:"flip_window"`
}

// inventoryParts are the daemon's station watcher and triage list.
type inventoryParts struct {
	vendors *inventory.Vendors
	triage  *inventory.Triage
	watch   *inventory.Watcher
	space   *history.Space

	mu        sync.Mutex
	corrCfg   Resolved // configuration the correlator was last given
	appliedAt []string // authorized MACs last given to the correlator
}

// Keys in the inventory space of history.
var (
	keyLearningStart = []byte("start")
	keyMACPrefix     = []byte("m/")
)

// openInventory loads the triage list and the MACs seen so far.
func (s *Sensor) openInventory(cfg Config) error {
	inv := &inventoryParts{vendors: inventory.Load(), corrCfg: s.resolved}
	var err error
	if inv.triage, err = inventory.OpenTriage(filepath.Join(s.opts.Dir, inventory.TriageFile)); err != nil {
		return err
	}
	if inv.space, err = s.store.Space("inventory"); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	start := time.Now()
	if v, ok, err := inv.space.Get(keyLearningStart); err != nil {
		return fmt.Errorf("inventory: %w", err)
	} else if ok {
		if err := start.UnmarshalText(v); err != nil {
			return fmt.Errorf("inventory: learning start %q: %w", v, err)
		}
	} else {
		b, _ := start.UTC().MarshalText()
		if err := inv.space.Update(func(bt *history.Batch) error { return bt.Set(inv.space, keyLearningStart, b) }); err != nil {
			s.log.Warn("inventory: cannot save the learning start; it begins again at the next start", "err", err)
		}
	}
	var known []schema.MAC
	err = inv.space.Scan(keyMACPrefix, false, func(k, _ []byte) (bool, error) {
		if len(k) != len(keyMACPrefix)+6 || string(k[:len(keyMACPrefix)]) != string(keyMACPrefix) {
			return false, nil
		}
		known = append(known, schema.MAC(k[len(keyMACPrefix):]))
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	inv.watch = inventory.NewWatcher(inventory.WatchConfig{
		LearningPeriod: cfg.Inventory.LearningPeriod, FlipWindow: cfg.Inventory.FlipWindow,
		Vendors: inv.vendors, Owner: s.ownerOf,
	}, start, known)
	inv.appliedAt, _ = inv.triage.Authorized(time.Now())
	s.inv = inv
	return nil
}

// ownerOf names the enrolled endpoint that declared m.
func (s *Sensor) ownerOf(m schema.MAC) (id, name string) {
	if s.engine == nil {
		return "", ""
	}
	for _, e := range s.engine.Endpoints() {
		if slices.Contains(e.MACs(), m) {
			return e.ID, e.Name
		}
	}
	return "", ""
}

// watchTraffic raises new_station and remembers the MACs learnt.
func (s *Sensor) watchTraffic(batch []schema.TrafficSummary) {
	evs, learnt := s.inv.watch.Traffic(batch)
	for _, ev := range evs {
		s.engine.Record(ev)
	}
	if len(learnt) == 0 {
		return
	}
	err := s.inv.space.Update(func(b *history.Batch) error {
		for _, l := range learnt {
			t, _ := l.FirstSeen.UTC().MarshalText()
			if err := b.Set(s.inv.space, append(slices.Clone(keyMACPrefix), l.MAC[:]...), t); err != nil {
				return err
			}
		}
		return nil
	})
	s.noteStore(err, "store the MACs seen")
}

// watchBindings raises ip_mac_changed.
func (s *Sensor) watchBindings(bs []schema.Binding) {
	for _, ev := range s.inv.watch.Bindings(bs) {
		s.engine.Record(ev)
	}
}

// infrastructure is the configuration's infrastructure MACs plus the
// MACs the triage list authorizes now: the one list of stations that are
// not alerted as no_heartbeat.
func (s *Sensor) infrastructure(cfg Config) []string {
	out := slices.Clone(cfg.Correlation.Infrastructure)
	if s.inv != nil {
		auth, _ := s.inv.triage.Authorized(time.Now())
		out = append(out, auth...)
	}
	return out
}

// applyTriage gives the correlator the authorized MACs again when they
// changed (an operator's triage or an expiry).
func (s *Sensor) applyTriage(force bool) {
	inv := s.inv
	inv.mu.Lock()
	defer inv.mu.Unlock()
	auth, _ := inv.triage.Authorized(time.Now())
	if !force && slices.Equal(auth, inv.appliedAt) {
		return
	}
	if err := s.engine.Reconfigure(s.sensorConfig(inv.corrCfg)); err != nil {
		s.log.Error("apply the triage list", "err", err)
		return
	}
	inv.appliedAt = auth
	s.log.Info("authorized stations applied", "authorized", len(auth))
}

// reconfigured notes the configuration a reload gave the correlator.
func (s *Sensor) reconfigured(r Resolved) {
	s.inv.mu.Lock()
	s.inv.corrCfg = r
	s.inv.appliedAt, _ = s.inv.triage.Authorized(time.Now())
	s.inv.mu.Unlock()
}

// triageExpiries re-applies the triage list as authorizations expire.
func (s *Sensor) triageExpiries(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.applyTriage(false)
		}
	}
}

// consoleTLS returns the console's TLS configuration and the verifier of
// administrator certificates.
func (s *Sensor) consoleTLS(c Console) (*tls.Config, func(tls.ConnectionState) (pki.Entry, error), error) {
	var cert tls.Certificate
	var err error
	if c.WebCert != "" || c.WebKey != "" {
		if cert, err = tls.LoadX509KeyPair(c.WebCert, c.WebKey); err != nil {
			return nil, nil, fmt.Errorf("console certificate %s, key %s: %w", c.WebCert, c.WebKey, err)
		}
	} else {
		host, _, err := net.SplitHostPort(c.Web)
		if err != nil {
			return nil, nil, fmt.Errorf("console address %q: %w (want HOST:PORT)", c.Web, err)
		}
		hosts := []string{pki.ServerDNSName, "localhost"}
		if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
			hosts = append([]string{host}, hosts...)
		} else {
			hosts = append(hosts, s.cfg.LANZone.Addresses...)
		}
		a, err := pki.Open(s.opts.Dir)
		if err != nil {
			return nil, nil, err
		}
		if cert, err = a.IssueWebServer(hosts, time.Now()); err != nil {
			return nil, nil, err
		}
	}
	return pki.ConsoleTLS(s.opts.Dir, cert)
}

// startConsole builds the console and serves it until ctx ends.
func (s *Sensor) startConsole(ctx context.Context, api http.Handler, wg *sync.WaitGroup) error {
	c := s.cfg.Console
	if c.Web == "" {
		return nil
	}
	tlsCfg, verify, err := s.consoleTLS(c)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	ts, err := pki.OpenTrustStore(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	w, err := web.New(web.Options{
		Live: s.engine, History: s.store, Access: access.Open(s.opts.Dir, access.Params{}),
		Triage: s.inv.triage, Vendors: s.inv.vendors,
		OpenAuthority: func() (web.Enroller, error) {
			a, err := pki.Open(s.opts.Dir)
			if err != nil {
				return nil, err
			}
			return resolvedEnroller{a, s}, nil
		},
		Enrolled: func() ([]pki.Entry, error) {
			if _, err := ts.Refresh(); err != nil {
				return nil, err
			}
			return ts.Entries(), nil
		},
		Health:        s.health,
		Record:        s.engine.Record,
		TriageChanged: func() { s.applyTriage(true) },
		API:           api,
		AdminVerifier: verify,
		Logger:        s.log.With("part", "console"),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Web)
	if err != nil {
		return fmt.Errorf("console: listen on %s: %w", c.Web, err)
	}
	s.web.Store(w)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := w.Serve(ctx, ln, tlsCfg); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			s.log.Error("console stopped", "addr", c.Web, "err", err)
		}
	}()
	s.log.Info("console ready", "url", "https://"+ln.Addr().String())
	return nil
}

// health is what the console's overview shows of the sensor.
func (s *Sensor) health() web.SensorHealth {
	var h web.SensorHealth
	s.metrics.mu.Lock()
	for _, c := range s.metrics.captures {
		h.Capture = append(h.Capture, c)
	}
	s.metrics.mu.Unlock()
	slices.SortFunc(h.Capture, func(a, b schema.CaptureHealth) int {
		if a.Interface < b.Interface {
			return -1
		}
		return 1
	})
	if s.listener != nil {
		h.Connected = s.listener.Connected()
		for _, a := range s.listener.Addrs() {
			h.LANZone = append(h.LANZone, a.String())
		}
	}
	lsm, vlog := s.store.Size()
	h.HistoryBytes = uint64(lsm + vlog)
	h.DiskFree, h.DiskTotal = diskSpace(s.opts.Dir)
	return h
}
