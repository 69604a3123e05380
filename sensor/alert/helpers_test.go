package alert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"
	"pgregory.net/rapid"

	"github.com/tapbeat/tapbeat/sensor/history"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// testEvents returns n alerts numbered from first, with every field in use
// and awkward characters in the free-text ones.
func testEvents(first uint64, n int) []schema.Event {
	types := []schema.EventType{schema.EventHeartbeatMissing, schema.EventNoHeartbeat, schema.EventPolicyViolation,
		schema.EventStatusChanged, schema.EventLateralMovement}
	base := time.Date(2026, 11, 26, 8, 0, 0, 123456789, time.UTC)
	evs := make([]schema.Event, n)
	for i := range evs {
		seq := first + uint64(i)
		evs[i] = schema.Event{
			Seq:            seq,
			Time:           base.Add(time.Duration(seq) * time.Millisecond),
			Type:           types[int(seq)%len(types)],
			Severity:       schema.SeverityWarning - schema.Severity(seq%2),
			EndpointID:     fmt.Sprintf("ep-%d", seq),
			EndpointName:   fmt.Sprintf("laptop \"%d\"", seq),
			Org:            "acme",
			MACs:           []schema.MAC{schema.MustParseMAC("02:00:00:00:00:01"), schema.MustParseMAC("02:00:00:00:00:02")},
			IPs:            []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")},
			Status:         "missing",
			PreviousStatus: "green",
			Reason:         fmt.Sprintf("no heartbeat for 45s] \\ while sending\nsecond line of %d", seq),
			// Raw details, with a key that needs escaping in every format.
			Details: schema.RawDetails(`{"port":445,"proto":"tcp","rule name":"no smb=yes"}`),
		}
	}
	return evs
}

// testDB opens a history database in dir.
func testDB(t testing.TB, dir string) *history.Store {
	t.Helper()
	db, err := history.Open(dir, history.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before any dispatcher's cleanup, so it runs after it.
	t.Cleanup(func() { db.Close() })
	return db
}

// space returns the outbox's key space in db.
func space(t testing.TB, db *history.Store) *history.Space {
	t.Helper()
	sp, err := db.Space(SpaceName)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// stage writes evs and the outbox entries in one batch, as the daemon does.
func stage(t testing.TB, db *history.Store, ob *Outbox, evs []schema.Event) {
	t.Helper()
	if err := db.Append(evs, func(b *history.Batch) error { return ob.Stage(b, evs) }); err != nil {
		t.Fatal(err)
	}
}

// stageOnly writes the outbox entries of evs in a batch of their own.
func stageOnly(t testing.TB, db *history.Store, ob *Outbox, evs []schema.Event) {
	t.Helper()
	if err := space(t, db).Update(func(b *history.Batch) error { return ob.Stage(b, evs) }); err != nil {
		t.Fatal(err)
	}
}

// running is a dispatcher started by startDispatcher.
type running struct {
	dp     *Dispatcher
	ob     *Outbox
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop cancels the dispatcher and waits for Run to return; it may be
// called more than once.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("dispatcher: %v", err)
		}
	})
}

