// Package lanzone owns the sensor's LAN-zone listener: the mutual-TLS
// endpoint agents heartbeat to. It admits only certificates the trust store
// holds, feeds hellos, heartbeats and disconnects to the correlator, pushes
// the sensor's configuration and the at-risk list to agents, closes revoked
// endpoints' connections, and turns every refused peer into a rate-limited
// auth_failed event. Subpackages hold the enrollment authority (pki), the
// wire protocol (wire) and the [lanzone] configuration table (config).
package lanzone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Correlator is what the listener feeds; *sensor.Engine satisfies it.
type Correlator interface {
	Hello(schema.Hello) error
	Heartbeat(schema.Heartbeat) error
	Disconnect(schema.Disconnect)
	Remove(id string)
	Record(schema.Event)
	AtRisk() schema.AtRiskList
}

// Options configure a Listener. Zero fields take the defaults noted.
type Options struct {
	// Dir is the sensor directory (trust store, server certificate).
	Dir string
	// Config is the LAN-zone configuration as the daemon resolved it; nil
	// reads the [lanzone] table of Dir's configuration file once. Later
	// changes come through Apply: the listener does not watch the file.
	Config *config.LANZone
	// Listen lists host:port addresses to bind; default every LAN-zone
	// address of the configuration at its port.
	Listen []string
	// Correlator receives the endpoints' inputs. Required.
	Correlator Correlator
	// FailoverAddresses, when set, extends this sensor's LAN-zone addresses
	// with the other sensors' of its fleet in the config message agents
	// receive; a change is sent to connected agents within a second.
	FailoverAddresses func(own []string) []string
	// KnownSource, when set, reports whether a source address is one an
	// enrolled endpoint declared (the sensor's saved state, a fleet's
	// shared state): it is admitted as an address that completed a
	// handshake here, so agents failing over from another sensor, or back
	// after this one restarted, are not held to the limits on unknown
	// networks. It must not block.
	KnownSource func(netip.Addr) bool
	// Logger for operational messages (default slog.Default()).
	Logger *slog.Logger

	MaxConns         int           // connections, handshaking ones included (default 100000)
	MaxHandshakes    int           // concurrent TLS handshakes (default 128)
	HandshakeTimeout time.Duration // default 10s
	HelloTimeout     time.Duration // after the handshake (default 10s)
	HandshakeRate    float64       // handshakes per second per source address (default 2)
	HandshakeBurst   int           // default 20
	// PreHandshakeTimeout bounds the wait for a connection's first TLS
	// byte; until it arrives the connection holds no handshake slot
	// (default 3s).
	PreHandshakeTimeout time.Duration
	// HandshakesPerPrefix caps unfinished handshakes from one /24 or /64
	// whose addresses completed none recently (default 16).
	HandshakesPerPrefix int
	// ReservedHandshakesPct is the share of MaxHandshakes only addresses
	// that completed a handshake recently may take (default 25).
	ReservedHandshakesPct int
	PollInterval          time.Duration // trust store re-read (default 1s)
	// HelloEvery and HelloBurst are one endpoint's hello allowance: a
	// hello every HelloEvery on average, HelloBurst at once (defaults 5s,
	// 6). HelloBytesPerSec and HelloBytesBurst bound their size the same
	// way (defaults 8 KiB/s, 256 KiB). Past either the connection is
	// closed with limit_exceeded and a limit_exceeded event is raised.
	HelloEvery       time.Duration
	HelloBurst       int
	HelloBytesPerSec int
	HelloBytesBurst  int
	AuthEventWindow  time.Duration // one auth_failed per source and reason per window (default 1m)
	AuthEventsPerSec int           // auth_failed events per second in total (default 10)
	WriteTimeout     time.Duration // per message to an agent (default 5s)
	// DuplicateEventWindow: one duplicate_identity per endpoint and
	// refused address per window (default 10m).
	DuplicateEventWindow time.Duration
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 100000
	}
	if o.MaxHandshakes <= 0 {
		o.MaxHandshakes = 128
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 10 * time.Second
	}
	if o.HelloTimeout <= 0 {
		o.HelloTimeout = 10 * time.Second
	}
	if o.HandshakeRate <= 0 {
		o.HandshakeRate = 2
	}
	if o.HandshakeBurst <= 0 {
		o.HandshakeBurst = 20
	}
	if o.PreHandshakeTimeout <= 0 {
		o.PreHandshakeTimeout = 3 * time.Second
	}
	if o.HandshakesPerPrefix <= 0 {
		o.HandshakesPerPrefix = 16
	}
	if o.ReservedHandshakesPct <= 0 || o.ReservedHandshakesPct >= 100 {
		o.ReservedHandshakesPct = 25
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.HelloEvery <= 0 {
		o.HelloEvery = 5 * time.Second
	}
	if o.HelloBurst <= 0 {
		o.HelloBurst = 6
	}
	if o.HelloBytesPerSec <= 0 {
		o.HelloBytesPerSec = 8 << 10
	}
	if o.HelloBytesBurst < wire.MaxFrame {
		o.HelloBytesBurst = 256 << 10
	}
	if o.AuthEventWindow <= 0 {
		o.AuthEventWindow = time.Minute
	}
	if o.AuthEventsPerSec <= 0 {
		o.AuthEventsPerSec = 10
	}
	if o.DuplicateEventWindow <= 0 {
		o.DuplicateEventWindow = 10 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
}

// Listener is the LAN-zone server.
type Listener struct {
	opts  Options
	log   *slog.Logger
	corr  Correlator
	trust *pki.TrustStore
	cert  *pki.ServerCert
	tls   *tls.Config

	cfgMu    sync.Mutex
	lan      config.LANZone
	cfgFrame atomic.Pointer[[]byte]
	interval atomic.Int64 // nanoseconds
	// sentAddrs are the addresses of the current config message.
	sentAddrs string
	// idleFloor is, for a while after the interval shortened, the old
	// interval (nanoseconds): agents that have not heard the change yet
	// are not closed as idle by the new one. idleFloorUntil ends it (unix
	// nanoseconds).
	idleFloor      atomic.Int64
	idleFloorUntil atomic.Int64

	lnMu     sync.Mutex
	lns      []*boundLn
	serveCtx context.Context
	loops    sync.WaitGroup // accept, poll and push loops
	errc     chan error     // first fatal accept error

	nConns    atomic.Int64
	fdEventAt atomic.Int64 // unix nanoseconds of the last descriptors_exhausted
	admit     *admission
	authLimit *eventLimiter

	mu      sync.Mutex
	conns   map[string]*conn        // endpoint id -> its current connection
	budgets map[string]*helloBudget // endpoint id -> its hello allowance
	dupSeen map[string]time.Time    // endpoint id|refused address -> last duplicate_identity
	raw     map[net.Conn]struct{}   // every accepted connection, closed on shutdown

	riskMu    sync.Mutex // held while the list is rebuilt
	riskDirty atomic.Bool
	riskGen   uint64 // under riskMu
	risk      atomic.Pointer[riskList]
	pushc     chan struct{}

	stats     counters
	wg        sync.WaitGroup
	ticketsAt time.Time // last ticket key check (poll loop only)
}

// New loads the trust store, the server certificate and the configuration
// from opts.Dir. It does not bind: call Bind, or Serve.
func New(opts Options) (*Listener, error) {
	opts.defaults()
	if opts.Correlator == nil {
		return nil, errors.New("lanzone: no correlator")
	}
	a, err := pki.Open(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("lanzone: %w", err)
	}
	trust, err := pki.OpenTrustStore(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("lanzone: %w", err)
	}
	cert, err := pki.LoadServerCert(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("lanzone: %w", err)
	}
	l := &Listener{
		opts:      opts,
		log:       opts.Logger,
		corr:      opts.Correlator,
		trust:     trust,
		cert:      cert,
		admit:     newAdmission(&opts),
		authLimit: newEventLimiter(opts.AuthEventWindow, opts.AuthEventsPerSec),
		conns:     map[string]*conn{},
		budgets:   map[string]*helloBudget{},
		dupSeen:   map[string]time.Time{},
		raw:       map[net.Conn]struct{}{},
		pushc:     make(chan struct{}, 1),
	}
	l.tls = pki.ServerConfig(cert, pki.NewVerifier(a.CACertificate(), trust, false))
	if err := l.rotateTickets(); err != nil {
		return nil, fmt.Errorf("lanzone: %w", err)
	}
	z := opts.Config
	if z == nil {
		loaded, err := config.Load(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("lanzone: %w", err)
		}
		z = &loaded
	}
	if _, err := l.setConfig(*z); err != nil {
		return nil, fmt.Errorf("lanzone: %w", err)
	}
	return l, nil
}

// rotateTickets loads (and rotates when due) the persistent session-ticket
// keys, so agents resume their sessions across sensor restarts.
func (l *Listener) rotateTickets() error {
	keys, err := pki.SessionTicketKeys(l.opts.Dir, time.Now())
	if err != nil {
		return err
	}
	l.tls.SetSessionTicketKeys(keys)
	l.ticketsAt = time.Now()
	return nil
}

// setConfig makes z the configuration in force and reports whether
// anything agents see changed.
func (l *Listener) setConfig(z config.LANZone) (bool, error) {
	z = z.WithDefaults()
	if err := z.ValidateValues(); err != nil {
		return false, err
	}
	addrs := l.agentAddrs(z)
	f, err := wire.Marshal(wire.TypeConfig, wire.Config{HeartbeatIntervalMS: z.HeartbeatInterval.Milliseconds(), Addresses: addrs})
	if err != nil {
		return false, err
	}
	l.cfgMu.Lock()
	defer l.cfgMu.Unlock()
	old := l.lan
	changed := z.HeartbeatInterval != old.HeartbeatInterval || strings.Join(z.AddrPorts(), ",") != strings.Join(old.AddrPorts(), ",") ||
		strings.Join(addrs, ",") != l.sentAddrs
	l.sentAddrs = strings.Join(addrs, ",")
	if old.HeartbeatInterval > z.HeartbeatInterval {
		// Agents still at the old pace are not idle until they had three
		// old intervals to hear the new one.
		l.idleFloor.Store(int64(old.HeartbeatInterval))
		l.idleFloorUntil.Store(time.Now().Add(3 * old.HeartbeatInterval).UnixNano())
	}
	l.lan = z
	l.interval.Store(int64(z.HeartbeatInterval))
	l.cfgFrame.Store(&f)
	return changed, nil
}

// agentAddrs is the address list of the config message: this sensor's
// LAN-zone addresses, then (in a fleet) the other sensors'.
func (l *Listener) agentAddrs(z config.LANZone) []string {
	addrs := z.AddrPorts()
	if h := l.opts.FailoverAddresses; h != nil {
		addrs = h(addrs)
		if len(addrs) > wire.MaxAddresses {
			addrs = addrs[:wire.MaxAddresses]
		}
	}
	return addrs
}

// followFleet re-sends the config message when the fleet's sensors changed.
func (l *Listener) followFleet() {
	if l.opts.FailoverAddresses == nil {
		return
	}
	l.cfgMu.Lock()
	z, sent := l.lan, l.sentAddrs
	l.cfgMu.Unlock()
	if strings.Join(l.agentAddrs(z), ",") == sent {
		return
	}
	if changed, err := l.setConfig(z); err == nil && changed {
		l.log.Info("LAN zone: the fleet's sensors changed; telling connected agents")
		l.broadcast([][]byte{*l.cfgFrame.Load()})
	}
}

// Apply makes z the LAN-zone configuration in force: connected agents are
// told a new interval or address list at once, and the listener binds the
// new addresses unless Options.Listen fixes them.
func (l *Listener) Apply(z config.LANZone) error {
	changed, err := l.setConfig(z)
	if err != nil {
		return fmt.Errorf("lanzone: %w", err)
	}
	if changed {
		l.rebind()
		l.log.Info("LAN zone: configuration changed; telling connected agents",
			"heartbeat_interval", z.WithDefaults().HeartbeatInterval, "addresses", z.AddrPorts())
		l.broadcast([][]byte{*l.cfgFrame.Load()})
	}
	return nil
}

// idleLimit is how long a connection may stay silent before it is closed:
// three heartbeat intervals, the old longer one while a shorter interval
// is still reaching agents.
func (l *Listener) idleLimit() time.Duration {
	iv := time.Duration(l.interval.Load())
	if floor := time.Duration(l.idleFloor.Load()); floor > iv && time.Now().UnixNano() < l.idleFloorUntil.Load() {
		iv = floor
	}
	return 3 * iv
}

// boundLn is one listening socket.
type boundLn struct {
	spec    string // the address asked for
	ln      net.Listener
	retired atomic.Bool // closed on purpose (address removed from the config)
}

// listenAddrs returns the addresses to listen on: --listen, else every
// LAN-zone address of the configuration.
func (l *Listener) listenAddrs() []string {
	if len(l.opts.Listen) > 0 {
		return l.opts.Listen
	}
	l.cfgMu.Lock()
	defer l.cfgMu.Unlock()
	return l.lan.AddrPorts()
}

// Bind opens every listening socket. Serve calls it if needed.
func (l *Listener) Bind() error {
	l.lnMu.Lock()
	defer l.lnMu.Unlock()
	if l.lns != nil {
		return nil
	}
	addrs := l.listenAddrs()
	if len(addrs) == 0 {
		return errors.New("lanzone: no address to listen on: set lanzone.addresses or pass --listen")
	}
	var lns []*boundLn
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, x := range lns {
				x.ln.Close()
			}
			return fmt.Errorf("lanzone: listen on %s: %w (is it one of this machine's addresses, and is the port free?)", a, err)
		}
		lns = append(lns, &boundLn{spec: a, ln: ln})
	}
	l.lns = lns
	return nil
}

