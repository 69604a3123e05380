package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone"
	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestRunCheckConvention(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		cmd    string
		health schema.Health
		reason string
	}{
		{"echo all good; exit 0", schema.HealthGreen, "all good"},
		{"printf 'DISK WARNING - 91%% used\\nmore\\n'; exit 1", schema.HealthYellow, "DISK WARNING - 91% used"},
		{"echo AV stopped; exit 2", schema.HealthRed, "AV stopped"},
		{"echo UNKNOWN; exit 3", schema.HealthYellow, "check failed"},
		{"kill -9 $$", schema.HealthYellow, "check failed"},
		{"/nonexistent/plugin", schema.HealthYellow, "check failed"},
		{"exit 2", schema.HealthRed, "exit 2: critical"},
	}
	for _, c := range cases {
		r := RunCheck(ctx, c.cmd, 5*time.Second)
		if r.Health != c.health || !strings.Contains(r.Reason, c.reason) {
			t.Errorf("%q: %v %q, want %v containing %q", c.cmd, r.Health, r.Reason, c.health, c.reason)
		}
	}
	start := time.Now()
	r := RunCheck(ctx, "sleep 30", 300*time.Millisecond)
	if r.Health != schema.HealthYellow || !strings.Contains(r.Reason, "timed out") || time.Since(start) > 3*time.Second {
		t.Fatalf("timeout: %v %q after %v", r.Health, r.Reason, time.Since(start))
	}
}

func TestSignatureAgeAndWorst(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sig")
	os.WriteFile(p, nil, 0o644)
	now := time.Now()
	if r := SignatureCheck(p, 24*time.Hour, now); r.Health != schema.HealthGreen {
		t.Fatalf("fresh: %+v", r)
	}
	old := now.Add(-30 * time.Hour)
	os.Chtimes(p, old, old)
	if r := SignatureCheck(p, 24*time.Hour, now); r.Health != schema.HealthYellow || !strings.Contains(r.Reason, "30h") {
		t.Fatalf("stale: %+v", r)
	}
	if r := SignatureCheck(p+"-missing", 24*time.Hour, now); r.Health != schema.HealthYellow {
		t.Fatalf("missing: %+v", r)
	}
	h, reasons := Worst([]CheckResult{{schema.HealthGreen, "ok"}, {schema.HealthRed, "bad"}, {schema.HealthYellow, "meh"}})
	if h != schema.HealthRed || len(reasons) != 2 {
		t.Fatalf("worst %v %v", h, reasons)
	}
	if h, _ := Worst(nil); h != schema.HealthGreen {
		t.Fatal("no checks is not green")
	}
}

func TestReadUtmp(t *testing.T) {
	rec := func(typ int16, user string) []byte {
		b := make([]byte, utmpSize)
		binary.LittleEndian.PutUint16(b, uint16(typ))
		copy(b[utmpUserOffset:], user)
		return b
	}
	var data []byte
	data = append(data, rec(2, "reboot")...) // BOOT_TIME
	data = append(data, rec(utmpUserProcess, "alice")...)
	data = append(data, rec(utmpUserProcess, "bob")...)
	data = append(data, rec(utmpUserProcess, "alice")...)
	data = append(data, rec(8, "carol")...) // DEAD_PROCESS
	p := filepath.Join(t.TempDir(), "utmp")
	os.WriteFile(p, data, 0o644)
	users, err := readUtmp(p)
	if err != nil || strings.Join(users, ",") != "alice,bob" {
		t.Fatalf("users %v %v", users, err)
	}
	if users, err := readUtmp(p + "-none"); err != nil || users != nil {
		t.Fatalf("missing utmp: %v %v", users, err)
	}
}

// sensorFixture runs a real LAN-zone listener and engine.
type sensorFixture struct {
	dir    string
	engine *sensor.Engine
	l      *lanzone.Listener
	addr   string
	stop   func()
}

