package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tapbeat/tapbeat/appliance/config"
	"github.com/tapbeat/tapbeat/appliance/disk"
	"github.com/tapbeat/tapbeat/appliance/kmod"
	"github.com/tapbeat/tapbeat/appliance/netsetup"
	"github.com/tapbeat/tapbeat/appliance/power"
	"github.com/tapbeat/tapbeat/appliance/status"
	"github.com/tapbeat/tapbeat/appliance/supervise"
)

// Paths inside the initramfs and the running appliance.
const (
	dataDir      = "/data"
	tapbeatBin   = "/bin/tapbeat"
	modulesDir   = "/lib/modules"
	modulesList  = "/lib/modules/load.list"
	modulesAlias = "/lib/modules/modules.alias"
	statusTTY    = "/dev/tty1"
)

// appliance is the init's state.
type appliance struct {
	log     *slog.Logger
	console *lockedWriter
	start   time.Time

	mu      sync.Mutex
	notices []string
	nics    []status.NIC
	mgmt    string
	cfg     config.Config

	// tapbeatBin overrides the path of the tapbeat binary (tests).
	tapbeatBin string
}

// lockedWriter serialises writes from the init and the child's output.
type lockedWriter struct {
	mu sync.Mutex
	ws []io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.ws {
		_, _ = w.Write(p)
	}
	return len(p), nil
}

func (l *lockedWriter) add(w io.Writer) {
	l.mu.Lock()
	l.ws = append(l.ws, w)
	l.mu.Unlock()
}

func (a *appliance) notice(s string) {
	a.mu.Lock()
	a.notices = append(a.notices, s)
	a.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintln(a.console, "tapbeat-init: "+line)
	}
}