// Addrs returns the bound addresses.
func (l *Listener) Addrs() []net.Addr {
	l.lnMu.Lock()
	defer l.lnMu.Unlock()
	out := make([]net.Addr, len(l.lns))
	for i, b := range l.lns {
		out[i] = b.ln.Addr()
	}
	return out
}

// Serve accepts agents until ctx ends, then closes every connection and
// returns.
func (l *Listener) Serve(ctx context.Context) error {
	if err := l.Bind(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l.errc = make(chan error, 1)
	l.lnMu.Lock()
	l.serveCtx = ctx
	for _, b := range l.lns {
		l.startAccept(ctx, b)
	}
	l.lnMu.Unlock()
	l.loops.Add(2)
	go func() { defer l.loops.Done(); l.pollLoop(ctx) }()
	go func() { defer l.loops.Done(); l.pushLoop(ctx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-l.errc:
	}
	cancel()
	l.lnMu.Lock()
	for _, b := range l.lns {
		b.retired.Store(true)
		b.ln.Close()
	}
	l.lnMu.Unlock()
	forEach(l.snapshotConns(), func(c *conn) { c.closeWith(wire.CodeShutdown, "the sensor is stopping") })
	l.mu.Lock()
	for nc := range l.raw {
		nc.Close()
	}
	l.mu.Unlock()
	l.loops.Wait()
	l.wg.Wait()
	return err
}

// startAccept runs an accept loop for b. The caller holds lnMu.
func (l *Listener) startAccept(ctx context.Context, b *boundLn) {
	l.log.Info("LAN zone listening", "addr", b.ln.Addr().String())
	l.loops.Add(1)
	go func() {
		defer l.loops.Done()
		if err := l.acceptLoop(ctx, b); err != nil && !b.retired.Load() {
			select {
			case l.errc <- err:
			default:
			}
		}
	}()
}

// rebind follows a change of the LAN-zone addresses: it listens on new ones
// and stops listening on removed ones (connections already accepted stay).
func (l *Listener) rebind() {
	if len(l.opts.Listen) > 0 {
		return
	}
	want := l.listenAddrs()
	l.lnMu.Lock()
	defer l.lnMu.Unlock()
	if l.serveCtx == nil || l.serveCtx.Err() != nil {
		return
	}
	keep := l.lns[:0:0]
	have := map[string]bool{}
	for _, b := range l.lns {
		if slices.Contains(want, b.spec) {
			keep = append(keep, b)
			have[b.spec] = true
			continue
		}
		b.retired.Store(true)
		b.ln.Close()
		l.log.Info("LAN zone: stopped listening (address removed)", "addr", b.spec)
	}
	for _, a := range want {
		if have[a] {
			continue
		}
		ln, err := net.Listen("tcp", a)
		if err != nil {
			l.log.Error("LAN zone: cannot listen on a new LAN-zone address; agents will fail over to the others", "addr", a, "err", err)
			continue
		}
		b := &boundLn{spec: a, ln: ln}
		keep = append(keep, b)
		l.startAccept(l.serveCtx, b)
	}
	l.lns = keep
}

func (l *Listener) acceptLoop(ctx context.Context, b *boundLn) error {
	ln := b.ln
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || b.retired.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors or similar: back off instead of spinning.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay < time.Second {
					delay *= 2
				}
				l.log.Warn("LAN zone accept failed; retrying", "err", err, "delay", delay)
				if !(errors.As(err, &ne) && ne.Timeout()) {
					l.descriptorsExhausted(ln.Addr(), err)
				}
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("lanzone: accept on %s: %w", ln.Addr(), err)
		}
		delay = 0
		if l.nConns.Add(1) > int64(l.opts.MaxConns) {
			l.nConns.Add(-1)
			l.stats.refusedCap.Add(1)
			nc.Close()
			l.descriptorsExhausted(ln.Addr(), fmt.Errorf("connection cap (%d) reached", l.opts.MaxConns))
			continue
		}
		l.mu.Lock()
		l.raw[nc] = struct{}{}
		l.mu.Unlock()
		if ctx.Err() != nil { // Serve may have closed the others already
			nc.Close()
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer l.nConns.Add(-1)
			l.handle(ctx, nc)
			l.mu.Lock()
			delete(l.raw, nc)
			l.mu.Unlock()
		}()
	}
}

