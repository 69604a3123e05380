package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// TestAdminDescriptorFlood: the daemon runs with 1,024 open files; 2,000
// idle connections from 200 addresses flood the admin API. The LAN zone
// still admits agents, an endpoint enrolled during the flood gets in (the
// trust store is still re-read), and the cap is an event.
func TestAdminDescriptorFlood(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "prlimit")
	dir := filepath.Join(t.TempDir(), "sensor")
	if out, err := runApp(t, "init", "--dir", dir, "--org", "acme", "--lan", "127.0.0.1"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	lan, admin, sock := freeAddr(t), freeAddr(t), filepath.Join(dir, "api.sock")
	logs := &testenv.Buffer{}
	cmd := exec.Command("prlimit", "--nofile=1024:1024", os.Args[0], "run", "--dir", dir, "--listen", lan,
		"--admin-listen", admin, "--api", sock)
	cmd.Env = append(os.Environ(), "TAPBEAT_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), "sensor ready"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon did not start:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), "api_connections_per_listener=32") {
		t.Fatalf("the descriptor budget did not follow the 1,024 limit:\n%s", logs.String())
	}

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := range 2000 {
		src := netip.AddrFrom4([4]byte{127, 7, byte(i / 10 / 250), byte(i/10%250 + 1)})
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: 2 * time.Second}
		if c, err := d.Dial("tcp", admin); err == nil {
			flood = append(flood, c)
		}
	}
	t.Logf("%d flood connections opened against the admin API", len(flood))

	// An endpoint enrolled during the flood: the trust store is re-read
	// and the LAN zone accepts it.
	bundle := filepath.Join(t.TempDir(), "late.bundle.json")
	if out, err := runApp(t, "enroll", "--dir", dir, "--name", "late", "--out", bundle); err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	b, err := pki.ReadBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ClientConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	admitted := false
	for deadline := time.Now().Add(10 * time.Second); !admitted && time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		admitted = func() bool {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", lan, cfg)
			if err != nil {
				return false
			}
			defer c.Close()
			f, _ := wire.Marshal(wire.TypeHello, wire.Hello{Health: schema.HealthGreen})
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Write(f); err != nil {
				return false
			}
			fr, err := wire.ReadFrame(c)
			return err == nil && fr.Type == wire.TypeConfig
		}()
	}
	if !admitted {
		t.Fatal("an endpoint enrolled during the admin-API flood was not admitted by the LAN zone")
	}
	var out string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		out, err = runApp(t, "query", "alerts", "--api", sock, "--since", "1h", "--format", "json")
		if err == nil && strings.Contains(out, `"descriptors_exhausted"`) && strings.Contains(out, "connection cap") {
			if strings.Contains(logs.String(), "too many open files") {
				t.Errorf("the daemon ran out of descriptors:\n%s", logs.String())
			}
			return
		}
	}
	t.Fatalf("no descriptors_exhausted event for the capped admin API: %v\n%s", err, fmt.Sprint(out))
}