func run() error {
	a := &appliance{start: time.Now(), console: &lockedWriter{ws: []io.Writer{os.Stdout}}}
	a.log = slog.New(slog.NewTextHandler(a.console, &slog.HandlerOptions{Level: slog.LevelInfo})).With("src", "init")
	if os.Getpid() != 1 {
		return errors.New("must run as PID 1 (it mounts filesystems, loads modules and powers the machine off)")
	}
	// The kernel starts init with an almost empty environment.
	_ = os.Setenv("PATH", "/sbin:/bin")
	if err := mountKernelFS(); err != nil {
		a.log.Error("mounting kernel filesystems", "err", err)
	}
	reopenConsole(a)
	a.log.Info("tapbeat appliance starting", "version", version, "kernel_uptime", kernelUptime())
	// Ctrl-Alt-Del sends SIGINT to init instead of rebooting at once.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGPWR, syscall.SIGUSR1)
	go reapOrphans(ctx)

	if err := netsetup.DisableIPv6Default(); err != nil {
		a.log.Warn("IPv6 default not disabled", "err", err)
	}
	modStart := time.Now()
	if n, err := kmod.LoadAll(a.log, modulesDir, modulesList, modulesAlias); err != nil {
		a.log.Warn("some modules did not load", "loaded", n, "err", err)
	} else {
		a.log.Info("modules loaded", "count", n, "took", time.Since(modStart).Round(time.Millisecond))
	}
	go a.watchEntropy(ctx)
	if err := netsetup.LoopbackUp(); err != nil {
		a.log.Warn("loopback", "err", err)
	}
	cmdlineText, _ := os.ReadFile("/proc/cmdline")
	kargs, err := config.ParseCmdline(string(cmdlineText))
	if err != nil {
		a.notice(fmt.Sprintf("Kernel parameters: %v", err))
	}
	base, err := kargs.Apply(config.Config{})
	if err != nil {
		a.notice(fmt.Sprintf("Kernel parameters: %v", err))
	}

	powerPressed := power.Watch(ctx, a.log)
	mounted := a.mountData(ctx, base.Defaults().DataLabel, base.Format)

	cfg := base
	provisioned := false
	if mounted {
		_, err := os.Stat(filepath.Join(dataDir, provisionedMark))
		provisioned = err == nil
		a.recordBoot()
		fileCfg, found, err := config.Load(filepath.Join(dataDir, config.FileName))
		switch {
		case err != nil:
			a.notice(fmt.Sprintf("%v\nUsing the kernel parameters and defaults for the appliance settings until the file is fixed.", err))
		case found:
			if cfg, err = kargs.Apply(fileCfg); err != nil {
				a.notice(fmt.Sprintf("Kernel parameters: %v", err))
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		a.notice(fmt.Sprintf("%v\nFalling back to the kernel parameters and defaults.", err))
		cfg = base
		if err := cfg.Validate(); err != nil {
			a.notice(fmt.Sprintf("%v\nFalling back to defaults.", err))
			cfg = config.Config{}
		}
	}
	cfg = cfg.Defaults()
	a.cfg = cfg
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		a.log.Warn("hostname", "err", err)
	}
	if cfg.LogSyslog != "" {
		network, addr, _ := config.SplitURL(cfg.LogSyslog)
		a.console.add(newSyslogSink(ctx, network, addr))
		a.log.Info("log lines also go to syslog", "url", cfg.LogSyslog)
	}

	plan := a.setupNetwork(ctx, cfg)

	var sup *supervise.Supervisor
	var supDone chan struct{}
	if mounted && !provisioned && cfg.Org != "" {
		if err := a.firstBoot(ctx, cfg); err != nil {
			a.notice(fmt.Sprintf("First boot for %q: %v", cfg.Org, err))
		} else {
			provisioned = true
		}
	}
	switch {
	case !mounted:
		// mountData already explained what is missing.
	case !provisioned:
		a.notice(firstBootMessage(cfg.DataLabel, true))
	default:
		go a.showFirstAdminCode(ctx, cfg)
		sup = &supervise.Supervisor{
			Path: tapbeatBin,
			Args: cfg.RunArgs(dataDir, plan.CaptureNames()),
			Env:  []string{"PATH=/bin:/sbin", "HOME=" + dataDir, "TZ=UTC"},
			Log:  a.log,
			Output: func(line string) {
				fmt.Fprintln(a.console, "tapbeat: "+line)
			},
		}
		supDone = make(chan struct{})
		go func() {
			defer close(supDone)
			if err := sup.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				a.notice(fmt.Sprintf("tapbeat run cannot be started: %v", err))
			}
		}()
	}

	go a.statusLoop(ctx, sup)

	var action int
	select {
	case <-powerPressed:
		a.log.Info("power button pressed: shutting down")
		action = unix.LINUX_REBOOT_CMD_POWER_OFF
	case s := <-sigs:
		a.log.Info("signal received: shutting down", "signal", s.String())
		action = unix.LINUX_REBOOT_CMD_POWER_OFF
		if s == syscall.SIGINT || s == syscall.SIGUSR1 {
			action = unix.LINUX_REBOOT_CMD_RESTART
		}
	}
	stop()
	if supDone != nil {
		<-supDone
	}
	if mounted {
		if err := disk.Unmount(dataDir); err != nil {
			a.log.Error("data disk not unmounted cleanly", "err", err)
			unix.Sync()
		} else {
			a.log.Info("data disk unmounted")
		}
	}
	a.log.Info("halting", "poweroff", action == unix.LINUX_REBOOT_CMD_POWER_OFF)
	unix.Sync()
	if err := unix.Reboot(action); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}

// provisionedMark is the file tapbeat init creates in the sensor directory
// (the organisation's CA certificate): without it tapbeat run cannot start.
const provisionedMark = "ca.crt"