// prefixedConn gives back the bytes read before the TLS stack took over.
type prefixedConn struct {
	net.Conn
	pre []byte
}

func (p *prefixedConn) Read(b []byte) (int, error) {
	if len(p.pre) > 0 {
		n := copy(b, p.pre)
		p.pre = p.pre[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

func remoteAddr(nc net.Conn) netip.AddrPort {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// descriptorsExhausted raises descriptors_exhausted, at most once a minute.
func (l *Listener) descriptorsExhausted(addr net.Addr, err error) {
	now := time.Now()
	last := l.fdEventAt.Load()
	if now.UnixNano()-last < int64(time.Minute) || !l.fdEventAt.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	l.corr.Record(schema.Event{
		Type: schema.EventDescriptorsLow, Severity: schema.SeverityCritical,
		Reason:  fmt.Sprintf("LAN zone on %s cannot take more connections: %v; connected agents stay, new ones wait", addr, err),
		Details: &schema.DescriptorsExhaustedDetails{Listener: "lanzone", Addr: addr.String(), MaxConns: l.opts.MaxConns},
	})
}

// refuse records an auth_failed event (rate-limited) and closes nc.
func (l *Listener) refuse(nc net.Conn, remote netip.AddrPort, reason string, cert *pki.RefusedError) {
	nc.Close()
	l.stats.refused.Add(1)
	ok, heldKey, heldAll := l.authLimit.admit(remote.Addr(), reason, time.Now())
	if !ok {
		return
	}
	details := &schema.AuthFailedDetails{Peer: remote.String(), Reason: reason, SuppressedSamePeer: heldKey, SuppressedTotal: heldAll}
	msg := fmt.Sprintf("LAN-zone peer %s refused: %s", remote, reason)
	ev := schema.Event{Type: schema.EventAuthFailed, Severity: schema.SeverityWarning, IPs: []netip.Addr{remote.Addr()}}
	if cert != nil && cert.ID != "" {
		details.CertificateID, details.CertificateName = cert.ID, cert.Name
		msg += fmt.Sprintf(" (certificate %s, %s)", cert.ID, cert.Name)
	}
	if heldKey > 0 {
		msg += fmt.Sprintf("; %d more from this peer for the same reason not reported", heldKey)
	}
	ev.Reason = msg
	ev.Details = details
	l.corr.Record(ev)
}

// classify turns a handshake error into a refusal reason.
func classify(err error) (string, *pki.RefusedError) {
	var re *pki.RefusedError
	if errors.As(err, &re) {
		return re.Reason, re
	}
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded):
		return "TLS handshake not completed in time (slow or silent peer)", nil
	case strings.Contains(msg, "unsupported versions") || strings.Contains(msg, "protocol version not supported"):
		return "TLS version older than 1.3", nil
	case strings.Contains(msg, "does not look like a TLS handshake") || strings.Contains(msg, "oversized record") || strings.Contains(msg, "unexpected message"):
		return "not a TLS client (plaintext or garbage)", nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "connection reset"):
		return "closed the connection during the TLS handshake", nil
	case strings.Contains(msg, "remote error"):
		return "peer aborted the TLS handshake: " + strings.TrimPrefix(msg, "remote error: "), nil
	}
	return "TLS handshake failed: " + msg, nil
}

func (l *Listener) handle(ctx context.Context, nc net.Conn) {
	remote := remoteAddr(nc)
	start := time.Now()
	t, why := l.admit.enter(remote.Addr(), start)
	if t == nil {
		l.refuse(nc, remote, why, nil)
		return
	}
	defer t.release()
	// No slot until the peer speaks: a silent connection costs a
	// descriptor for PreHandshakeTimeout and nothing else.
	_ = nc.SetReadDeadline(start.Add(l.opts.PreHandshakeTimeout))
	var first [1]byte
	if _, err := io.ReadFull(nc, first[:]); err != nil {
		reason := "closed the connection before a TLS ClientHello"
		if isTimeout(err) {
			reason = fmt.Sprintf("no TLS ClientHello within %s (silent peer)", l.opts.PreHandshakeTimeout)
		}
		l.refuse(nc, remote, reason, nil)
		return
	}
	deadline := time.Now().Add(l.opts.HandshakeTimeout)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if !t.slotWait(hctx) {
		if ctx.Err() != nil {
			nc.Close()
			return
		}
		l.refuse(nc, remote, "TLS handshake not completed in time (sensor busy)", nil)
		return
	}
	raw := &eofConn{Conn: &prefixedConn{Conn: nc, pre: first[:]}}
	tc := tls.Server(raw, l.tls)
	_ = nc.SetDeadline(deadline)
	// The handshake runs on a goroutine of its own: its deep stack is freed
	// when it ends instead of staying with the connection's long-lived
	// goroutine (16 KiB per endpoint otherwise).
	herr := make(chan error, 1)
	go func() { herr <- tc.HandshakeContext(hctx) }()
	err := <-herr
	cancel()
	t.release()
	if err != nil {
		reason, re := classify(err)
		l.refuse(nc, remote, reason, re)
		return
	}
	l.admit.completed(remote.Addr(), time.Now())
	l.stats.handshakes.Add(1)
	cs := tc.ConnectionState()
	if cs.DidResume {
		l.stats.resumed.Add(1)
	}
	leaf := cs.PeerCertificates[0]
	c := &conn{l: l, nc: tc, raw: raw, remote: remote, id: leaf.Subject.CommonName}
	if len(leaf.DNSNames) > 0 {
		c.name = leaf.DNSNames[0]
	}
	if len(leaf.Subject.Organization) > 0 {
		c.org = leaf.Subject.Organization[0]
	}
	c.fp = pki.FingerprintOf(leaf.Raw)
	_ = nc.SetDeadline(time.Time{})
	c.serve(ctx)
}

// Notify is the daemon's event hook: it never blocks. When an endpoint
// turns red or missing (or leaves those states, or is removed), the at-risk
// list is pushed to every agent at once.
func (l *Listener) Notify(evs []schema.Event) {
	for i := range evs {
		ev := &evs[i]
		if ev.EndpointID == "" {
			continue
		}
		if ev.Transition || ev.Type == schema.EventEndpointHello {
			// A status changed or an endpoint declared new addresses: the
			// cached list is stale and the next periodic push rebuilds it.
			l.riskDirty.Store(true)
		}
		if risky(ev.Status) || risky(ev.PreviousStatus) || ev.Type == schema.EventEndpointRemoved {
			select {
			case l.pushc <- struct{}{}:
			default:
			}
			return
		}
	}
}

func risky(s schema.Status) bool { return s == schema.StatusRed || s == schema.StatusMissing }

// riskList is the encoded at-risk list and when it was built.
type riskList struct {
	frames [][]byte
	at     time.Time
}

func (r *riskList) fresh(l *Listener, maxAge time.Duration) bool {
	return r != nil && time.Since(r.at) < maxAge && !l.riskDirty.Load()
}

// atRiskFrames returns the encoded at-risk list, rebuilt if older than
// maxAge. Every other heartbeat reads it: the current list is read
// without a lock, and while one caller rebuilds it, a heartbeat's reply
// (maxAge > 0) takes the list being replaced rather than wait.
func (l *Listener) atRiskFrames(maxAge time.Duration) [][]byte {
	cur := l.risk.Load()
	if cur.fresh(l, maxAge) {
		return cur.frames
	}
	if maxAge > 0 && cur != nil {
		if !l.riskMu.TryLock() {
			return cur.frames
		}
	} else {
		l.riskMu.Lock()
	}
	defer l.riskMu.Unlock()
	if cur = l.risk.Load(); cur.fresh(l, maxAge) {
		return cur.frames
	}
	l.riskDirty.Store(false)
	list := l.corr.AtRisk()
	l.riskGen++
	frames, err := wire.EncodeAtRisk(list, l.riskGen)
	if err != nil {
		l.log.Error("encode at-risk list", "err", err)
		if cur != nil {
			return cur.frames
		}
		return nil
	}
	l.risk.Store(&riskList{frames: frames, at: time.Now()})
	return frames
}

func (l *Listener) snapshotConns() []*conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*conn, 0, len(l.conns))
	for _, c := range l.conns {
		out = append(out, c)
	}
	return out
}

