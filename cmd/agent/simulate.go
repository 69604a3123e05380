package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// SimConfig configures Simulate.
type SimConfig struct {
	Dir    string // sensor directory, for bulk enrollment
	Count  int    // endpoints
	Sensor string // sensor host:port
	// Sensors, when set, are the addresses tried in order after a lost or
	// failed connection, as an agent tries those of its bundle and the
	// sensor's config message (Sensor is then ignored).
	Sensors []string
	// First is the index of the first simulated endpoint: its source
	// address and MAC (SimSource, 02:00:...) follow from it, so several
	// simulator processes can run side by side without sharing either.
	First int
	// RampByNetwork starts the endpoints of every /24 in turn over the
	// ramp (the first address of each network, then the second, ...),
	// instead of one network after the other: the sensor admits handshakes
	// from a network whose addresses it does not know yet at a bounded
	// rate (lanzone's admission), as a real site's hosts start spread out.
	RampByNetwork bool
	Prefix        string        // endpoint name prefix
	Cache         string        // bundle cache file (default next to Dir)
	Ramp          time.Duration // spread of the first connections
	Report        time.Duration // progress interval
	Duration      time.Duration // 0: until ctx ends
	Out           io.Writer
	Logger        *slog.Logger
	// Bundles, when set, are used instead of enrolling Count endpoints.
	Bundles []*pki.Bundle
	// MaxDials bounds the simulator's concurrent TLS handshakes (default
	// 64): real endpoints each have a CPU of their own, the simulated ones
	// share this process's, and thousands of half-done handshakes would
	// all time out together.
	MaxDials int
}

// SimStats are the simulator's running totals.
type SimStats struct {
	Connected  int64
	Sessions   int64
	Heartbeats int64
	DialErrors int64
	Lost       int64
	// LastDialError is the latest failed connection attempt: the address
	// and what failed.
	LastDialError string `json:",omitempty"`
}

// SimSource returns the loopback source address of simulated endpoint i:
// 127.B.C.D outside 127.0.0.0/16, never .0 or .255.
func SimSource(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(1 + i/(254*256)), byte((i / 254) % 256), byte(1 + i%254)})
}

// simBundles enrolls (or reloads from the cache) count endpoints.
func simBundles(cfg SimConfig) ([]*pki.Bundle, error) {
	cache := cfg.Cache
	if cache == "" {
		cache = filepath.Join(filepath.Dir(filepath.Clean(cfg.Dir)), cfg.Prefix+"-bundles.json")
	}
	var bs []*pki.Bundle
	if raw, err := os.ReadFile(cache); err == nil {
		if err := json.Unmarshal(raw, &bs); err != nil {
			return nil, fmt.Errorf("simulate: bundle cache %s: %w (remove it to enroll again)", cache, err)
		}
		if len(bs) >= cfg.Count {
			return bs[:cfg.Count], nil
		}
		return nil, fmt.Errorf("simulate: bundle cache %s holds %d endpoints, %d wanted: remove it or use another --prefix", cache, len(bs), cfg.Count)
	}
	a, err := pki.Open(cfg.Dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, cfg.Count)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%06d", cfg.Prefix, i)
	}
	start := time.Now()
	bs, err = a.EnrollMany(names, pki.EnrollOptions{})
	if err != nil {
		return nil, err
	}
	cfg.Logger.Info("simulate: enrolled", "count", len(bs), "took", time.Since(start))
	raw, err := json.Marshal(bs)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(cache, raw, 0o600); err != nil {
		return nil, fmt.Errorf("simulate: write bundle cache: %w", err)
	}
	return bs, nil
}

// Simulator runs many simulated endpoints from one process.
type Simulator struct {
	cfg                                        SimConfig
	bundles                                    []*pki.Bundle
	dials                                      chan struct{}
	connected, sessions, beats, dialErrs, lost atomic.Int64
	lastDialErr                                atomic.Pointer[string]
}

