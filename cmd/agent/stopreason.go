package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// StopReasonFile, in the state directory, names the reason of the next
// stop: a package's upgrade script writes "upgrade" to it before it
// restarts the service. The agent reads and removes it when it stops.
const StopReasonFile = "stop-reason"

// StopReason tells why the agent is being stopped, for its goodbye:
//
//  1. the reason written to DIR/stop-reason, if any (the file is removed);
//  2. "shutdown" when systemd says the system is stopping
//     (`systemctl is-system-running` answers "stopping" during a shutdown
//     or reboot; a unit ordered after network.target is stopped then);
//  3. "stop" otherwise (systemctl stop or restart, kill -TERM, Ctrl-C).
func StopReason(stateDir string) schema.GoodbyeReason {
	if r, err := readStopReason(filepath.Join(stateDir, StopReasonFile)); err == nil && r != "" {
		return r
	}
	if systemdStopping() {
		return schema.GoodbyeShutdown
	}
	return schema.GoodbyeStop
}

func readStopReason(path string) (schema.GoodbyeReason, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	_ = os.Remove(path)
	r := strings.TrimSpace(string(b))
	if r == "" || len(r) > wire.MaxString || strings.ContainsAny(r, " \t\n") {
		return "", fmt.Errorf("%s: %q is not a stop reason (want one word such as upgrade)", path, r)
	}
	return schema.GoodbyeReason(r), nil
}

// WriteStopReason records the reason of the agent's next stop.
func WriteStopReason(stateDir string, r schema.GoodbyeReason) error {
	if r == "" || strings.ContainsAny(string(r), " \t\n") || len(r) > wire.MaxString {
		return fmt.Errorf("stop reason %q: want one word such as upgrade or shutdown", r)
	}
	if err := os.WriteFile(filepath.Join(stateDir, StopReasonFile), []byte(string(r)+"\n"), 0o600); err != nil {
		return fmt.Errorf("record the stop reason: %w", err)
	}
	return nil
}

// systemdStopping reports whether systemd is taking the system down.
func systemdStopping() bool {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", "is-system-running").Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) { // it exits non-zero unless "running"
		return false
	}
	return strings.TrimSpace(string(out)) == "stopping"
}