// watchEntropy says on the console when the kernel's random number
// generator is not ready: until it is, TLS, DHCP and tapbeat run block in
// getrandom. Real CPUs seed it from RDRAND at once; a virtual machine needs
// a virtio-rng device (or a CPU model with RDRAND).
func (a *appliance) watchEntropy(ctx context.Context) {
	buf := make([]byte, 1)
	start := time.Now()
	warned := false
	for ctx.Err() == nil {
		if _, err := unix.Getrandom(buf, unix.GRND_NONBLOCK); err == nil {
			if warned {
				a.log.Info("random number generator ready", "waited", time.Since(start).Round(time.Second))
			}
			return
		}
		if !warned && time.Since(start) > 2*time.Second {
			a.log.Warn("the kernel's random number generator is not ready yet: DHCP, TLS and tapbeat run wait for it (give a VM a virtio-rng device)")
			warned = true
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func firstBootMessage(label string, diskFound bool) string {
	var b strings.Builder
	if diskFound {
		b.WriteString("First boot: the data disk has no sensor directory (no ca.crt: tapbeat init).\n")
	} else {
		fmt.Fprintf(&b, "First boot: no data disk (no ext4 filesystem labelled %s).\n", label)
	}
	b.WriteString("The appliance keeps its configuration, keys and history on the data disk.\n")
	b.WriteString("To provide them, on a workstation:\n")
	b.WriteString("  tapbeat init --dir DIR --org ORG --lan SENSOR-ADDRESS:8347\n")
	b.WriteString("  tapbeat enroll --dir DIR --admin --name ADMIN\n")
	b.WriteString("  write DIR/appliance.toml (NICs by MAC, address; see ISO.md), then\n")
	fmt.Fprintf(&b, "  mke2fs -t ext4 -L %s -d DIR /dev/DISK   (a USB disk or the 2nd disk)\n", label)
	b.WriteString("and reboot. NIC settings can also be given as kernel parameters ('e' at the\n")
	b.WriteString("boot menu): tapbeat.mgmt=MAC tapbeat.ip=ADDR/PREFIX,GATEWAY|dhcp\n")
	b.WriteString("tapbeat.capture=MAC; tapbeat.format=1 formats the one empty disk;\n")
	b.WriteString("tapbeat.org=\"ORG\" sets the disk up on the box itself (CA, certificate,\n")
	b.WriteString("a one-time code to enroll the first administrator).\n")
	b.WriteString("Press the power button to shut down.")
	return b.String()
}

// recordBoot appends a line to boot.log on the data disk, so each boot and
// the version that ran it are kept across reboots and ISO upgrades.
func (a *appliance) recordBoot() {
	p := filepath.Join(dataDir, "boot.log")
	old, _ := os.ReadFile(p)
	n := strings.Count(string(old), "\n") + 1
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		a.log.Warn("boot record not written", "err", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "boot %d %s version %s\n", n, time.Now().UTC().Format(time.RFC3339), version)
	_ = f.Sync()
	a.log.Info("boot recorded on the data disk", "boot", n)
}

// mountKernelFS mounts /proc, /sys, /dev (devtmpfs), /dev/pts, /run and /tmp.
func mountKernelFS() error {
	mounts := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "mode=0620,ptmxmode=0666"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	}
	var errs []error
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err))
		}
	}
	return errors.Join(errs...)
}

// reopenConsole points stdio at /dev/console when the kernel could not
// open it before devtmpfs was mounted.
func reopenConsole(a *appliance) {
	if _, err := unix.FcntlInt(1, unix.F_GETFD, 0); err == nil {
		return
	}
	f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return
	}
	for _, fd := range []int{0, 1, 2} {
		_ = unix.Dup2(int(f.Fd()), fd)
	}
	a.log.Info("console reopened")
}

