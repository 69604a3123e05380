package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/config"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// AtRiskFile is the at-risk list's file name in the state directory.
const AtRiskFile = "at_risk.json"

// SensorFile keeps the sensor addresses last received in a config message.
const SensorFile = "sensor.json"

// AtRiskState is what the agent keeps on disk about the at-risk list.
type AtRiskState struct {
	Updated   time.Time             `json:"updated"`
	Endpoints []wire.AtRiskEndpoint `json:"endpoints"`
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return config.WriteFileAtomic(path, append(b, '\n'), 0o644)
}

// LoadAtRisk reads the at-risk list an agent kept in stateDir.
func LoadAtRisk(stateDir string) (AtRiskState, error) {
	var s AtRiskState
	b, err := os.ReadFile(filepath.Join(stateDir, AtRiskFile))
	if err != nil {
		return s, fmt.Errorf("read at-risk list: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read at-risk list %s: %w", filepath.Join(stateDir, AtRiskFile), err)
	}
	return s, nil
}

func sameAtRisk(a, b []wire.AtRiskEndpoint) bool {
	return slices.EqualFunc(a, b, func(x, y wire.AtRiskEndpoint) bool {
		return x.EndpointID == y.EndpointID && x.Name == y.Name && x.Status == y.Status &&
			slices.Equal(x.MACs, y.MACs) && slices.Equal(x.IPs, y.IPs)
	})
}

// isolationTargets returns the addresses of red and missing endpoints, except
// this endpoint's own and the sensor's.
func isolationTargets(list []wire.AtRiskEndpoint, selfID string, keep map[netip.Addr]bool) ([]netip.Addr, []schema.MAC) {
	var ips []netip.Addr
	var macs []schema.MAC
	for _, e := range list {
		if e.EndpointID == selfID || (e.Status != schema.StatusRed && e.Status != schema.StatusMissing) {
			continue
		}
		for _, ip := range e.IPs {
			if !keep[ip.Unmap()] {
				ips = append(ips, ip.Unmap())
			}
		}
		macs = append(macs, e.MACs...)
	}
	return ips, macs
}

// runHook runs the --on-at-risk command with the list's path in
// TAPBEAT_AT_RISK_FILE.
func runHook(ctx context.Context, log *slog.Logger, cmdline, path string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", cmdline)
	cmd.Env = append(os.Environ(), "TAPBEAT_AT_RISK_FILE="+path)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		log.Warn("at-risk hook failed", "cmd", cmdline, "err", err, "output", string(truncate(string(out), 512)))
		return
	}
	log.Info("at-risk hook ran", "cmd", cmdline)
}
