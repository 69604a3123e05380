package api

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

var (
	t0   = time.Date(2026, 11, 17, 8, 0, 0, 0, time.UTC)
	macA = schema.MustParseMAC("02:00:00:00:00:0a")
	macB = schema.MustParseMAC("02:00:00:00:00:0b")
	ip   = netip.MustParseAddr("10.9.0.5")
)

// fixture writes a small history: laptop-a holds 10.9.0.5 in the morning and
// goes yellow; from 12:00 unmanaged macB holds the address.
func fixture(t *testing.T) (*history.Store, *sensor.Engine) {
	t.Helper()
	clock := &sensor.ManualClock{T: t0}
	s, err := history.Open(filepath.Join(t.TempDir(), "history"), history.Options{Now: func() time.Time { return t0.Add(12 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := sensor.NewCorrelator(sensor.Config{}, clock)
	if err != nil {
		t.Fatal(err)
	}
	var pending []schema.Event
	eng := sensor.NewEngine(c, func(evs []schema.Event) { pending = append(pending, evs...) })
	flush := func() {
		t.Helper()
		if err := s.Append(pending, nil); err != nil {
			t.Fatal(err)
		}
		pending = nil
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(eng.Hello(schema.Hello{EndpointID: "ep-a", Name: "laptop-a", Org: "acme", Health: schema.HealthGreen, Users: []string{"alice"},
		Interfaces: []schema.Interface{{Name: "eth0", MAC: macA, IPs: []netip.Addr{ip}}}}))
	flush()
	clock.Set(t0.Add(2 * time.Hour))
	must(eng.Heartbeat(schema.Heartbeat{EndpointID: "ep-a", Health: schema.HealthYellow, Reasons: []string{"firewall off"}}))
	flush()
	clock.Set(t0.Add(4 * time.Hour))
	must(s.AddBindings([]schema.Binding{{MAC: macB, IP: ip, Source: "dhcp", Hostname: "camera-1", Time: clock.T}}))
	ts := []schema.TrafficSummary{{MAC: macB, IPs: []netip.Addr{ip}, Packets: 3, Bytes: 300, FirstSeen: clock.T, LastSeen: clock.T.Add(10 * time.Second)}}
	eng.Traffic(ts)
	must(s.AddTraffic(ts))
	must(eng.Heartbeat(schema.Heartbeat{EndpointID: "ep-a", Health: schema.HealthYellow, Reasons: []string{"firewall off"}}))
	clock.Set(t0.Add(4*time.Hour + 30*time.Second))
	eng.Tick()
	flush()
	must(s.Flush())
	return s, eng
}

// serveTLS serves srv's admin API on a loopback port until the test ends
// and returns its https URL.
func serveTLS(t *testing.T, srv *Server, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(t.Context(), ln, cfg)
	return "https://" + ln.Addr().String()
}

func serveUnix(t *testing.T, srv *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "tapbeat.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeUnix(ctx, sock) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	c := NewUnixClient(sock)
	defer c.Close()
	for i := 0; ; i++ {
		if err := c.Ping(context.Background()); err == nil {
			return sock
		} else if i > 200 {
			t.Fatalf("socket never answered: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSocketAnswersAsTheStore checks that every query through the socket
// gives what the store gives in-process.
func TestSocketAnswersAsTheStore(t *testing.T) {
	s, eng := fixture(t)
	sock := serveUnix(t, NewServer(s, eng, nil))
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	c := NewUnixClient(sock)
	defer c.Close()
	local := Local{Store: s}
	ctx := context.Background()
	day := history.Range{Since: t0, Until: t0.Add(23 * time.Hour)}

	for _, at := range []time.Time{t0.Add(time.Hour), t0.Add(5 * time.Hour)} {
		want, err := local.Who(ctx, ip, at)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Who(ctx, ip, at)
		if err != nil {
			t.Fatal(err)
		}
		if !sameJSON(t, got, want) {
			t.Errorf("who at %s: socket %+v, store %+v", at, got, want)
		}
	}
	ans, _ := c.Who(ctx, ip, t0.Add(time.Hour))
	if ans.Endpoint == nil || ans.Endpoint.Name != "laptop-a" || ans.Users[0] != "alice" {
		t.Errorf("who at 09:00: %+v, want laptop-a with alice", ans)
	}
	ans, _ = c.Who(ctx, ip, t0.Add(5*time.Hour))
	if ans.MAC == nil || *ans.MAC != macB || ans.Unmanaged == nil || ans.Unmanaged.Hostnames[0] != "camera-1" {
		t.Errorf("who at 13:00: %+v, want unmanaged camera-1", ans)
	}

	hq := history.HistoryQuery{Range: day, Endpoint: "laptop-a"}
	wantH, _ := local.History(ctx, hq)
	gotH, err := c.History(ctx, hq)
	if err != nil || len(wantH) < 3 || !sameJSON(t, gotH, wantH) {
		t.Errorf("history: %v\nsocket %d events, store %d", err, len(gotH), len(wantH))
	}
	aq := history.AlertQuery{Range: day, Types: []schema.EventType{schema.EventNoHeartbeat}}
	wantA, _ := local.Alerts(ctx, aq)
	gotA, err := c.Alerts(ctx, aq)
	if err != nil || len(wantA) != 1 || !sameJSON(t, gotA, wantA) {
		t.Errorf("alerts: %v: socket %v, store %v", err, gotA, wantA)
	}
	tq := history.TrafficQuery{Range: day, MAC: macB}
	wantT, _ := local.Traffic(ctx, tq)
	gotT, err := c.Traffic(ctx, tq)
	if err != nil || len(wantT) != 1 || !reflect.DeepEqual(gotT, wantT) {
		t.Errorf("traffic: %v: socket %v, store %v", err, gotT, wantT)
	}
	wantU, _ := local.Unmanaged(ctx, day)
	gotU, err := c.Unmanaged(ctx, day)
	if err != nil || len(wantU) != 1 || !sameJSON(t, gotU, wantU) {
		t.Errorf("unmanaged: %v: socket %v, store %v", err, gotU, wantU)
	}
	// Endpoints come live from the engine through the daemon, from the
	// store without it.
	l, err := c.Endpoints(ctx)
	if err != nil || l.Source != SourceLive || len(l.Endpoints) != 1 || !l.Endpoints[0].Connected {
		t.Errorf("live endpoints: %v %+v", err, l)
	}
	l, _ = local.Endpoints(ctx)
	if l.Source != SourceHistory || len(l.Endpoints) != 1 || l.Endpoints[0].Status != schema.StatusYellow {
		t.Errorf("stored endpoints %+v", l)
	}
	risk, err := c.AtRisk(ctx)
	if err != nil || len(risk.Endpoints) != 1 || risk.Endpoints[0].Name != "laptop-a" {
		t.Errorf("at risk: %v %+v", err, risk)
	}
}

func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, _ := jsonMarshal(a)
	jb, _ := jsonMarshal(b)
	return bytes.Equal(ja, jb)
}

func TestBadRequestsSayWhatIsWrong(t *testing.T) {
	s, _ := fixture(t)
	sock := serveUnix(t, NewServer(s, nil, nil))
	c := NewUnixClient(sock)
	defer c.Close()
	ctx := context.Background()
	if _, err := c.History(ctx, history.HistoryQuery{}); err == nil || !strings.Contains(err.Error(), "endpoint=NAME|ID or mac=MAC") {
		t.Errorf("history without subject: %v", err)
	}
	var v any
	if err := c.get(ctx, "/v1/who", map[string][]string{"ip": {"10.9.0.300"}}, &v); err == nil || !strings.Contains(err.Error(), "want an IPv4 or IPv6 address") {
		t.Errorf("bad ip: %v", err)
	}
	if err := c.get(ctx, "/v1/alerts", map[string][]string{"since": {"yesterday"}}, &v); err == nil || !strings.Contains(err.Error(), "want RFC 3339") {
		t.Errorf("bad since: %v", err)
	}
	if _, err := c.AtRisk(ctx); err == nil || !strings.Contains(err.Error(), "no live state") {
		t.Errorf("at risk without live state: %v", err)
	}
}

func TestSocketRefusesSecondDaemon(t *testing.T) {
	s, _ := fixture(t)
	sock := serveUnix(t, NewServer(s, nil, nil))
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "another daemon") {
		t.Fatalf("second listener on a live socket: %v", err)
	}
}

func TestBackupThroughSocketRestores(t *testing.T) {
	s, _ := fixture(t)
	sock := serveUnix(t, NewServer(s, nil, nil))
	c := NewUnixClient(sock)
	defer c.Close()
	var buf bytes.Buffer
	if err := c.Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	if err := history.Restore(dir, bytes.NewReader(buf.Bytes()), history.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := history.Restore(dir, bytes.NewReader(buf.Bytes()), history.Options{}); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("restore over a database: %v", err)
	}
	if err := history.Restore(filepath.Join(t.TempDir(), "x"), strings.NewReader("not a backup"), history.Options{}); err == nil || !strings.Contains(err.Error(), "not a tapbeat history backup") {
		t.Errorf("restore of garbage: %v", err)
	}
	r, err := history.Open(dir, history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want, _ := s.Who(ip, t0.Add(time.Hour))
	got, err := r.Who(ip, t0.Add(time.Hour))
	if err != nil || !sameJSON(t, got, want) || got.Endpoint == nil {
		t.Fatalf("who on the restored copy: %v %+v, want %+v", err, got, want)
	}
	if r.NextSeq() != s.NextSeq() {
		t.Errorf("restored next seq %d, want %d", r.NextSeq(), s.NextSeq())
	}
}

// testCA is a throw-away certificate authority for the mutual TLS tests.
type testCA struct {
	t    *testing.T
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t *testing.T, name string) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{t: t, cert: cert, key: key, pool: pool}
}

func (p *testCA) issue(cn string, usage x509.ExtKeyUsage, ips ...net.IP) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestAdminAPIOverMutualTLS(t *testing.T) {
	s, eng := fixture(t)
	org := newPKI(t, "acme CA")
	stranger := newPKI(t, "other CA")
	serverCert := org.issue("sensor", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	admin := org.issue("admin-1", x509.ExtKeyUsageClientAuth)
	foreign := stranger.issue("admin-1", x509.ExtKeyUsageClientAuth)

	srvCfg := &tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{serverCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: org.pool,
	}
	srv := NewServer(s, eng, nil)
	// A configuration that does not authenticate clients is refused.
	ln0, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := srv.ServeTLS(context.Background(), ln0, &tls.Config{Certificates: []tls.Certificate{serverCert}}); err == nil || !strings.Contains(err.Error(), "mutual TLS") {
		t.Fatalf("serve without client auth: %v", err)
	}
	ln0.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ctx, ln, srvCfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	url := "https://" + ln.Addr().String()
	client := func(certs ...tls.Certificate) *Client {
		c, err := NewTLSClient(url, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: org.pool, Certificates: certs, ServerName: "127.0.0.1"})
		if err != nil && len(certs) > 0 {
			t.Fatal(err)
		}
		return c
	}
	qctx, qcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer qcancel()
	c := client(admin)
	defer c.Close()
	ans, err := c.Who(qctx, ip, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("admin who: %v", err)
	}
	if ans.Endpoint == nil || ans.Endpoint.Name != "laptop-a" {
		t.Errorf("admin who: %+v", ans)
	}
	l, err := c.Endpoints(qctx)
	if err != nil || l.Source != SourceLive {
		t.Errorf("admin endpoints: %v %+v", err, l)
	}
	// A certificate from another authority is refused.
	f := client(foreign)
	defer f.Close()
	if _, err := f.Endpoints(qctx); err == nil {
		t.Error("a certificate from another authority was accepted")
	}
	// No certificate: NewTLSClient refuses to build the client, and a raw
	// TLS client without one fails the handshake.
	if _, err := NewTLSClient(url, &tls.Config{RootCAs: org.pool}); err == nil {
		t.Error("client without a certificate was built")
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: org.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte("GET /v1/endpoints HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Error("a client without a certificate got an answer")
	}
}

// TestEndpointWithoutHealthEncodes: an endpoint that said hello and has not
// reported a health yet must not break the endpoints answer.
func TestEndpointWithoutHealthEncodes(t *testing.T) {
	s, err := history.Open(t.TempDir(), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hello := schema.Event{Seq: 1, Time: t0, Type: schema.EventEndpointHello, Severity: schema.SeverityInfo,
		EndpointID: "ep-new", EndpointName: "new-host", Details: &schema.HelloDetails{Interfaces: []schema.Interface{{Name: "eth0", MAC: macA}}}}
	if err := s.Append([]schema.Event{hello}, nil); err != nil {
		t.Fatal(err)
	}
	sock := serveUnix(t, NewServer(s, nil, nil))
	c := NewUnixClient(sock)
	defer c.Close()
	l, err := c.Endpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Endpoints) != 1 || l.Endpoints[0].Name != "new-host" || l.Endpoints[0].Health != 0 {
		t.Fatalf("endpoints %+v", l)
	}
}