func startSensor(t *testing.T, dir string, listen string) *sensorFixture {
	t.Helper()
	c, err := sensor.NewCorrelator(sensor.Config{HeartbeatInterval: time.Second}, sensor.WallClock{})
	if err != nil {
		t.Fatal(err)
	}
	f := &sensorFixture{dir: dir}
	var l *lanzone.Listener
	f.engine = sensor.NewEngine(c, func(evs []schema.Event) {
		if l != nil {
			l.Notify(evs)
		}
	})
	l, err = lanzone.New(lanzone.Options{Dir: dir, Listen: []string{listen}, Correlator: f.engine, Logger: quiet, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Bind(); err != nil {
		t.Fatal(err)
	}
	f.l, f.addr = l, l.Addrs()[0].String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Serve(ctx); close(done) }()
	var once bool
	f.stop = func() {
		if !once {
			once = true
			cancel()
			<-done
		}
	}
	t.Cleanup(f.stop)
	return f
}

func newSensorDir(t *testing.T) (string, *pki.Authority) {
	dir := t.TempDir()
	a, err := pki.Init(dir, "Example Org", []netip.Addr{netip.MustParseAddr("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := config.Save(dir, config.LANZone{Addresses: []string{"127.0.0.1"}, HeartbeatInterval: time.Second}); err != nil {
		t.Fatal(err)
	}
	return dir, a
}

func runAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	cfg.BackoffMin, cfg.BackoffMax = 100*time.Millisecond, 500*time.Millisecond
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func endpoint(e *sensor.Engine, id string) (schema.EndpointState, bool) {
	for _, s := range e.Endpoints() {
		if s.ID == id {
			return s, true
		}
	}
	return schema.EndpointState{}, false
}

func TestAgentHealthAtRiskAndHook(t *testing.T) {
	dir, auth := newSensorDir(t)
	s := startSensor(t, dir, "127.0.0.1:0")
	b, err := auth.Enroll("ws-1", pki.EnrollOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	code := filepath.Join(tmp, "code")
	os.WriteFile(code, []byte("0"), 0o644)
	hookOut := filepath.Join(tmp, "hook-copy.json")
	a := runAgent(t, Config{
		Bundle:   b,
		Sensors:  []string{s.addr},
		Checks:   []string{"echo av state $(cat " + code + "); exit $(cat " + code + ")"},
		OnAtRisk: "cp \"$TAPBEAT_AT_RISK_FILE\" " + hookOut,
	})
	waitFor(t, "hello", 5*time.Second, func() bool {
		st, ok := endpoint(s.engine, b.ID)
		return ok && st.Connected && st.Status == schema.StatusGreen
	})
	st, _ := endpoint(s.engine, b.ID)
	if st.Name != "ws-1" || st.Org != "Example Org" {
		t.Fatalf("identity %+v", st)
	}
	// The sensor's config message follows the hello: the agent applies it
	// when it reads it, which may be after the sensor saw the hello.
	waitFor(t, "the config message's 1s interval", 5*time.Second, func() bool { return a.Interval() == time.Second })
	// The health check turns red: the sensor hears it, and the at-risk list
	// comes back to the agent, lands in the state dir and runs the hook.
	os.WriteFile(code, []byte("2"), 0o644)
	waitFor(t, "red", 6*time.Second, func() bool {
		st, _ := endpoint(s.engine, b.ID)
		return st.Status == schema.StatusRed && len(st.Reasons) == 1 && st.Reasons[0] == "av state 2"
	})
	waitFor(t, "at-risk state file and hook", 6*time.Second, func() bool {
		raw, err := os.ReadFile(hookOut)
		return err == nil && strings.Contains(string(raw), b.ID) && strings.Contains(string(raw), `"red"`)
	})
	saved, err := LoadAtRisk(a.cfg.StateDir)
	if err != nil || len(saved.Endpoints) != 1 || saved.Endpoints[0].Status != schema.StatusRed {
		t.Fatalf("state file %+v %v", saved, err)
	}
	// Green again: the list empties.
	os.WriteFile(code, []byte("0"), 0o644)
	waitFor(t, "list cleared", 8*time.Second, func() bool {
		saved, err := LoadAtRisk(a.cfg.StateDir)
		return err == nil && len(saved.Endpoints) == 0
	})
}

func TestAgentFailsOverToSecondAddress(t *testing.T) {
	dir, auth := newSensorDir(t)
	first := startSensor(t, dir, "127.0.0.1:0")
	second := startSensor(t, dir, "127.0.0.2:0")
	b, _ := auth.Enroll("ws-2", pki.EnrollOptions{})
	// An unreachable address first: the agent skips it.
	dead, _ := net.Listen("tcp", "127.0.0.3:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	a := runAgent(t, Config{Bundle: b, Sensors: []string{deadAddr, first.addr, second.addr}})
	waitFor(t, "connection to the first reachable address", 5*time.Second, func() bool { return a.Connected() == first.addr })
	if _, ok := endpoint(second.engine, b.ID); ok {
		t.Fatal("second sensor address used while the first is up")
	}
	start := time.Now()
	first.stop()
	waitFor(t, "failover", 5*time.Second, func() bool {
		st, ok := endpoint(second.engine, b.ID)
		return ok && st.Connected
	})
	if a.Connected() != second.addr {
		t.Fatalf("connected to %q", a.Connected())
	}
	t.Logf("failed over in %v", time.Since(start))
}

func TestAgentFollowsConfigMessage(t *testing.T) {
	dir, auth := newSensorDir(t)
	s := startSensor(t, dir, "127.0.0.1:0")
	b, _ := auth.Enroll("ws-3", pki.EnrollOptions{})
	// The bundle lists the real address; the agent learns new ones.
	b.Addresses = []string{s.addr}
	a := runAgent(t, Config{Bundle: b})
	waitFor(t, "connect", 5*time.Second, func() bool { return a.Connected() != "" })
	z, _ := config.Load(dir)
	z.Addresses = []string{"127.0.0.1", "127.0.0.5"}
	z.HeartbeatInterval = 2 * time.Second
	if err := s.l.Apply(z); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "new interval and addresses", 5*time.Second, func() bool {
		ad := a.Addresses()
		return a.Interval() == 2*time.Second && len(ad) == 2 && ad[1] == "127.0.0.5:8347"
	})
	// The agent saves what it learned right after taking it up.
	waitFor(t, "saved addresses", 5*time.Second, func() bool {
		raw, err := os.ReadFile(filepath.Join(a.cfg.StateDir, SensorFile))
		return err == nil && strings.Contains(string(raw), "127.0.0.5:8347")
	})
}

func TestAgentRefusesWrongSensor(t *testing.T) {
	dir, auth := newSensorDir(t)
	other, _ := newSensorDir(t)
	impostor := startSensor(t, other, "127.0.0.1:0")
	b, _ := auth.Enroll("ws-4", pki.EnrollOptions{})
	_ = dir
	a := runAgent(t, Config{Bundle: b, Sensors: []string{impostor.addr}})
	time.Sleep(700 * time.Millisecond)
	if a.Connected() != "" || a.Sessions() != 0 {
		t.Fatalf("agent talked to a sensor with the wrong pin")
	}
}

// The simulator stamps a heartbeat's sent_at when it writes the frame,
// not when it encodes it.
func TestStampedHeartbeat(t *testing.T) {
	frame := stampedHeartbeat(7)
	time.Sleep(20 * time.Millisecond)
	before := time.Now().UnixNano()
	f, err := wire.ReadFrame(bytes.NewReader(frame()))
	if err != nil {
		t.Fatal(err)
	}
	hb, err := wire.DecodeHeartbeat(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if hb.Seq != 7 || hb.SentAt < before || hb.SentAt > time.Now().UnixNano() {
		t.Errorf("heartbeat seq %d sent_at %d, want seq 7 stamped at the write (after %d)", hb.Seq, hb.SentAt, before)
	}
}
