package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/api"
)

// TestReadyMeansTheSocketAnswers: the moment the daemon logs "sensor
// ready", its local API socket answers, so that a script (or the query
// that follows a start) never sees a locked database and no socket.
func TestReadyMeansTheSocketAnswers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sensor")
	if out, err := runApp(t, "init", "--dir", dir, "--org", "acme", "--lan", "127.0.0.1"); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "api.sock")
	cmd := exec.Command(os.Args[0], "run", "--dir", dir, "--listen", freeAddr(t), "--api", sock)
	cmd.Env = append(os.Environ(), "TAPBEAT_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	lines := bufio.NewScanner(stderr)
	var log strings.Builder
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if !strings.Contains(lines.Text(), "sensor ready") {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		cl := api.NewUnixClient(sock)
		defer cl.Close()
		if err := cl.Ping(ctx); err != nil {
			t.Fatalf("the daemon said it was ready but its socket does not answer: %v\n%s", err, log.String())
		}
		go func() {
			for lines.Scan() {
			}
		}()
		return
	}
	t.Fatalf("the daemon ended without saying it was ready:\n%s", log.String())
}
