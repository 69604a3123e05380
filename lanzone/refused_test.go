package lanzone

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// strayBundle returns a certificate the sensor's CA signed that is not in
// the sensor's trust store: issued from a copy of the authority.
func (f *fixture) strayBundle(t *testing.T, name string) *pki.Bundle {
	t.Helper()
	dir := t.TempDir()
	for _, n := range []string{pki.CAKeyFile, pki.CACertFile, pki.ServerKeyFile, pki.ServerCertFile, config.FileName} {
		b, err := os.ReadFile(filepath.Join(f.dir, n))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, n), b, 0o600)
	}
	os.WriteFile(filepath.Join(dir, pki.TrustFile), nil, 0o600)
	a, err := pki.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.Enroll(name, pki.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// heartbeater keeps an enrolled endpoint heartbeating every interval until
// the test ends.
func (f *fixture) heartbeater(t *testing.T, name, src string) (*pki.Bundle, func() error) {
	b := f.enroll(t, name)
	c := f.connect(t, b, src, schema.HealthGreen)
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		// Drain what the sensor sends.
		io.Copy(io.Discard, c.c)
	}()
	go func() {
		tk := time.NewTicker(time.Second)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				errc <- nil
				return
			case <-tk.C:
			}
			fr, _ := wire.Marshal(wire.TypeHeartbeat, wire.Heartbeat{Health: schema.HealthGreen, SentAt: time.Now().UnixNano()})
			c.mu.Lock()
			c.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, err := c.c.Write(fr)
			c.mu.Unlock()
			if err != nil {
				errc <- fmt.Errorf("%s heartbeat: %w", name, err)
				return
			}
		}
	}()
	var once sync.Once
	var err error
	return b, func() error {
		once.Do(func() { close(stop); err = <-errc })
		return err
	}
}

// maxGap returns the longest time between consecutive heartbeats the
// correlator received from id, and how many it received.
func (r *recorder) maxGap(id string) (time.Duration, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var gap time.Duration
	ts := r.beats[id]
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i].Sub(ts[i-1]))
	}
	return gap, len(ts)
}

func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if err != nil && !isTimeout(err) {
		return
	}
	if isTimeout(err) {
		t.Fatal("connection not closed by the sensor")
	}
}

