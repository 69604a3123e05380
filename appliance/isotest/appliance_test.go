package isotest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

const (
	mgmtMAC  = "52:54:00:7b:00:01"
	capMAC   = "52:54:00:7b:00:02"
	strayMAC = "02:42:ac:11:00:99" // the unmanaged station whose frames the test injects
)

// repoRoot is the module root (two levels up from this package).
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

// image returns the ISO to boot and the tapbeat binary inside it: the ones
// named by TAPBEAT_ISO and TAPBEAT_BIN (make iso-test), or freshly built
// into build/appliance.
func image(t testing.TB) (iso, tapbeat string) {
	t.Helper()
	imageOnce.Do(func() { imageISO, imageTapbeat = buildImage(t) })
	if imageISO == "" {
		t.Fatal("the ISO could not be built (see the first test's failure)")
	}
	return imageISO, imageTapbeat
}

// The ISO is built once per test binary.
var (
	imageOnce              sync.Once
	imageISO, imageTapbeat string
)

func buildImage(t testing.TB) (iso, tapbeat string) {
	t.Helper()
	root := repoRoot(t)
	if iso = os.Getenv("TAPBEAT_ISO"); iso != "" {
		tapbeat = os.Getenv("TAPBEAT_BIN")
		if tapbeat == "" {
			tapbeat = filepath.Join(root, "bin", "tapbeat")
		}
		return iso, tapbeat
	}
	testenv.RequireCommands(t, "apt-get", "dpkg-deb", "depmod", "modprobe", "cpio", "zstd", "grub-mkrescue", "xorriso", "mformat", "mke2fs")
	out := filepath.Join(root, "build", "appliance")
	tapbeat = filepath.Join(out, "tapbeat")
	start := time.Now()
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", tapbeat, "./cmd/tapbeat")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tapbeat: %v\n%s", err, b)
	}
	mk := exec.Command(filepath.Join(root, "appliance", "build.sh"), out, tapbeat)
	mk.Dir = root
	b, err := mk.CombinedOutput()
	if err != nil {
		t.Fatalf("build the ISO: %v\n%s", err, b)
	}
	t.Logf("ISO built in %s: %s", time.Since(start).Round(time.Second), strings.TrimSpace(lastLine(string(b))))
	return filepath.Join(out, "tapbeat.iso"), tapbeat
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// daemonReady reports whether this tapbeat has the run, init and enroll
// commands the end-to-end checks drive.
func daemonReady(t testing.TB, tapbeat string) bool {
	out, _ := exec.Command(tapbeat, "--help").CombinedOutput()
	for _, c := range []string{"run", "init", "enroll"} {
		if !strings.Contains(string(out), "\n   "+c+" ") && !strings.Contains(string(out), "\n   "+c+",") {
			t.Logf("tapbeat has no %q command yet: the checks through the daemon are not run", c)
			return false
		}
	}
	return true
}

func requireFirmware(t testing.TB) {
	t.Helper()
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			if testenv.Strict() {
				t.Fatalf("[privileged] needs %s (apt-get install ovmf)", f)
			}
			t.Skipf("[privileged] needs %s (apt-get install ovmf)", f)
		}
	}
}

