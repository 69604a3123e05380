package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// TestRunOnFullDisk fills the file system under a running daemon's state
// directory, makes an event (a peer that speaks no TLS), and checks that
// the daemon keeps running and says the disk is full, then stores the
// event once there is room again.
func TestRunOnFullDisk(t *testing.T) {
	mnt := testenv.Tmpfs(t, "256m")
	dir := filepath.Join(mnt, "sensor")
	if out, err := runApp(t, "init", "--dir", dir, "--org", "acme", "--lan", "127.0.0.1"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	lan, metrics, sock := freeAddr(t), freeAddr(t), filepath.Join(dir, "api.sock")
	startDaemon(t, "--dir", dir, "--listen", lan, "--metrics", metrics, "--api", sock)

	type health struct {
		Status   string   `json:"status"`
		Problems []string `json:"problems"`
	}
	waitHealth := func(what string, ok func(health) bool) {
		t.Helper()
		var h health
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			resp, err := http.Get("http://" + metrics + "/healthz")
			if err != nil {
				continue
			}
			h = health{}
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && ok(h) {
				return
			}
		}
		t.Fatalf("healthz never showed %s: last %+v", what, h)
	}
	diskFull := func(h health) bool {
		return slices.ContainsFunc(h.Problems, func(p string) bool { return strings.Contains(p, "disk is full") })
	}
	waitHealth("ok", func(h health) bool { return h.Status == "ok" })

	freeDisk := testenv.FillDisk(t, mnt)

	// A peer that speaks no TLS: an auth_failed event the daemon cannot
	// store yet.
	c, err := net.Dial("tcp", lan)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.Close()
	waitHealth("the full disk", func(h health) bool { return h.Status == "degraded" && diskFull(h) })

	freeDisk()
	waitHealth("ok again", func(h health) bool { return h.Status == "ok" && !diskFull(h) })
	// The event goes in with the daemon's next retry.
	var out string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, err = runApp(t, "query", "alerts", "--api", sock, "--type", "auth_failed", "--since", "1h", "--format", "json"); err == nil && strings.Contains(out, "refused") {
			return
		}
	}
	t.Fatalf("the auth_failed event was not stored once there was room: %v\n%s", err, out)
}

// TestFullDiskAlertsAndStop: with the history disk nearly full, storage_low
// and an auth_failed alert reach a syslog collector though history cannot
// store them; a stop then finishes promptly and keeps every held event in
// the spill file, and the next start stores them.
func TestFullDiskAlertsAndStop(t *testing.T) {
	mnt := testenv.Tmpfs(t, "256m")
	dir := filepath.Join(mnt, "sensor")
	if out, err := runApp(t, "init", "--dir", dir, "--org", "acme", "--lan", "127.0.0.1"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	collector, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer collector.Close()
	var mu sync.Mutex
	var received strings.Builder
	go func() {
		for {
			c, err := collector.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					mu.Lock()
					received.Write(buf[:n])
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	got := func(s string) bool { mu.Lock(); defer mu.Unlock(); return strings.Contains(received.String(), s) }

	lan, sock := freeAddr(t), filepath.Join(dir, "api.sock")
	args := []string{"tapbeat", "run", "--dir", dir, "--listen", lan, "--api", sock, "--syslog", "tcp://" + collector.Addr().String() + "?format=json"}
	logs := &testenv.Buffer{}
	// The daemon runs as a process of its own (this test binary running
	// main), so a stop is a real SIGTERM and history's lock goes with it.
	start := func() (stop func() time.Duration) {
		logs = &testenv.Buffer{}
		cmd := exec.Command(os.Args[0], args[1:]...)
		cmd.Env = append(os.Environ(), "TAPBEAT_TEST_MAIN=1")
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "sensor ready"); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("the daemon did not start:\n%s", logs.String())
			}
		}
		var once sync.Once
		var took time.Duration
		stop = func() time.Duration {
			once.Do(func() {
				t0 := time.Now()
				cmd.Process.Signal(syscall.SIGTERM)
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("run: %v\n%s", err, logs.String())
					}
				case <-time.After(90 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("the daemon did not stop within 90 s of SIGTERM:\n%s", logs.String())
				}
				took = time.Since(t0)
			})
			return took
		}
		t.Cleanup(func() { stop() })
		return stop
	}
	stop := start()
	freeDisk := testenv.FillDisk(t, mnt)
	// Leave 4 MiB: under history's reserve, as a disk filling up is.
	filler := filepath.Join(mnt, "filler")
	if st, err := os.Stat(filler); err == nil {
		os.Truncate(filler, st.Size()-4<<20)
	}
	filled := time.Now()
	c, err := net.Dial("tcp", lan)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	c.Close()
	for !got(`"storage_low"`) || !got(`"auth_failed"`) {
		if time.Since(filled) > 2*time.Minute {
			t.Fatalf("alerts did not reach the collector within 2 minutes of the disk filling up; received:\n%s", received.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("storage_low and auth_failed delivered %v after the disk filled", time.Since(filled).Round(time.Second))
	took := stop()
	t.Logf("SIGTERM on the full disk: stopped in %v", took.Round(time.Millisecond))
	if took > 60*time.Second {
		t.Errorf("stop on a full disk took %v, more than the unit's 60 s", took)
	}
	if !strings.Contains(logs.String(), "spill file") {
		t.Errorf("the stop did not say where the held events went:\n%s", logs.String())
	}
	spill, err := os.ReadFile(filepath.Join(dir, "history-spill.jsonl"))
	if err != nil || !strings.Contains(string(spill), `"auth_failed"`) {
		t.Fatalf("spill file: %v\n%s", err, spill)
	}
	freeDisk()
	start()
	var out string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, err = runApp(t, "query", "alerts", "--api", sock, "--since", "1h", "--format", "json"); err == nil &&
			strings.Contains(out, `"auth_failed"`) && strings.Contains(out, `"storage_low"`) {
			if _, err := os.Stat(filepath.Join(dir, "history-spill.jsonl")); err == nil {
				continue // stored, the file goes next
			}
			return
		}
	}
	t.Fatalf("the spilled events were not stored at the next start: %v\n%s\nlog:\n%s", err, out, logs.String())
}

func TestMain(m *testing.M) {
	if os.Getenv("TAPBEAT_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
