package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/appliance/config"
)

// lanFollowsMgmt, on the data disk, says the LAN zone was set up by the
// first boot for the management address, and holds that address: when DHCP
// hands out another, the sensor's certificate is re-issued for it (as
// `tapbeat config set lan` does; connected agents learn it). A LAN zone an
// administrator set up by hand is never changed.
const lanFollowsMgmt = "lan-follows-mgmt"

// mgmtAddress waits for the management NIC's address.
func (a *appliance) mgmtAddress(ctx context.Context) (netip.Addr, error) {
	for {
		a.mu.Lock()
		var s string
		if len(a.nics) > 0 {
			s = a.nics[0].Address
		}
		a.mu.Unlock()
		// "ADDR/PREFIX via GATEWAY" once configured, empty before.
		if f := strings.Fields(s); len(f) > 0 {
			if p, err := netip.ParsePrefix(f[0]); err == nil {
				return p.Addr(), nil
			}
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// firstBoot creates the sensor directory on an unprovisioned data disk for
// cfg.Org: the organisation's CA and the LAN-zone certificate for the
// management address (tapbeat init).
func (a *appliance) firstBoot(ctx context.Context, cfg config.Config) error {
	a.log.Info("first boot: waiting for the management address to create the sensor directory", "org", cfg.Org)
	addr, err := a.mgmtAddress(ctx)
	if err != nil {
		return err
	}
	out, err := a.tapbeat(ctx, "init", "--dir", dataDir, "--org", cfg.Org, "--lan", addr.String())
	if err != nil {
		return fmt.Errorf("tapbeat init: %w\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(dataDir, lanFollowsMgmt), []byte(addr.String()+"\n"), 0o600); err != nil {
		return fmt.Errorf("first boot: %w", err)
	}
	a.log.Info("first boot: sensor directory created", "org", cfg.Org, "lan", addr.String())
	return nil
}

// showFirstAdminCode shows, while no administrator is enrolled, a fresh
// one-time administrator code and the pin of the admin API's certificate,
// and the command that enrolls the first administrator with them.
func (a *appliance) showFirstAdminCode(ctx context.Context, cfg config.Config) {
	out, err := a.tapbeat(ctx, "enroll-code", "--dir", dataDir, "--first")
	if err != nil {
		if !strings.Contains(out, "already enrolled") {
			a.notice(fmt.Sprintf("No enrollment code: %v\n%s", err, out))
		}
		return
	}
	var code, pin string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "code: "); ok {
			code, _, _ = strings.Cut(v, " ")
		}
		if v, ok := strings.CutPrefix(line, "pin:  "); ok {
			pin = strings.TrimSpace(v)
		}
	}
	host := "ADDRESS"
	if addr, err := a.mgmtAddress(ctx); err == nil {
		host = addr.String()
	}
	_, port, err := net.SplitHostPort(cfg.Defaults().AdminListen)
	if err != nil {
		port = "8348"
	}
	a.notice(fmt.Sprintf("No administrator yet. Enroll the first one from a workstation within the hour:\n"+
		"  tapbeat enroll --admin --name NAME --server https://%s \\\n"+
		"    --code %s \\\n"+
		"    --pin %s\n"+
		"enrollment code: %s (single use; a new one each boot until an admin exists)\n"+
		"admin certificate pin: %s", net.JoinHostPort(host, port), code, pin, code, pin))
}

// followMgmtAddress re-issues the LAN-zone certificate for a new management
// address when the first boot set the LAN zone up for the old one.
func (a *appliance) followMgmtAddress(ctx context.Context, addr netip.Addr) {
	a.followAddress(ctx, dataDir, addr)
}

func (a *appliance) followAddress(ctx context.Context, dir string, addr netip.Addr) {
	p := filepath.Join(dir, lanFollowsMgmt)
	old, err := os.ReadFile(p)
	if err != nil || strings.TrimSpace(string(old)) == addr.String() {
		return
	}
	out, err := a.tapbeat(ctx, "config", "set", "--dir", dir, "lan", addr.String())
	if err != nil {
		a.notice(fmt.Sprintf("The management address changed to %s but the LAN zone did not follow: %v\n%s", addr, err, out))
		return
	}
	if err := os.WriteFile(p, []byte(addr.String()+"\n"), 0o600); err != nil {
		a.log.Warn("lan-follows-mgmt", "err", err)
	}
	a.log.Info("management address changed: LAN-zone certificate re-issued", "from", strings.TrimSpace(string(old)), "to", addr.String())
}

// tapbeat runs a tapbeat command and returns its combined output.
func (a *appliance) tapbeat(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	bin := a.tapbeatBin
	if bin == "" {
		bin = tapbeatBin
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=/bin:/sbin", "HOME=" + dataDir, "TZ=UTC"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