// mountData finds the data disk by label, waiting for slow devices, and
// formats the one empty disk when allowed.
func (a *appliance) mountData(ctx context.Context, label string, format bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	told := false
	for {
		devs, err := disk.List("/sys/class/block", "/dev")
		if err != nil {
			a.log.Warn("listing disks", "err", err)
		}
		d, found, err := disk.FindLabel(devs, label)
		if err != nil {
			a.log.Debug("some disks not readable", "err", err)
		}
		if found {
			if err := disk.Mount(d, dataDir); err != nil {
				a.notice(fmt.Sprintf("Data disk %s (label %s) found but not mounted: %v\nCheck it on another machine with e2fsck -f %s.", d.Path, label, err, d.Path))
				return false
			}
			a.log.Info("data disk mounted", "dev", d.Path, "label", label, "dir", dataDir)
			return true
		}
		if time.Now().After(deadline) {
			if format {
				empty, err := disk.EmptyDisks(devs)
				if err != nil {
					a.log.Warn("checking disks for emptiness", "err", err)
				}
				switch len(empty) {
				case 1:
					a.log.Info("formatting the empty disk as the data disk", "dev", empty[0].Path, "label", label)
					if err := disk.Format(ctx, empty[0], label); err != nil {
						a.notice(fmt.Sprintf("Formatting %s failed: %v", empty[0].Path, err))
						return false
					}
					format = false
					continue
				case 0:
					if !told {
						a.notice(fmt.Sprintf("tapbeat.format=1 was given but no empty disk was found (a disk counts as empty when it has no partitions and its first MiB is zero).\nWaiting for a disk labelled %s or an empty disk.", label))
						told = true
					}
				default:
					var names []string
					for _, d := range empty {
						names = append(names, d.Path)
					}
					a.notice(fmt.Sprintf("tapbeat.format=1 was given but several disks are empty (%s); formatting none.\nLabel the one to use: mke2fs -t ext4 -L %s /dev/DISK", strings.Join(names, ", "), label))
					return false
				}
			} else if !told {
				a.notice(fmt.Sprintf("%s\nWaiting for the data disk to appear (a USB disk can be plugged in now).", firstBootMessage(label, false)))
				told = true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// setupNetwork configures the capture NICs first, then the management NIC
// (DHCP in the background).
func (a *appliance) setupNetwork(ctx context.Context, cfg config.Config) netsetup.Plan {
	nics := a.waitNICs(cfg)
	plan, err := netsetup.MakePlan(nics, cfg.Mgmt.MAC, cfg.Capture)
	if err != nil {
		a.notice(fmt.Sprintf("Network: %v\nFix [appliance] mgmt/capture in tapbeat.toml or the tapbeat.mgmt/tapbeat.capture kernel parameters.", err))
		if plan.Mgmt.Name == "" {
			return plan
		}
	}
	var shown []status.NIC
	for _, n := range plan.Capture {
		if err := netsetup.SetupCapture(n.Name); err != nil {
			a.notice(fmt.Sprintf("Capture NIC: %v", err))
			continue
		}
		a.log.Info("capture NIC up (promiscuous, no address, ARP and IPv6 off)", "nic", n.Name, "mac", n.MAC.String())
		shown = append(shown, status.NIC{Role: "capture", Name: n.Name, MAC: n.MAC.String()})
	}
	a.mu.Lock()
	a.mgmt = plan.Mgmt.Name
	a.nics = append([]status.NIC{{Role: "mgmt", Name: plan.Mgmt.Name, MAC: plan.Mgmt.MAC.String()}}, shown...)
	a.mu.Unlock()
	setAddr := func(l netsetup.Lease) {
		a.mu.Lock()
		a.nics[0].Address = l.Address.String()
		if l.Gateway.IsValid() {
			a.nics[0].Address += " via " + l.Gateway.String()
		}
		a.mu.Unlock()
		if len(l.DNS) > 0 {
			if err := netsetup.WriteResolvConf("/etc/resolv.conf", l.DNS); err != nil {
				a.log.Warn("resolv.conf", "err", err)
			}
		}
		a.log.Info("management address", "nic", plan.Mgmt.Name, "address", l.Address.String(), "gateway", l.Gateway.String())
		a.followMgmtAddress(ctx, l.Address.Addr())
	}
	if !cfg.Mgmt.DHCP() {
		p, gw, _ := cfg.Mgmt.Static()
		l := netsetup.Lease{Address: p, Gateway: gw}
		for _, d := range cfg.Mgmt.DNS {
			if ad, err := netip.ParseAddr(d); err == nil {
				l.DNS = append(l.DNS, ad)
			}
		}
		if err := netsetup.SetupStatic(plan.Mgmt.Name, l); err != nil {
			a.notice(fmt.Sprintf("Management NIC: %v", err))
		} else {
			setAddr(l)
		}
		return plan
	}
	go func() {
		for attempt := 1; ctx.Err() == nil; attempt++ {
			a.log.Info("requesting a DHCP lease", "nic", plan.Mgmt.Name, "attempt", attempt)
			_, err := netsetup.DHCP(ctx, a.log, plan.Mgmt.Name, cfg.Hostname, 20*time.Second, setAddr)
			if err == nil {
				return
			}
			a.log.Warn("no DHCP lease yet, retrying", "nic", plan.Mgmt.Name, "attempt", attempt, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(supervise.Backoff(attempt, 5*time.Second, time.Minute)):
			}
		}
	}()
	return plan
}

// waitNICs waits for the NICs, which drivers probe in the background: until
// every configured MAC is present, or, with none configured, until the
// count has been steady for a second; at most 10 s.
func (a *appliance) waitNICs(cfg config.Config) []netsetup.NIC {
	want := append([]string(nil), cfg.Capture...)
	if cfg.Mgmt.MAC != "" {
		want = append(want, cfg.Mgmt.MAC)
	}
	deadline := time.Now().Add(10 * time.Second)
	var nics []netsetup.NIC
	steadySince, lastCount := time.Now(), -1
	for {
		var err error
		if nics, err = netsetup.PhysicalNICs("/sys/class/net"); err != nil {
			a.log.Warn("listing NICs", "err", err)
		}
		if len(nics) != lastCount {
			steadySince, lastCount = time.Now(), len(nics)
		}
		present := map[string]bool{}
		for _, n := range nics {
			present[n.MAC.String()] = true
		}
		missing := 0
		for _, m := range want {
			if hw, err := net.ParseMAC(m); err != nil || !present[hw.String()] {
				missing++
			}
		}
		switch {
		case len(want) > 0 && missing == 0:
			return nics
		case len(want) == 0 && len(nics) > 0 && time.Since(steadySince) >= time.Second:
			return nics
		case time.Now().After(deadline):
			return nics
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// statusLoop redraws the status screen on tty1 every 5 s and logs the
// sensor's state on the console when it changes.
func (a *appliance) statusLoop(ctx context.Context, sup *supervise.Supervisor) {
	var rates status.Rates
	alerts := status.AlertWindow{Window: time.Hour}
	lastLine := ""
	metricsURL := "http://" + a.cfg.Metrics + "/metrics"
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		now := time.Now()
		a.mu.Lock()
		snap := status.Snapshot{
			Time: now, Hostname: a.cfg.Hostname, Version: version, Uptime: now.Sub(a.start),
			Notices: append([]string(nil), a.notices...),
			NICs:    append([]status.NIC(nil), a.nics...),
		}
		a.mu.Unlock()
		for i := range snap.NICs {
			if err := status.NICCounters("/sys/class/net", &snap.NICs[i]); err == nil {
				rates.Update(now, &snap.NICs[i])
			}
		}
		if sup != nil {
			snap.Daemon = sup.State()
			if snap.Daemon.Ready && a.cfg.Metrics != "" {
				if s, total, err := status.Scrape(ctx, metricsURL); err == nil {
					s.Alerts1h = alerts.Add(now, total)
					snap.Sensor = &s
				}
			}
		}
		if f, err := os.OpenFile(statusTTY, os.O_WRONLY, 0); err == nil {
			_, _ = io.WriteString(f, "\x1b[H\x1b[2J")
			_ = status.Render(f, snap)
			f.Close()
		}
		line := summary(snap)
		if line != lastLine {
			fmt.Fprintln(a.console, "tapbeat-init: status: "+line)
			lastLine = line
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// summary is the one-line status logged on the serial console when it
// changes (rates are left out so it does not change every tick).
func summary(s status.Snapshot) string {
	var parts []string
	for _, n := range s.NICs {
		if n.Role == "mgmt" {
			parts = append(parts, fmt.Sprintf("mgmt %s %s", n.Name, n.Address))
		} else {
			parts = append(parts, fmt.Sprintf("capture %s rx=%t tx=%d", n.Name, n.RxPackets > 0, n.TxPackets))
		}
	}
	d := s.Daemon
	switch {
	case d.Ready:
		parts = append(parts, "sensor ready")
	case d.Running:
		parts = append(parts, "sensor starting")
	case d.Starts > 0:
		parts = append(parts, "sensor down")
	}
	if s.Sensor != nil {
		var eps []string
		for st, n := range s.Sensor.Endpoints {
			if n > 0 {
				eps = append(eps, fmt.Sprintf("%s=%d", st, n))
			}
		}
		sort.Strings(eps)
		parts = append(parts, fmt.Sprintf("endpoints [%s] alerts/1h %d", strings.Join(eps, " "), s.Sensor.Alerts1h))
	}
	return strings.Join(parts, "; ")
}

// reapOrphans collects zombie processes re-parented to PID 1. A zombie is
// reaped only when seen in two scans 10 s apart, so the supervised child,
// whose exit status the supervisor collects itself within moments, is never
// taken from it.
func reapOrphans(ctx context.Context) {
	seen := map[int]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
		ents, _ := os.ReadDir("/proc")
		now := map[int]bool{}
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == 1 {
				continue
			}
			st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) S ppid ...
			i := strings.LastIndexByte(string(st), ')')
			if i < 0 || i+2 >= len(st) || st[i+2] != 'Z' {
				continue
			}
			if seen[pid] {
				var ws unix.WaitStatus
				_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
				continue
			}
			now[pid] = true
		}
		seen = now
	}
}

// kernelUptime is how long the kernel has been running (from /proc/uptime),
// to tell kernel and initramfs time from firmware and boot loader time.
func kernelUptime() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	if err != nil {
		return 0
	}
	return time.Duration(f * float64(time.Second)).Round(10 * time.Millisecond)
}