// broadcast writes frames to every connected agent with a few workers.
func (l *Listener) broadcast(frames [][]byte) {
	forEach(l.snapshotConns(), func(c *conn) {
		if err := c.write(frames...); err != nil {
			c.setCause(c.causeOf(err))
			c.nc.Close()
		}
	})
}

// forEach runs do for every connection with a few workers: one slow
// agent's write does not hold up the others.
func forEach(conns []*conn, do func(*conn)) {
	work := make(chan *conn)
	var wg sync.WaitGroup
	for range min(32, len(conns)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				do(c)
			}
		}()
	}
	for _, c := range conns {
		work <- c
	}
	close(work)
	wg.Wait()
}

func (l *Listener) pushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.pushc:
		}
		// Coalesce a burst of transitions into one push.
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		l.stats.pushes.Add(1)
		l.broadcast(l.atRiskFrames(0))
	}
}

// pollLoop applies revocations and certificate changes made by other
// processes (tapbeat revoke, tapbeat enroll). Configuration changes come
// from the daemon through Apply.
func (l *Listener) pollLoop(ctx context.Context) {
	t := time.NewTicker(l.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.poll()
	}
}

func (l *Listener) poll() {
	l.followFleet()
	revoked, err := l.trust.Refresh()
	if err != nil {
		l.log.Error("LAN zone: reading the trust store failed; enrolled endpoints stay as they were", "err", err)
	}
	for _, e := range revoked {
		l.mu.Lock()
		c := l.conns[e.ID]
		if c != nil && c.fp == e.Fingerprint {
			delete(l.conns, e.ID)
		} else {
			c = nil
		}
		l.mu.Unlock()
		if c != nil {
			c.closeWith(wire.CodeRevoked, "this endpoint's certificate was revoked")
		}
		l.corr.Remove(e.ID)
		l.log.Info("LAN zone: endpoint revoked", "id", e.ID, "name", e.Name, "connected", c != nil)
	}
	if time.Since(l.ticketsAt) > time.Hour {
		if err := l.rotateTickets(); err != nil {
			l.log.Error("LAN zone: session ticket key rotation failed; keeping the current keys", "err", err)
		}
	}
	if err := l.cert.Reload(); err != nil {
		l.log.Error("LAN zone: server certificate reload failed; keeping the current one", "err", err)
	}
}