func (s *Simulator) dialFailed(addr string, err error) {
	s.dialErrs.Add(1)
	msg := addr + ": " + err.Error()
	s.lastDialErr.Store(&msg)
}

// NewSimulator enrolls the endpoints (or reloads them from the cache).
func NewSimulator(cfg SimConfig) (*Simulator, error) {
	if cfg.Count <= 0 && len(cfg.Bundles) == 0 {
		return nil, errors.New("simulate: --count must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Report <= 0 {
		cfg.Report = 5 * time.Second
	}
	bs := cfg.Bundles
	if bs == nil {
		var err error
		if bs, err = simBundles(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.MaxDials <= 0 {
		cfg.MaxDials = 64
	}
	return &Simulator{cfg: cfg, bundles: bs, dials: make(chan struct{}, cfg.MaxDials)}, nil
}

// Simulate runs cfg.Count endpoints from this process until ctx ends (or
// cfg.Duration passes), reporting progress to cfg.Out.
func Simulate(ctx context.Context, cfg SimConfig) error {
	s, err := NewSimulator(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Run connects every endpoint and keeps it heartbeating until ctx ends.
func (s *Simulator) Run(ctx context.Context) error {
	if s.cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.Duration)
		defer cancel()
	}
	raiseFileLimit()
	var wg sync.WaitGroup
	for i, b := range s.bundles {
		tc, err := pki.ClientConfig(b)
		if err != nil {
			return err
		}
		delay := time.Duration(0)
		if s.cfg.Ramp > 0 {
			delay = s.cfg.Ramp * time.Duration(i) / time.Duration(len(s.bundles))
			if s.cfg.RampByNetwork {
				nets := (len(s.bundles) + 253) / 254
				slot := (i%254)*nets + i/254
				delay = s.cfg.Ramp * time.Duration(slot) / time.Duration(254*nets)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.endpoint(ctx, i, tc, delay)
		}()
	}
	s.report(ctx, len(s.bundles))
	wg.Wait()
	return nil
}

// Stats returns the totals so far.
func (s *Simulator) Stats() SimStats {
	st := SimStats{Connected: s.connected.Load(), Sessions: s.sessions.Load(), Heartbeats: s.beats.Load(), DialErrors: s.dialErrs.Load(), Lost: s.lost.Load()}
	if e := s.lastDialErr.Load(); e != nil {
		st.LastDialError = *e
	}
	return st
}

func (s *Simulator) report(ctx context.Context, n int) {
	start := time.Now()
	t := time.NewTicker(s.cfg.Report)
	defer t.Stop()
	var lostAt time.Time // when the fleet was last complete and lost a member
	full := false
	check := time.NewTicker(100 * time.Millisecond)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			st := s.Stats()
			fmt.Fprintf(s.cfg.Out, "final t=%.0fs connected=%d sessions=%d heartbeats=%d dial_errors=%d lost=%d\n",
				time.Since(start).Seconds(), st.Connected, st.Sessions, st.Heartbeats, st.DialErrors, st.Lost)
			return
		case <-check.C:
			c := s.connected.Load()
			switch {
			case c == int64(n) && !full:
				full = true
				if lostAt.IsZero() {
					fmt.Fprintf(s.cfg.Out, "all %d connected %.1fs after start\n", n, time.Since(start).Seconds())
				} else {
					fmt.Fprintf(s.cfg.Out, "all %d connected again %.1fs after the first loss\n", n, time.Since(lostAt).Seconds())
				}
			case c < int64(n) && full:
				full = false
				lostAt = time.Now()
			}
		case <-t.C:
			st := s.Stats()
			fmt.Fprintf(s.cfg.Out, "t=%.0fs connected=%d sessions=%d heartbeats=%d dial_errors=%d lost=%d\n",
				time.Since(start).Seconds(), st.Connected, st.Sessions, st.Heartbeats, st.DialErrors, st.Lost)
		}
	}
}

func (s *Simulator) endpoint(ctx context.Context, i int, tc *tls.Config, delay time.Duration) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(delay):
	}
	i += s.cfg.First
	src := SimSource(i)
	hello := wire.Hello{
		Health: schema.HealthGreen,
		Interfaces: []wire.Interface{{
			Name: "eth0", MAC: schema.MACFromUint64(0x020000000000 | uint64(i)),
			IPs: []netip.Addr{src}, // the address it connects from, as a real agent's interface
		}},
		Agent: "tapbeat-agent simulate",
	}
	retry := reconnectBackoff(ReconnectMin, ReconnectMax)
	addrs := s.cfg.Sensors
	if len(addrs) == 0 {
		addrs = []string{s.cfg.Sensor}
	}
	for ctx.Err() == nil {
		for _, addr := range addrs {
			if s.session(ctx, addr, src, tc, hello) {
				retry.Reset()
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry.NextBackOff()):
		}
	}
}

