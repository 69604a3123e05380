package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
	"golang.org/x/time/rate"
)

// Limits bound what the API's listeners may take, so that no client (or
// flood of would-be clients) can use the descriptors the LAN zone, the
// trust store and capture need. Zero fields take the defaults noted.
type Limits struct {
	// MaxConns is the most connections one listener holds open at once;
	// past it new connections are closed at once (default 128).
	MaxConns int
	// PerSource is the most connections from one address (default 16),
	// and SourceRate/SourceBurst its new connections per second (default
	// 5, burst 20). The Unix socket has no source address and only MaxConns.
	PerSource   int
	SourceRate  float64
	SourceBurst int
	// HandshakeTimeout bounds a TLS handshake (default 10s); IdleTimeout
	// closes a kept-alive connection with no request (default 60s).
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	// Record receives auth_failed events for refused admin peers and
	// descriptors_exhausted events, rate-limited. Nil drops them.
	Record func(schema.Event)
}

func (l *Limits) defaults() {
	if l.MaxConns <= 0 {
		l.MaxConns = 128
	}
	if l.PerSource <= 0 {
		l.PerSource = 16
	}
	if l.SourceRate <= 0 {
		l.SourceRate = 5
	}
	if l.SourceBurst <= 0 {
		l.SourceBurst = 20
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = time.Minute
	}
}

// guard is a listener that applies Limits and, for TLS, completes the
// handshake before handing a connection to the HTTP server, so every
// refused peer is named in an auth_failed event.
type guard struct {
	ln     net.Listener
	tls    *tls.Config // nil for the Unix socket
	lim    Limits
	log    *slog.Logger
	name   string // "admin API" or "local API"
	out    chan net.Conn
	errc   chan error
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	open     int
	bySrc    map[netip.Addr]int
	rates    map[netip.Addr]*rate.Limiter
	lastEv   map[string]time.Time // event key -> last sent
	second   time.Time
	inSecond int
	pruned   time.Time
}

func newGuard(ln net.Listener, cfg *tls.Config, lim Limits, log *slog.Logger, name string) *guard {
	lim.defaults()
	g := &guard{ln: ln, tls: cfg, lim: lim, log: log, name: name,
		out: make(chan net.Conn), errc: make(chan error, 1), closed: make(chan struct{}),
		bySrc: map[netip.Addr]int{}, rates: map[netip.Addr]*rate.Limiter{}, lastEv: map[string]time.Time{}}
	go g.acceptLoop()
	return g
}

func (g *guard) Accept() (net.Conn, error) {
	select {
	case c := <-g.out:
		return c, nil
	case err := <-g.errc:
		return nil, err
	case <-g.closed:
		return nil, net.ErrClosed
	}
}

func (g *guard) Close() error {
	err := net.ErrClosed
	g.once.Do(func() { close(g.closed); err = g.ln.Close() })
	return err
}

func (g *guard) Addr() net.Addr { return g.ln.Addr() }

func (g *guard) acceptLoop() {
	var delay time.Duration
	for {
		nc, err := g.ln.Accept()
		if err != nil {
			select {
			case <-g.closed:
				return
			default:
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				g.event("fd", schema.Event{Type: schema.EventDescriptorsLow, Severity: schema.SeverityCritical,
					Reason:  fmt.Sprintf("%s cannot accept: out of file descriptors (%v); raise LimitNOFILE or find what holds them", g.name, err),
					Details: &schema.DescriptorsExhaustedDetails{Listener: g.name, Addr: g.ln.Addr().String()}})
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			select {
			case g.errc <- err:
			case <-g.closed:
			}
			return
		}
		delay = 0
		src := netip.Addr{}
		if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
			src = ta.AddrPort().Addr().Unmap()
		}
		if why, capped := g.admit(src); why != "" {
			nc.Close()
			g.refused(src, nc.RemoteAddr(), why)
			if capped {
				g.event("cap", schema.Event{Type: schema.EventDescriptorsLow, Severity: schema.SeverityCritical,
					Reason:  fmt.Sprintf("%s at its connection cap (%d): new connections are closed so the descriptors the LAN zone, trust store and capture need stay free", g.name, g.lim.MaxConns),
					Details: &schema.DescriptorsExhaustedDetails{Listener: g.name, Addr: g.ln.Addr().String(), MaxConns: g.lim.MaxConns}})
			}
			continue
		}
		go g.prepare(nc, src)
	}
}

