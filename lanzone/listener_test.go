package lanzone

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// recorder is a real sensor.Engine that also keeps the events it published
// and when each heartbeat reached it.
type recorder struct {
	*sensor.Engine
	mu     sync.Mutex
	events []schema.Event
	beats  map[string][]time.Time
	notify func([]schema.Event)
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{beats: map[string][]time.Time{}}
	c, err := sensor.NewCorrelator(sensor.Config{HeartbeatInterval: time.Second}, sensor.WallClock{})
	if err != nil {
		t.Fatal(err)
	}
	r.Engine = sensor.NewEngine(c, func(evs []schema.Event) {
		r.mu.Lock()
		r.events = append(r.events, evs...)
		n := r.notify
		r.mu.Unlock()
		if n != nil {
			n(evs)
		}
	})
	return r
}

func (r *recorder) Heartbeat(hb schema.Heartbeat) error {
	r.mu.Lock()
	r.beats[hb.EndpointID] = append(r.beats[hb.EndpointID], time.Now())
	r.mu.Unlock()
	return r.Engine.Heartbeat(hb)
}

func (r *recorder) authFailed() []schema.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []schema.Event
	for _, e := range r.events {
		if e.Type == schema.EventAuthFailed {
			out = append(out, e)
		}
	}
	return out
}