// register makes c its endpoint's current connection. A connection from
// the address of the current one replaces it (the agent restarted, or its
// old connection is half-open). From another address, while the current
// connection is alive (a frame within the last interval and a half), it is
// a second machine using the same certificate: c is refused and
// duplicate_identity raised, so the first keeps its place until it goes
// away instead of the two knocking each other off. The same agent process
// (the instance its hello names) moving to another address, such as a
// laptop going from cable to Wi-Fi, replaces its old connection.
func (l *Listener) register(c *conn) bool {
	now := time.Now()
	l.mu.Lock()
	old := l.conns[c.id]
	sameAgent := c.instance != "" && old != nil && old.instance == c.instance
	if old != nil && !sameAgent && old.remote.Addr() != c.remote.Addr() &&
		now.Sub(time.Unix(0, old.lastFrame.Load())) < 3*time.Duration(l.interval.Load())/2 && !old.closed.Load() {
		key := c.id + "|" + c.remote.Addr().String()
		report := now.Sub(l.dupSeen[key]) >= l.opts.DuplicateEventWindow
		if report {
			if len(l.dupSeen) >= 10000 {
				clear(l.dupSeen)
			}
			l.dupSeen[key] = now
		}
		l.stats.duplicates.Add(1)
		l.mu.Unlock()
		msg := fmt.Sprintf("endpoint certificate %s (%s) is in use from %s; this connection from %s is refused until that one ends (one certificate per machine: enroll this one under its own name)",
			c.id, c.name, old.remote.Addr(), c.remote.Addr())
		c.closeWith(wire.CodeDuplicate, msg)
		if report {
			l.corr.Record(schema.Event{
				Type: schema.EventDuplicateIdentity, Severity: schema.SeverityError,
				EndpointID: c.id, EndpointName: c.name, Org: c.org,
				IPs:     []netip.Addr{old.remote.Addr(), c.remote.Addr()},
				Reason:  msg,
				Details: &schema.DuplicateIdentityDetails{ConnectedFrom: old.remote, RefusedFrom: c.remote},
			})
		}
		l.log.Warn("LAN zone: endpoint certificate used from two places", "id", c.id, "connected", old.remote, "refused", c.remote)
		return false
	}
	c.lastFrame.Store(now.UnixNano())
	l.conns[c.id] = c
	l.mu.Unlock()
	if old != nil {
		old.closeWith(wire.CodeReplaced, "a newer connection of this endpoint took over")
	}
	return true
}

// unregister removes c if it is still its endpoint's connection and reports
// whether it was.
func (l *Listener) unregister(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[c.id] == c {
		delete(l.conns, c.id)
		return true
	}
	return false
}

// Connected returns how many endpoints are connected.
func (l *Listener) Connected() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