// admit counts a new connection against the limits or says why not, and
// whether the listener's cap is what refused it.
func (g *guard) admit(src netip.Addr) (string, bool) {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.pruned) > time.Minute {
		for a, l := range g.rates {
			if g.bySrc[a] == 0 && l.TokensAt(now) >= float64(g.lim.SourceBurst) {
				delete(g.rates, a)
			}
		}
		for k, t := range g.lastEv {
			if now.Sub(t) > time.Minute {
				delete(g.lastEv, k)
			}
		}
		g.pruned = now
	}
	if g.open >= g.lim.MaxConns {
		return fmt.Sprintf("%s connection cap (%d) reached", g.name, g.lim.MaxConns), true
	}
	if src.IsValid() {
		if g.bySrc[src] >= g.lim.PerSource {
			return fmt.Sprintf("more than %d connections from this address", g.lim.PerSource), false
		}
		rl := g.rates[src]
		if rl == nil {
			if len(g.rates) >= 1<<16 {
				return "too many sources at once", false
			}
			rl = rate.NewLimiter(rate.Limit(g.lim.SourceRate), g.lim.SourceBurst)
			g.rates[src] = rl
		}
		if !rl.AllowN(now, 1) {
			return "too many connections from this address", false
		}
		g.bySrc[src]++
	}
	g.open++
	return "", false
}

func (g *guard) release(src netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open--
	if src.IsValid() {
		if g.bySrc[src]--; g.bySrc[src] <= 0 {
			delete(g.bySrc, src)
		}
	}
}

// prepare completes the TLS handshake (if any) and hands the connection to
// the HTTP server.
func (g *guard) prepare(nc net.Conn, src netip.Addr) {
	var c net.Conn = &guardedConn{Conn: nc, g: g, src: src}
	if g.tls != nil {
		tc := tls.Server(c, g.tls)
		ctx, cancel := context.WithTimeout(context.Background(), g.lim.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			tc.Close()
			g.refused(src, nc.RemoteAddr(), "TLS handshake failed: "+err.Error())
			return
		}
		c = tc
	}
	select {
	case g.out <- c:
	case <-g.closed:
		c.Close()
	}
}

func (g *guard) refused(src netip.Addr, remote net.Addr, why string) {
	key := "auth|" + src.String() + "|" + why
	if len(why) > 48 {
		key = "auth|" + src.String() + "|" + why[:48]
	}
	ev := schema.Event{Type: schema.EventAuthFailed, Severity: schema.SeverityWarning,
		Reason:  fmt.Sprintf("%s peer %s refused: %s", g.name, remote, why),
		Details: &schema.AuthFailedDetails{Peer: remote.String(), Reason: why, Listener: g.name}}
	if src.IsValid() {
		ev.IPs = []netip.Addr{src}
	}
	g.event(key, ev)
}

// event sends ev unless one with the same key went out in the last minute;
// at most ten a second for the whole listener.
func (g *guard) event(key string, ev schema.Event) {
	if g.lim.Record == nil {
		return
	}
	now := time.Now()
	g.mu.Lock()
	if t, ok := g.lastEv[key]; ok && now.Sub(t) < time.Minute {
		g.mu.Unlock()
		return
	}
	if now.Sub(g.second) >= time.Second {
		g.second, g.inSecond = now, 0
	}
	if g.inSecond >= 10 {
		g.mu.Unlock()
		return
	}
	g.inSecond++
	if len(g.lastEv) < 10000 {
		g.lastEv[key] = now
	}
	g.mu.Unlock()
	g.log.Warn(ev.Reason)
	g.lim.Record(ev)
}

// guardedConn gives its slot back when closed.
type guardedConn struct {
	net.Conn
	g    *guard
	src  netip.Addr
	once sync.Once
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.g.release(c.src) })
	return err
}