// TestAppliance boots the ISO from CD under BIOS, checks it, presses the
// power button, then boots the same data disk from the ISO written raw to a
// USB stick under UEFI and checks that the data survived.
func TestAppliance(t *testing.T) {
	testenv.RequireCommands(t, "qemu-system-x86_64", "mke2fs", "e2fsck", "debugfs")
	requireFirmware(t)
	iso, tapbeat := image(t)
	st, err := os.Stat(iso)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ISO %s: %.1f MiB", iso, float64(st.Size())/(1<<20))
	if st.Size() > 48<<20 {
		t.Errorf("ISO is %.1f MiB, over the 48 MiB target", float64(st.Size())/(1<<20))
	}
	daemon := daemonReady(t, tapbeat)

	work := t.TempDir()
	dir := filepath.Join(work, "sensor")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var e2e *endToEnd
	if daemon {
		e2e = provision(t, tapbeat, dir)
	} else {
		// Stands in for tapbeat init's CA certificate so the init starts
		// tapbeat run, which exits at once: supervision is still shown.
		if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("placeholder\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Log lines reach syslog on the host: qemu's user network maps
	// 10.0.2.2 to the host's loopback.
	udp := freePorts(t, "udp", 3)
	logs := watchTx(t, udp[0])
	logPort := logs.conn.LocalAddr().(*net.UDPAddr).Port
	writeFile(t, filepath.Join(dir, "appliance.toml"), `# written by the qemu test
log_syslog = "udp://10.0.2.2:`+strconv.Itoa(logPort)+`"
capture = ["`+capMAC+`"]
[mgmt]
mac = "`+mgmtMAC+`"
address = "dhcp"
`)
	disk := filepath.Join(work, "data.img")
	testenv.Run(t, "mke2fs", "-q", "-t", "ext4", "-L", "TAPBEAT-DATA", "-d", dir, disk, "2G")

	tcp := freePorts(t, "tcp", 2)
	lanPort, adminPort := tcp[0], tcp[1]
	capTo, capFrom := udp[1], udp[2]
	tx := watchTx(t, capTo)
	m := machine{
		iso: iso, dataDisk: disk, mgmtMAC: mgmtMAC, capMAC: capMAC,
		fwd:   map[int]int{lanPort: 8347, adminPort: 8348},
		capTo: capTo, capFrom: capFrom,
	}

	for i, mode := range []string{"bios", "uefi"} {
		m.uefi = mode == "uefi"
		ok := t.Run(mode, func(t *testing.T) {
			v := boot(t, m)
			ready := "tapbeat run started"
			if daemon {
				ready = "sensor ready"
			}
			tInit := v.waitFor("tapbeat appliance starting", 90*time.Second)
			tReady := v.waitFor(ready, 90*time.Second)
			load, _ := os.ReadFile("/proc/loadavg")
			t.Logf("%s boot: init at %.1f s (kernel up %.1f s), modules %.1f s, %q at %.1f s (TCG; host load %s)",
				mode, tInit.Seconds(), v.kernelUptime().Seconds(), v.duration(`msg="modules loaded"`, "took=").Seconds(),
				ready, tReady.Seconds(), strings.Join(strings.Fields(string(load))[:3], " "))
			con := v.text()
			for _, want := range []string{
				"data disk mounted",
				"capture NIC up (promiscuous, no address, ARP and IPv6 off)\" src=init nic=",
				"mac=" + capMAC,
				"boot recorded on the data disk\" src=init boot=" + string(rune('1'+i)),
			} {
				if !strings.Contains(con, want) {
					t.Errorf("console lacks %q", want)
				}
			}
			tDHCP := v.waitFor("management address\" src=init nic=eth0 address=10.0.2.15/24 gateway=10.0.2.2", 60*time.Second)
			t.Logf("%s boot: DHCP lease at %.1f s", mode, tDHCP.Seconds())
			poll(t, "log lines on the host's syslog", 30*time.Second, func() error {
				if got := logs.text(); !strings.Contains(got, "tapbeat run started") || !strings.Contains(got, ready) {
					return fmt.Errorf("syslog has not seen %q and %q yet", "tapbeat run started", ready)
				}
				return nil
			})
			// Frames from a station no endpoint claims, on the capture NIC.
			inject(t, capFrom, 40)
			v.waitFor("rx=true", 30*time.Second)
			if daemon {
				e2e.check(t, v, lanPort, adminPort, capFrom, i > 0, v.started)
			} else {
				// Supervision: tapbeat run exits at once and is restarted with backoff.
				v.waitFor("tapbeat run exited, restarting", 30*time.Second)
				v.waitFor("restarts=2", 30*time.Second)
			}
			if n := tx.count(); n != 0 {
				t.Errorf("the capture NIC transmitted %d frames:\n%s", n, tx.describe())
			}
			v.powerButton()
			v.waitExit(90 * time.Second)
			con = v.text()
			for _, want := range []string{"power button pressed: shutting down", "data disk unmounted", "halting"} {
				if !strings.Contains(con, want) {
					t.Errorf("console lacks %q after the power button", want)
				}
			}
			if daemon && !strings.Contains(con, "tapbeat run stopped") {
				t.Errorf("console lacks %q: the daemon was not stopped before power-off", "tapbeat run stopped")
			}
			// A clean unmount leaves a filesystem e2fsck finds clean.
			if out, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput(); err != nil {
				t.Errorf("data disk not clean after power-off: %v\n%s", err, out)
			}
			out, err := exec.Command("debugfs", "-R", "cat /boot.log", disk).Output()
			if err != nil {
				t.Fatalf("read boot.log from the data disk: %v", err)
			}
			log := string(out)
			if got := strings.Count(log, "boot "); got != i+1 {
				t.Errorf("boot.log has %d boots after boot %d:\n%s", got, i+1, log)
			}
		})
		if !ok {
			break
		}
	}
	if n := tx.count(); n != 0 {
		t.Errorf("the capture NIC transmitted %d frames in total", n)
	}
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// inject sends n Ethernet frames (IPv4/UDP from strayMAC) to the capture
// NIC through qemu's socket backend: one datagram is one frame.
func inject(t *testing.T, port, n int) {
	t.Helper()
	if err := injectQuiet(port, n); err != nil {
		t.Fatal(err)
	}
}

// injectQuiet is inject for background goroutines: it returns the error.
func injectQuiet(port, n int) error {
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	defer c.Close()
	src, _ := net.ParseMAC(strayMAC)
	for i := 0; i < n; i++ {
		eth := &layers.Ethernet{SrcMAC: src, DstMAC: net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0x00, 0x01}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(192, 0, 2, 99), DstIP: net.IPv4(192, 0, 2, 1)}
		udp := &layers.UDP{SrcPort: layers.UDPPort(40000 + i), DstPort: 53}
		_ = udp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload("tapbeat-test")); err != nil {
			return err
		}
		if _, err := c.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("inject frame: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// TestFirstBootFormats boots kernel and initramfs with tapbeat.format=1 and
// an empty disk: the init formats it with the mke2fs it carries, mounts it,
// and, finding no sensor directory, prints the first-boot instructions
// instead of starting tapbeat run. Kernel parameters cannot be passed
// through the ISO's menu from a test, so this boot is direct.
func TestFirstBootFormats(t *testing.T) {
	testenv.RequireCommands(t, "qemu-system-x86_64", "e2fsck", "dumpe2fs")
	iso, _ := image(t)
	bootDir := filepath.Join(filepath.Dir(iso), "iso", "boot")
	disk := filepath.Join(t.TempDir(), "empty.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 1<<30); err != nil {
		t.Fatal(err)
	}
	udp := freePorts(t, "udp", 2)
	capTo, capFrom := udp[0], udp[1]
	tx := watchTx(t, capTo)
	v := boot(t, machine{
		kernel: filepath.Join(bootDir, "vmlinuz"), initrd: filepath.Join(bootDir, "initrd.img"),
		cmdline:  "tapbeat.format=1 tapbeat.mgmt=" + mgmtMAC + " tapbeat.ip=10.0.2.15/24,10.0.2.2 tapbeat.capture=" + capMAC,
		dataDisk: disk, mgmtMAC: mgmtMAC, capMAC: capMAC, fwd: map[int]int{}, capTo: capTo, capFrom: capFrom,
	})
	v.waitFor("formatting the empty disk as the data disk", 90*time.Second)
	v.waitFor("data disk mounted", 60*time.Second)
	v.waitFor("First boot: the data disk has no sensor directory", 30*time.Second)
	v.waitFor("management address\" src=init nic=eth0 address=10.0.2.15/24 gateway=10.0.2.2", 30*time.Second)
	if strings.Contains(v.text(), "tapbeat run started") {
		t.Error("tapbeat run was started without a sensor directory")
	}
	v.powerButton()
	v.waitExit(90 * time.Second)
	if n := tx.count(); n != 0 {
		t.Errorf("the capture NIC transmitted %d frames:\n%s", n, tx.describe())
	}
	if out, err := exec.Command("e2fsck", "-fn", disk).CombinedOutput(); err != nil {
		t.Errorf("formatted disk not clean: %v\n%s", err, out)
	}
	out, err := exec.Command("dumpe2fs", "-h", disk).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "TAPBEAT-DATA") || !strings.Contains(string(out), "has_journal") {
		t.Errorf("disk is not an ext4 filesystem labelled TAPBEAT-DATA: %v\n%s", err, out)
	}
}