// session runs one connection; it reports whether one was established.
func (s *Simulator) session(ctx context.Context, addr string, src netip.Addr, tc *tls.Config, hello wire.Hello) bool {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}, Config: tc}
	select {
	case s.dials <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	<-s.dials
	if err != nil {
		s.dialFailed(addr, err)
		return false
	}
	c := nc.(*tls.Conn)
	defer c.Close()
	hf, _ := wire.Marshal(wire.TypeHello, hello)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(hf); err != nil {
		s.dialFailed(addr, fmt.Errorf("send hello: %w", err))
		return false
	}
	s.sessions.Add(1)
	s.connected.Add(1)
	defer s.connected.Add(-1)
	var interval atomic.Int64
	interval.Store(int64(15 * time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c.SetReadDeadline(time.Now().Add(4*time.Duration(interval.Load()) + 10*time.Second))
			f, err := wire.ReadFrame(c)
			if err != nil {
				return
			}
			switch f.Type {
			case wire.TypeConfig:
				if cfg, err := wire.DecodeConfig(f.Payload); err == nil {
					interval.Store(int64(cfg.Interval()))
				}
			case wire.TypeError:
				return
			}
		}
	}()
	first := true
	var seq uint64
	for {
		wait := time.Duration(interval.Load())
		if first {
			wait = time.Duration(rand.Int64N(int64(wait)))
			first = false
		}
		select {
		case <-ctx.Done():
			return true
		case <-done:
			if ctx.Err() == nil {
				s.lost.Add(1)
			}
			return true
		case <-time.After(wait):
		}
		seq++
		f := stampedHeartbeat(seq)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(f()); err != nil {
			s.lost.Add(1)
			return true
		}
		s.beats.Add(1)
	}
}

// sentAtMark is the placeholder sent_at a heartbeat frame is encoded with:
// as many digits as a Unix time in nanoseconds until 2286.
const sentAtMark = 1_000_000_000_000_000_000

// stampedHeartbeat encodes a heartbeat and returns a function that writes
// the current time over its sent_at and returns the frame. Encoding
// allocates; in a process holding thousands of connections, a collection
// may hold an allocating goroutine back for a while, and a heartbeat
// stamped before that would measure the simulator's pause as the sensor's
// latency. Stamping allocates nothing.
func stampedHeartbeat(seq uint64) func() []byte {
	f, _ := wire.Marshal(wire.TypeHeartbeat, wire.Heartbeat{Health: schema.HealthGreen, Seq: seq, SentAt: sentAtMark})
	mark := strconv.AppendInt(nil, sentAtMark, 10)
	i := bytes.Index(f, mark)
	return func() []byte {
		now := time.Now().UnixNano()
		if i >= 0 && now >= sentAtMark { // 19 digits, as the mark
			strconv.AppendInt(f[i:i], now, 10)
		}
		return f
	}
}
