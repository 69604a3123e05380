package main

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
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
