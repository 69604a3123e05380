package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// The test binary runs as a fleet sensor process when TAPBEAT_FLEET_MEMBER
// names a sensor directory: a fleet runs one node per process (several
// nodes in one process do not form a JetStream meta group).
func TestMain(m *testing.M) {
	if dir := os.Getenv("TAPBEAT_FLEET_MEMBER"); dir != "" {
		os.Exit(runMember(dir))
	}
	os.Exit(m.Run())
}

// runMember joins the fleet, reports health changes on stdout ("HEALTH
// degraded|restored") and what the fleet vouches for the peer's MAC
// ("VOUCH verdict holder"), writes one endpoint record and one event
// (twice) while healthy, answers "ping" queries, and stays until SIGTERM.
func runMember(dir string) int {
	cfg, err := Load(dir)
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f, err := Start(ctx, Options{Dir: dir, Config: cfg, Logger: log, Interval: time.Second, LAN: []string{"127.0.0.1:8347"}})
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	defer f.Close()
	_ = f.Handle("ping", func(ctx context.Context, req []byte) (any, error) {
		return []string{f.Name(), string(req)}, nil
	})
	fmt.Println("STARTED")
	published := false
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return 0
		case c := <-f.Changes():
			if c.Degraded {
				fmt.Println("HEALTH degraded", c.Reason)
			} else {
				fmt.Println("HEALTH restored")
			}
		case <-tick.C:
			if ok, _ := f.Healthy(); ok {
				f.PutEndpoint(EndpointRecord{ID: "ep-" + cfg.Name, Name: "host-" + cfg.Name, Connected: true,
					Health: schema.HealthGreen, LastHeartbeat: time.Now(),
					Interfaces: []schema.Interface{{Name: "eth0", MAC: macOf(cfg.Name)}}})
				if !published {
					ev := schema.Event{Seq: 1, Time: time.Now(), Type: schema.EventClockStepped, Severity: schema.SeverityWarning}
					published = true
					for range 2 { // the same sequence twice: stored once
						published = published && f.PublishEvent(ev) == nil
					}
				}
			}
			v, r := f.Vouch(macOf(peerOf(cfg.Name)))
			fmt.Printf("VOUCH %d %s\n", v, r.Sensor)
		}
	}
}

func macOf(name string) schema.MAC {
	return schema.MAC{0x02, 0, 0, 0, 0, name[len(name)-1]}
}

// peerOf names the sensor whose endpoint a member asks about: s1 asks
// about s2's, every other about s1's.
func peerOf(name string) string {
	if name == "s1" {
		return "s2"
	}
	return "s1"
}

// member is a fleet sensor process under test.
type member struct {
	name string
	dir  string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  []string
}

func (m *member) lines() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.out...)
}

func (m *member) saw(prefix string) bool {
	for _, l := range m.lines() {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func (m *member) last(prefix string) string {
	ls := m.lines()
	for i := len(ls) - 1; i >= 0; i-- {
		if strings.HasPrefix(ls[i], prefix) {
			return ls[i]
		}
	}
	return ""
}

func startMember(t *testing.T, name, dir string) *member {
	t.Helper()
	m := &member{name: name, dir: dir}
	m.cmd = exec.Command(os.Args[0], "-test.run=^$")
	m.cmd.Env = append(os.Environ(), "TAPBEAT_FLEET_MEMBER="+dir)
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stderr = logf
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			m.mu.Lock()
			m.out = append(m.out, s.Text())
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			logf.Seek(0, io.SeekStart)
			b, _ := io.ReadAll(logf)
			t.Logf("%s stderr:\n%s\nstdout tail: %v", name, tail(string(b), 3000), tailLines(m.lines(), 10))
		}
	})
	return m
}

func (m *member) stop() {
	if m.cmd.Process != nil && m.cmd.ProcessState == nil {
		m.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { m.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			m.cmd.Process.Kill()
			<-done
		}
	}
}

func (m *member) kill() {
	m.cmd.Process.Kill()
	m.cmd.Wait()
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func tailLines(l []string, n int) []string {
	if len(l) > n {
		return l[len(l)-n:]
	}
	return l
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newFleetDirs makes the first sensor s1 with pki.Init and SetAddr, and
// n-1 more with AddSensor and Join, all on loopback with free ports.
func newFleetDirs(t *testing.T, org string, n int) []string {
	t.Helper()
	base := t.TempDir()
	lan := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	d1 := filepath.Join(base, "s1")
	if _, err := pki.Init(d1, org, lan); err != nil {
		t.Fatal(err)
	}
	writeLAN(t, d1)
	if _, err := SetAddr(d1, "s1", fmt.Sprintf("127.0.0.1:%d", freePort(t))); err != nil {
		t.Fatal(err)
	}
	setClientPort(t, d1)
	dirs := []string{d1}
	for i := 2; i <= n; i++ {
		name := fmt.Sprintf("s%d", i)
		j, err := AddSensor(d1, name, lan, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(base, name+".fleet.json")
		if err := j.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("join file %s: mode %v, %v; want 0600", p, st.Mode().Perm(), err)
		}
		j2, err := ReadJoinFile(p)
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(base, name)
		if err := Join(d, j2); err != nil {
			t.Fatal(err)
		}
		setClientPort(t, d)
		dirs = append(dirs, d)
	}
	return dirs
}

func writeLAN(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "tapbeat.toml"), []byte("[lanzone]\naddresses = [\"127.0.0.1\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func setClientPort(t *testing.T, dir string) {
	t.Helper()
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	c.ClientPort = freePort(t)
	if err := Save(dir, c); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, d)
	return 0
}

func readStatus(t *testing.T, dir, self string) *Status {
	t.Helper()
	cfg, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := Dial(dir, cfg)
	if err != nil {
		return nil
	}
	defer nc.Close()
	st, err := ReadStatus(context.Background(), nc, self)
	if err != nil {
		return nil
	}
	return st
}

func statusJSON(st *Status) string {
	b, _ := json.Marshal(st)
	return string(b)
}