func startDispatcher(t testing.TB, db *history.Store, oo OutboxOptions, do DispatcherOptions) *running {
	t.Helper()
	ob, err := NewOutbox(space(t, db), oo)
	if err != nil {
		t.Fatal(err)
	}
	if do.Logger == nil {
		do.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	if do.MaxBackoff == 0 {
		do.MaxBackoff = 200 * time.Millisecond
	}
	dp, err := NewDispatcher(ob, do)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{dp: dp, ob: ob, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- dp.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func mustDest(t testing.TB, url string) Destination {
	t.Helper()
	d, err := ParseDestination(url)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// certs is a throw-away PKI: a CA, a collector certificate for 127.0.0.1
// and a client certificate, all as PEM files.
type certs struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newCerts(t testing.TB, dir, prefix string) certs {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: prefix + " test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	c := certs{CA: filepath.Join(dir, prefix+"ca.pem")}
	writePEM(t, c.CA, "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: []string{name}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		cp, kp := filepath.Join(dir, prefix+name+".pem"), filepath.Join(dir, prefix+name+".key")
		writePEM(t, cp, "CERTIFICATE", der)
		writePEM(t, kp, "PRIVATE KEY", kder)
		return cp, kp
	}
	c.ServerCert, c.ServerKey = leaf("collector.test", 2, x509.ExtKeyUsageServerAuth)
	c.ClientCert, c.ClientKey = leaf("sensor.test", 3, x509.ExtKeyUsageClientAuth)
	return c
}

// rsyslog is a private rsyslogd listening on loopback, writing every raw
// message it receives, JSON-escaped, one per line.
type rsyslog struct {
	t        testing.TB
	dir      string
	conf     string
	out      string
	TCP, UDP int
	RELP     int // 0 unless started with RELP
	cmd      *exec.Cmd
	exited   chan struct{}
	mu       sync.Mutex
}

// rsyslogTLS selects TLS on the TCP input: authMode "anon" (server
// certificate only) or "x509/certvalid" (client certificate required).
type rsyslogTLS struct {
	certs    certs
	authMode string
}

func startRsyslog(t testing.TB, tlsCfg *rsyslogTLS) *rsyslog {
	t.Helper()
	return startRsyslogWith(t, tlsCfg, false)
}

// imrelpPaths are where Debian's rsyslog-relp package installs imrelp.
var imrelpPaths = []string{"/usr/lib/x86_64-linux-gnu/rsyslog/imrelp.so", "/usr/lib/aarch64-linux-gnu/rsyslog/imrelp.so", "/usr/lib/rsyslog/imrelp.so"}

// gtlsPaths are where Debian's rsyslog-gnutls package installs the TLS
// driver rsyslog loads for streamDriver.name="gtls".
var gtlsPaths = []string{"/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so", "/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so", "/usr/lib/rsyslog/lmnsd_gtls.so"}

// startRsyslogWith also listens for RELP on r.RELP when relp is set (with
// TLS when tlsCfg is set, as for the TCP input).
func startRsyslogWith(t testing.TB, tlsCfg *rsyslogTLS, relp bool) *rsyslog {
	t.Helper()
	testenv.RequireCommands(t, "rsyslogd")
	if relp {
		testenv.RequireAnyFile(t, "rsyslog's imrelp module (Debian package rsyslog-relp)", imrelpPaths...)
	}
	if tlsCfg != nil {
		testenv.RequireAnyFile(t, "rsyslog's TLS driver lmnsd_gtls (Debian package rsyslog-gnutls)", gtlsPaths...)
	}
	dir := t.TempDir()
	r := &rsyslog{t: t, dir: dir, conf: filepath.Join(dir, "rsyslog.conf"), out: filepath.Join(dir, "received.jsonl"),
		TCP: freePort(t, "tcp"), UDP: freePort(t, "udp")}
	var b strings.Builder
	fmt.Fprintf(&b, "global(workDirectory=%q maxMessageSize=\"64k\" parser.escapeControlCharactersOnReceive=\"off\"", dir)
	if tlsCfg != nil {
		fmt.Fprintf(&b, " defaultNetstreamDriverCAFile=%q defaultNetstreamDriverCertFile=%q defaultNetstreamDriverKeyFile=%q",
			tlsCfg.certs.CA, tlsCfg.certs.ServerCert, tlsCfg.certs.ServerKey)
	}
	b.WriteString(")\nmodule(load=\"imudp\")\n")
	if tlsCfg != nil {
		fmt.Fprintf(&b, "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\" streamDriver.authMode=%q)\n", tlsCfg.authMode)
	} else {
		b.WriteString("module(load=\"imtcp\")\n")
	}
	fmt.Fprintf(&b, "input(type=\"imudp\" address=\"127.0.0.1\" port=\"%d\")\n", r.UDP)
	fmt.Fprintf(&b, "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%d\")\n", r.TCP)
	if relp {
		r.RELP = freePort(t, "tcp")
		fmt.Fprintf(&b, "module(load=\"imrelp\")\ninput(type=\"imrelp\" address=\"127.0.0.1\" port=\"%d\" maxDataSize=\"64k\"", r.RELP)
		if tlsCfg != nil {
			// imrelp always asks for a client certificate; certvalid
			// accepts any the CA signed.
			fmt.Fprintf(&b, " tls=\"on\" tls.caCert=%q tls.myCert=%q tls.myPrivKey=%q tls.authMode=\"certvalid\"", tlsCfg.certs.CA, tlsCfg.certs.ServerCert, tlsCfg.certs.ServerKey)
		}
		b.WriteString(")\n")
	}
	b.WriteString("template(name=\"raw\" type=\"list\") { constant(value=\"\\\"\") property(name=\"rawmsg\" format=\"json\") constant(value=\"\\\"\\n\") }\n")
	fmt.Fprintf(&b, "action(type=\"omfile\" file=%q template=\"raw\")\n", r.out)
	if err := os.WriteFile(r.conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.kill)
	return r
}

// start runs rsyslogd and waits until its TCP input accepts connections.
func (r *rsyslog) start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var errb bytes.Buffer
	cmd := exec.Command("rsyslogd", "-n", "-f", r.conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &errb, &errb
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("rsyslogd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	r.cmd, r.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.TCP), time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			conf, _ := os.ReadFile(r.conf)
			r.t.Fatalf("rsyslogd exited at start: %s\nconfig:\n%s", errb.String(), conf)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("rsyslogd not listening on %d after 10s: %s", r.TCP, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops rsyslogd at once (SIGKILL), as a crash would.
func (r *rsyslog) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		r.cmd.Process.Kill()
		<-r.exited
		r.cmd = nil
	}
}

// messages returns every raw message received so far.
func (r *rsyslog) messages() []string {
	r.t.Helper()
	data, err := os.ReadFile(r.out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	// rsyslog may be writing the last line right now: only lines that
	// end in a newline are complete.
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	} else {
		return nil
	}
	var out []string
	for _, line := range bytes.Split(data, []byte("\n")) {
		var s string
		if err := json.Unmarshal(line, &s); err != nil {
			r.t.Fatalf("rsyslog output line %q: %v", line, err)
		}
		out = append(out, s)
	}
	return out
}

// parsed is a received message parsed as RFC 5424.
type parsed struct {
	raw string
	m   *rfc5424.SyslogMessage
	seq uint64 // the event's number (tapbeat@32473 seq)
	sid uint64 // the destination's RFC 5424 sequenceId
}

func (p parsed) sd(name string) string { return (*p.m.StructuredData)[SDID][name] }

// parseAll parses every message, failing the test on any that is not
// valid RFC 5424 or lacks its sequence id.
func parseAll(t testing.TB, raws []string) []parsed {
	t.Helper()
	var out []parsed
	for _, raw := range raws {
		m, err := rfc5424.NewParser().Parse([]byte(raw))
		if err != nil {
			t.Fatalf("not RFC 5424: %v\n%q", err, raw)
		}
		sm := m.(*rfc5424.SyslogMessage)
		if sm.StructuredData == nil {
			t.Fatalf("no structured data: %q", raw)
		}
		sid, err := strconv.ParseUint((*sm.StructuredData)["meta"]["sequenceId"], 10, 64)
		if err != nil || sid < 1 || sid > MaxSequenceID {
			t.Fatalf("no meta sequenceId in 1-%d: %q", MaxSequenceID, raw)
		}
		seq, err := strconv.ParseUint((*sm.StructuredData)[SDID]["seq"], 10, 64)
		if err != nil {
			t.Fatalf("no %s seq: %q", SDID, raw)
		}
		out = append(out, parsed{raw: raw, m: sm, seq: seq, sid: sid})
	}
	return out
}

// waitSeqs waits until rsyslog has received every sequence number in want
// and returns the parsed messages.
func waitSeqs(t testing.TB, r *rsyslog, want []uint64, timeout time.Duration) []parsed {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ps := parseAll(t, r.messages())
		got := map[uint64]bool{}
		for _, p := range ps {
			got[p.seq] = true
		}
		var missing []uint64
		for _, s := range want {
			if !got[s] {
				missing = append(missing, s)
			}
		}
		if len(missing) == 0 {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v rsyslog lacks %d of %d sequence ids (first missing %v); received %d messages",
				timeout, len(missing), len(want), missing[:min(5, len(missing))], len(ps))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func seqs(evs []schema.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Seq
	}
	return out
}

// genMACs and genIPs draw short lists of addresses (nil when empty, as
// decoding gives them).
func genMACs(t *rapid.T, label string) []schema.MAC {
	ms := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) schema.MAC {
		return schema.MACFromUint64(rapid.Uint64Range(0, 1<<48-1).Draw(t, "mac"))
	}), 0, 3).Draw(t, label)
	if len(ms) == 0 {
		return nil
	}
	return ms
}

func genIPs(t *rapid.T, label string) []netip.Addr {
	ips := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) netip.Addr {
		if rapid.Bool().Draw(t, "v6") {
			return netip.AddrFrom16([16]byte(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "b16")))
		}
		return netip.AddrFrom4([4]byte(rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, "b4")))
	}), 0, 3).Draw(t, label)
	if len(ips) == 0 {
		return nil
	}
	return ips
}