func TestRefusedPeers(t *testing.T) {
	f := newFixture(t, func(o *Options) {
		o.HandshakeTimeout = time.Second
		o.HelloTimeout = 700 * time.Millisecond
	})
	steady, stop := f.heartbeater(t, "steady", "127.0.0.2")
	start := time.Now()

	good := f.enroll(t, "good")
	tlsCfg := func(b *pki.Bundle) *tls.Config {
		c, err := pki.ClientConfig(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tlsPeer := func(src string, cfg *tls.Config) {
		c, err := dialFrom(t, f.addr, src, cfg)
		if err != nil {
			return // refused during the handshake
		}
		defer c.Close()
		expectClosed(t, c)
	}
	rawPeer := func(src string, data []byte, pause time.Duration) {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, b := range data {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(pause)
		}
		expectClosed(t, c)
	}

	t.Run("no certificate", func(t *testing.T) {
		cfg := tlsCfg(good)
		cfg.Certificates = nil
		tlsPeer("127.0.0.10", cfg)
		f.rec.waitAuthFailed(t, pki.ReasonNoCertificate)
	})
	t.Run("CA-signed but not enrolled", func(t *testing.T) {
		tlsPeer("127.0.0.11", tlsCfg(f.strayBundle(t, "stray")))
		ev := f.rec.waitAuthFailed(t, pki.ReasonNotEnrolled)
		if d, ok := ev.Details.(*schema.AuthFailedDetails); !ok || !strings.HasPrefix(d.Peer, "127.0.0.11:") || ev.IPs[0] != netip.MustParseAddr("127.0.0.11") {
			t.Fatalf("event does not name the peer: %+v", ev)
		}
	})
	t.Run("expired", func(t *testing.T) {
		b, err := f.auth.Enroll("old", pki.EnrollOptions{NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		f.l.trust.Refresh()
		tlsPeer("127.0.0.12", tlsCfg(b))
		f.rec.waitAuthFailed(t, pki.ReasonExpired)
	})
	t.Run("other organisation", func(t *testing.T) {
		other := newFixture(t, nil)
		b := other.enroll(t, "intruder")
		b.Pin = good.Pin
		tlsPeer("127.0.0.13", tlsCfg(b))
		f.rec.waitAuthFailed(t, pki.ReasonUnknownCA)
	})
	t.Run("administrator certificate", func(t *testing.T) {
		b, err := f.auth.Enroll("root-admin", pki.EnrollOptions{Admin: true})
		if err != nil {
			t.Fatal(err)
		}
		f.l.trust.Refresh()
		tlsPeer("127.0.0.14", tlsCfg(b))
		f.rec.waitAuthFailed(t, pki.ReasonAdminOnLAN)
	})
	t.Run("TLS 1.2", func(t *testing.T) {
		cfg := tlsCfg(good)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		tlsPeer("127.0.0.15", cfg)
		f.rec.waitAuthFailed(t, "TLS version older than 1.3")
	})
	t.Run("plaintext", func(t *testing.T) {
		rawPeer("127.0.0.16", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0)
		f.rec.waitAuthFailed(t, "not a TLS client")
	})
	t.Run("garbage", func(t *testing.T) {
		rawPeer("127.0.0.17", []byte{0x16, 0x03, 0x01, 0xff, 0xff, 0, 1, 2, 3}, 0)
		f.rec.waitAuthFailed(t, "127.0.0.17")
	})
	t.Run("slowloris", func(t *testing.T) {
		start := time.Now()
		rawPeer("127.0.0.18", []byte{0x16, 0x03, 0x01, 0x00, 0x80, 1, 2, 3, 4, 5, 6, 7, 8}, 300*time.Millisecond)
		f.rec.waitAuthFailed(t, "not completed in time")
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("slow peer held on for %v", d)
		}
	})
	t.Run("unknown protocol version", func(t *testing.T) {
		b := f.enroll(t, "future")
		c, err := dialFrom(t, f.addr, "127.0.0.19", tlsCfg(b))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		frame := binary.BigEndian.AppendUint32(nil, 5)
		frame = append(frame, 2, 0, byte(wire.TypeHello), '{', '}')
		c.Write(frame)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		fr, err := wire.ReadFrame(c)
		if err != nil {
			t.Fatalf("no error message: %v", err)
		}
		e, _ := wire.DecodeError(fr.Payload)
		if fr.Type != wire.TypeError || e.Code != wire.CodeUnsupportedVersion {
			t.Fatalf("got %s %+v", fr.Type, e)
		}
		expectClosed(t, c)
		f.rec.waitAuthFailed(t, "protocol version 2.0 not supported")
	})
	t.Run("no hello", func(t *testing.T) {
		b := f.enroll(t, "mute")
		c, err := dialFrom(t, f.addr, "127.0.0.20", tlsCfg(b))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		expectClosed(t, c)
		f.rec.waitAuthFailed(t, "no hello")
	})
	t.Run("oversized frame after hello", func(t *testing.T) {
		c := f.connect(t, f.enroll(t, "big"), "127.0.0.21", schema.HealthGreen)
		frame := binary.BigEndian.AppendUint32(nil, wire.MaxFrame)
		frame = append(frame, wire.Major, 0, byte(wire.TypeHeartbeat))
		c.c.Write(frame)
		fr, err := c.next(wire.TypeError, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if e, _ := wire.DecodeError(fr.Payload); e.Code != wire.CodeLimit {
			t.Fatalf("error %+v", e)
		}
	})
	t.Run("hello over the limits", func(t *testing.T) {
		c := f.connect(t, f.enroll(t, "chatty"), "127.0.0.22", schema.HealthGreen)
		c.send(wire.TypeHello, wire.Hello{Health: schema.HealthGreen, Users: make([]string, wire.MaxUsers+1)})
		fr, err := c.next(wire.TypeError, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if e, _ := wire.DecodeError(fr.Payload); e.Code != wire.CodeLimit {
			t.Fatalf("error %+v", e)
		}
	})

	time.Sleep(time.Until(start.Add(3500 * time.Millisecond)))
	if err := stop(); err != nil {
		t.Fatalf("the enrolled endpoint was disturbed: %v", err)
	}
	gap, n := f.rec.maxGap(steady.ID)
	if gap > 1500*time.Millisecond || n < 3 {
		t.Fatalf("enrolled endpoint: %d heartbeats, longest gap %v", n, gap)
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	f := newFixture(t, nil)
	c := f.connect(t, f.enroll(t, "sleepy"), "", schema.HealthGreen)
	start := time.Now()
	fr, err := c.next(wire.TypeError, 6*time.Second)
	if err != nil {
		t.Fatalf("not closed: %v", err)
	}
	d := time.Since(start)
	if d < 2500*time.Millisecond || d > 4500*time.Millisecond {
		t.Fatalf("closed after %v, want 3 intervals (3s)", d)
	}
	if e, _ := wire.DecodeError(fr.Payload); e.Message != "idle for 3 heartbeat intervals" {
		t.Fatalf("error %+v", e)
	}
	waitFor(t, "disconnect", func() bool { return !f.rec.Endpoints()[0].Connected })
}

func TestConfigChangeReachesAgents(t *testing.T) {
	f := newFixture(t, nil)
	c := f.connect(t, f.enroll(t, "ws"), "", schema.HealthGreen)
	if _, err := c.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	z, _ := config.Load(f.dir)
	z.Addresses = []string{"127.0.0.1", "10.20.30.40"}
	z.HeartbeatInterval = 2 * time.Second
	if err := f.l.Apply(z); err != nil {
		t.Fatal(err)
	}
	hb, _ := wire.Marshal(wire.TypeHeartbeat, wire.Heartbeat{Health: schema.HealthGreen})
	go func() { // keep the connection alive meanwhile
		for range 3 {
			time.Sleep(500 * time.Millisecond)
			c.mu.Lock()
			c.c.Write(hb)
			c.mu.Unlock()
		}
	}()
	fr, err := c.next(wire.TypeConfig, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := wire.DecodeConfig(fr.Payload)
	if err != nil || len(cfg.Addresses) != 2 || cfg.Addresses[1] != "10.20.30.40:8347" || cfg.Interval() != 2*time.Second {
		t.Fatalf("config %+v %v", cfg, err)
	}
}

func TestReplacedConnection(t *testing.T) {
	f := newFixture(t, nil)
	b := f.enroll(t, "twice")
	c1 := f.connect(t, b, "", schema.HealthGreen)
	if _, err := c1.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c2 := f.connect(t, b, "", schema.HealthGreen)
	if _, err := c2.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	fr, err := c1.next(wire.TypeError, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := wire.DecodeError(fr.Payload); e.Code != wire.CodeReplaced {
		t.Fatalf("error %+v", e)
	}
	time.Sleep(100 * time.Millisecond)
	if st := f.rec.Endpoints(); !st[0].Connected {
		t.Fatal("replacing a connection disconnected the endpoint")
	}
}

// TestHandshakeStorm: 1,000 concurrent failing handshakes from 1,000
// source addresses while enrolled endpoints keep heartbeating on time.
func TestHandshakeStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm test skipped in -short mode")
	}
	f := newFixture(t, nil)
	var ids []string
	var stops []func() error
	for i := range 5 {
		b, stop := f.heartbeater(t, fmt.Sprintf("steady-%d", i), fmt.Sprintf("127.0.0.%d", 30+i))
		ids = append(ids, b.ID)
		stops = append(stops, stop)
	}
	stray := f.strayBundle(t, "stray")
	cfg, _ := pki.ClientConfig(stray)
	time.Sleep(1500 * time.Millisecond)
	var wg sync.WaitGroup
	var dialed, refused atomic.Int64
	start := time.Now()
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := netip.AddrFrom4([4]byte{127, 1, byte(i / 250), byte(i%250 + 1)})
			c, err := dialFrom(t, f.addr, src.String(), cfg.Clone())
			if err != nil {
				refused.Add(1)
				return
			}
			dialed.Add(1)
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err != nil {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	storm := time.Since(start)
	time.Sleep(1500 * time.Millisecond)
	for i, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		gap, n := f.rec.maxGap(ids[i])
		// On time: inside the missing deadline (3 intervals) with half an
		// interval to spare, on a CPU the storm (and whatever else runs on
		// the machine) saturates. Under the race detector, inside the
		// deadline itself.
		limit := 2500 * time.Millisecond
		if raceEnabled {
			limit = 3 * time.Second
		}
		if gap > limit {
			t.Errorf("endpoint %d: longest heartbeat gap %v during the storm (%d heartbeats)", i, gap, n)
		}
	}
	if refused.Load() != 1000 {
		t.Fatalf("%d of 1000 stray peers refused", refused.Load())
	}
	events := len(f.rec.authFailed())
	if events == 0 || events > 100 {
		t.Fatalf("%d auth_failed events for 1000 refusals: want some, rate-limited", events)
	}
	if st := f.l.Stats(); st.Refused < 1000 || st.Connected != 5 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("1000 failing handshakes in %v; %d auth_failed events", storm, events)
}