// waitAuthFailed waits for an auth_failed event whose reason contains want.
func (r *recorder) waitAuthFailed(t *testing.T, want string) schema.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, e := range r.authFailed() {
			if strings.Contains(e.Reason, want) {
				if e.Severity != schema.SeverityWarning {
					t.Errorf("auth_failed severity %v", e.Severity)
				}
				return e
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	var got []string
	for _, e := range r.authFailed() {
		got = append(got, e.Reason)
	}
	t.Fatalf("no auth_failed event containing %q; got %q", want, got)
	return schema.Event{}
}

type fixture struct {
	dir  string
	auth *pki.Authority
	rec  *recorder
	l    *Listener
	addr string
}

func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	dir := t.TempDir()
	a, err := pki.Init(dir, "Example Org", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Save(dir, config.LANZone{Addresses: []string{"127.0.0.1"}, Port: 8347, HeartbeatInterval: time.Second}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t)
	opts := Options{
		Dir: dir, Listen: []string{"127.0.0.1:0"}, Correlator: rec,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		PollInterval: 200 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	l, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	rec.notify = l.Notify
	if err := l.Bind(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &fixture{dir: dir, auth: a, rec: rec, l: l, addr: l.Addrs()[0].String()}
}

func (f *fixture) enroll(t *testing.T, name string) *pki.Bundle {
	t.Helper()
	b, err := f.auth.Enroll(name, pki.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.l.trust.Refresh(); err != nil {
		t.Fatal(err)
	}
	return b
}

// client is a bare protocol client for tests.
type client struct {
	t   *testing.T
	c   *tls.Conn
	cfg *tls.Config
	mu  sync.Mutex
}

func dialFrom(t *testing.T, addr, src string, cfg *tls.Config) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	return tls.DialWithDialer(d, "tcp", addr, cfg)
}

func (f *fixture) connect(t *testing.T, b *pki.Bundle, src string, health schema.Health) *client {
	t.Helper()
	return f.connectAs(t, b, src, health, "")
}

// connectAs is connect for an agent process that names its instance.
func (f *fixture) connectAs(t *testing.T, b *pki.Bundle, src string, health schema.Health, instance string) *client {
	t.Helper()
	cfg, err := pki.ClientConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dialFrom(t, f.addr, src, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, cfg: cfg}
	cl.send(wire.TypeHello, wire.Hello{Health: health, Interfaces: []wire.Interface{{Name: "eth0", MAC: schema.MACFromUint64(0x020000000000 + uint64(len(b.Name))*1000 + uint64(b.Name[len(b.Name)-1])), IPs: []netip.Addr{netip.MustParseAddr("10.9.0.1")}}}, Users: []string{"alice"}, Instance: instance})
	return cl
}

func (c *client) send(t wire.Type, v any) {
	c.t.Helper()
	f, err := wire.Marshal(t, v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write(f); err != nil {
		c.t.Fatalf("send %s: %v", t, err)
	}
}

// next reads frames until one of type want arrives.
func (c *client) next(want wire.Type, within time.Duration) (wire.Frame, error) {
	c.c.SetReadDeadline(time.Now().Add(within))
	for {
		f, err := wire.ReadFrame(c.c)
		if err != nil {
			return f, err
		}
		if f.Type == want {
			return f, nil
		}
	}
}

func (c *client) atRisk(within time.Duration) ([]wire.AtRiskEndpoint, error) {
	var asm wire.AtRiskAssembler
	for {
		f, err := c.next(wire.TypeAtRisk, within)
		if err != nil {
			return nil, err
		}
		p, err := wire.DecodeAtRisk(f.Payload)
		if err != nil {
			return nil, err
		}
		if eps, ok := asm.Add(p); ok {
			return eps, nil
		}
	}
}

func TestHelloHeartbeatConfigAndAtRisk(t *testing.T) {
	f := newFixture(t, nil)
	b := f.enroll(t, "ws-1.example")
	c := f.connect(t, b, "", schema.HealthGreen)
	fr, err := c.next(wire.TypeConfig, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := wire.DecodeConfig(fr.Payload)
	if err != nil || cfg.Interval() != time.Second || cfg.Addresses[0] != "127.0.0.1:8347" {
		t.Fatalf("config %+v %v", cfg, err)
	}
	if eps, err := c.atRisk(5 * time.Second); err != nil || len(eps) != 0 {
		t.Fatalf("initial at-risk %v %v", eps, err)
	}
	st := f.rec.Endpoints()
	if len(st) != 1 || st[0].ID != b.ID || st[0].Name != "ws-1.example" || st[0].Org != "Example Org" || !st[0].Connected || st[0].Users[0] != "alice" {
		t.Fatalf("endpoint state %+v", st)
	}
	// Every second heartbeat brings the at-risk list.
	c.send(wire.TypeHeartbeat, wire.Heartbeat{Health: schema.HealthYellow, Seq: 1, SentAt: time.Now().UnixNano()})
	c.send(wire.TypeHeartbeat, wire.Heartbeat{Health: schema.HealthYellow, Seq: 2, SentAt: time.Now().UnixNano()})
	eps, err := c.atRisk(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// No capture here: the list names what the endpoint holds uncontested.
	if len(eps) != 1 || eps[0].EndpointID != b.ID || eps[0].Status != schema.StatusYellow || eps[0].IPs[0] != netip.MustParseAddr("10.9.0.1") {
		t.Fatalf("at-risk after yellow: %+v", eps)
	}
	if s := f.l.Stats(); s.Heartbeats != 2 || s.LatencyN != 2 || s.Connected != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Disconnect reaches the correlator.
	c.c.Close()
	waitFor(t, "disconnect", func() bool { return !f.rec.Endpoints()[0].Connected })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAtRiskPushedWhenEndpointTurnsRed(t *testing.T) {
	f := newFixture(t, nil)
	a := f.connect(t, f.enroll(t, "a"), "", schema.HealthGreen)
	if _, err := a.atRisk(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	bb := f.enroll(t, "b")
	b := f.connect(t, bb, "", schema.HealthGreen)
	if _, err := b.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	b.send(wire.TypeHeartbeat, wire.Heartbeat{Health: schema.HealthRed, Reasons: []string{"malware found"}})
	// a sends nothing: the list must come by push.
	eps, err := a.atRisk(2 * time.Second)
	if err != nil {
		t.Fatalf("no push: %v", err)
	}
	if len(eps) != 1 || eps[0].EndpointID != bb.ID || eps[0].Status != schema.StatusRed {
		t.Fatalf("pushed %+v", eps)
	}
	t.Logf("push %v after the red heartbeat", time.Since(start))
}

func TestRevokeMidSession(t *testing.T) {
	f := newFixture(t, nil)
	b := f.enroll(t, "doomed")
	c := f.connect(t, b, "", schema.HealthGreen)
	if _, err := c.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := f.auth.Revoke("doomed", false); err != nil {
		t.Fatal(err)
	}
	fr, err := c.next(wire.TypeError, 5*time.Second)
	if err != nil {
		t.Fatalf("no error message before close: %v", err)
	}
	e, _ := wire.DecodeError(fr.Payload)
	if e.Code != wire.CodeRevoked {
		t.Fatalf("error %+v", e)
	}
	if _, err := c.next(wire.TypeConfig, 5*time.Second); err == nil {
		t.Fatal("connection still open")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v", d)
	}
	waitFor(t, "removal", func() bool { return len(f.rec.Endpoints()) == 0 })
	// Reconnecting, with the session ticket of the revoked session, is refused.
	c2, err := dialFrom(t, f.addr, "127.0.0.9", c.cfg)
	if err == nil {
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = wire.ReadFrame(c2)
		c2.Close()
	}
	if err == nil {
		t.Fatal("revoked endpoint reconnected")
	}
	ev := f.rec.waitAuthFailed(t, pki.ReasonRevoked)
	if d, ok := ev.Details.(*schema.AuthFailedDetails); !ok || d.CertificateID != b.ID {
		t.Fatalf("auth_failed details %v", ev.Details)
	}
}

func TestSessionResumesAcrossRestart(t *testing.T) {
	f := newFixture(t, nil)
	b := f.enroll(t, "resumer")
	cfg, err := pki.ClientConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	// A second listener on the same directory stands for the restarted
	// sensor: it loads the same ticket keys.
	l2, err := New(Options{Dir: f.dir, Listen: []string{"127.0.0.1:0"}, Correlator: newRecorder(t), Logger: f.l.log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	l2.Bind()
	go func() { done <- l2.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	for i, addr := range []string{f.addr, l2.Addrs()[0].String()} {
		c, err := dialFrom(t, addr, "", cfg)
		if err != nil {
			t.Fatal(err)
		}
		hello, _ := wire.Marshal(wire.TypeHello, wire.Hello{Health: schema.HealthGreen})
		c.Write(hello)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := wire.ReadFrame(c); err != nil { // config; the ticket came before it
			t.Fatal(err)
		}
		if resumed := c.ConnectionState().DidResume; resumed != (i == 1) {
			t.Fatalf("connection %d resumed=%v", i, resumed)
		}
		c.Close()
	}
}

func TestListensOnChangedAddresses(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	f := newFixture(t, func(o *Options) {
		o.Listen = nil
		if err := config.Save(o.Dir, config.LANZone{Addresses: []string{"127.0.0.1"}, Port: port, HeartbeatInterval: time.Second}); err != nil {
			t.Fatal(err)
		}
	})
	b := f.enroll(t, "mover")
	cfg, _ := pki.ClientConfig(b)
	reach := func(ip string) bool {
		c, err := dialFrom(t, fmt.Sprintf("%s:%d", ip, port), "", cfg)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	if !reach("127.0.0.1") || reach("127.0.0.6") {
		t.Fatal("initial addresses wrong")
	}
	if err := f.l.Apply(config.LANZone{Addresses: []string{"127.0.0.6"}, Port: port, HeartbeatInterval: time.Second}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "listening on the new address", func() bool { return reach("127.0.0.6") })
	waitFor(t, "the old address closed", func() bool { return !reach("127.0.0.1") })
}
