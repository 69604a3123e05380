package isotest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// vm is one qemu process booting the appliance.
type vm struct {
	t       testing.TB
	cmd     *exec.Cmd
	console string
	qmp     string
	started time.Time
	exited  chan struct{}
	err     error
}

// machine describes how to boot.
type machine struct {
	iso      string
	dataDisk string
	uefi     bool // UEFI (OVMF) with the ISO as a raw USB stick; else BIOS from CD
	// direct boots kernel and initrd straight from qemu (-kernel/-initrd),
	// skipping firmware, GRUB and the ISO: the reference for boot times.
	kernel, initrd string
	// cmdline is appended to the kernel command line of a direct boot.
	cmdline string
	mgmtMAC string
	capMAC  string
	fwd     map[int]int // host loopback port -> guest port
	capTo   int         // UDP port on 127.0.0.1 where qemu sends the capture NIC's frames
	capFrom int         // UDP port qemu receives the capture NIC's frames on
}

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

func boot(t testing.TB, m machine) *vm {
	t.Helper()
	dir := t.TempDir()
	v := &vm{t: t, console: filepath.Join(dir, "console.log"), qmp: filepath.Join(dir, "qmp.sock"), exited: make(chan struct{})}
	var fwd []string
	for h, g := range m.fwd {
		fwd = append(fwd, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:%d", h, g))
	}
	args := []string{
		"-accel", "tcg", "-m", "768", "-smp", "2",
		"-display", "none", "-monitor", "none", "-no-reboot",
		"-serial", "file:" + v.console,
		"-qmp", "unix:" + v.qmp + ",server=on,wait=off",
		"-device", "virtio-rng-pci",
		"-drive", "file=" + m.dataDisk + ",if=virtio,format=raw",
		"-netdev", strings.Join(append([]string{"user,id=mgmt"}, fwd...), ","),
		"-device", "virtio-net-pci,netdev=mgmt,mac=" + m.mgmtMAC,
		"-netdev", fmt.Sprintf("socket,id=cap,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d", m.capTo, m.capFrom),
		"-device", "e1000,netdev=cap,mac=" + m.capMAC,
	}
	switch {
	case m.kernel != "":
		args = append(args, "-kernel", m.kernel, "-initrd", m.initrd,
			"-append", strings.TrimSpace("console=ttyS0,115200 loglevel=3 panic=10 "+m.cmdline))
	case m.uefi:
		vars := filepath.Join(dir, "OVMF_VARS.fd")
		copyFile(t, ovmfVars, vars)
		stick := filepath.Join(dir, "stick.img")
		copyFile(t, m.iso, stick)
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,file="+vars,
			"-device", "qemu-xhci",
			"-drive", "if=none,id=stick,format=raw,file="+stick,
			"-device", "usb-storage,drive=stick,bootindex=0",
		)
	default:
		args = append(args, "-drive", "file="+m.iso+",media=cdrom,readonly=on", "-boot", "d")
	}
	v.cmd = exec.Command("qemu-system-x86_64", args...)
	out, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stdout, v.cmd.Stderr = out, out
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
	}
	go func() {
		v.err = v.cmd.Wait()
		out.Close()
		close(v.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-v.exited:
		default:
			_ = v.cmd.Process.Kill()
			<-v.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(v.console)
			t.Logf("serial console:\n%s", b)
			q, _ := os.ReadFile(filepath.Join(dir, "qemu.log"))
			t.Logf("qemu output:\n%s", q)
		}
	})
	return v
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// text returns the console output so far.
func (v *vm) text() string {
	b, _ := os.ReadFile(v.console)
	return string(b)
}

// kernelUptime returns the kernel uptime the init logged when it started.
func (v *vm) kernelUptime() time.Duration { return v.duration("", "kernel_uptime=") }

// duration returns the duration logged as key (e.g. "took=") on the first
// console line containing msg.
func (v *vm) duration(msg, key string) time.Duration {
	for _, line := range strings.Split(v.text(), "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		_, rest, ok := strings.Cut(line, key)
		if !ok {
			continue
		}
		d, _ := time.ParseDuration(strings.Fields(rest)[0])
		return d
	}
	return 0
}

// waitFor waits until the console shows s, and returns how long after qemu
// started that was first seen.
func (v *vm) waitFor(s string, timeout time.Duration) time.Duration {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if strings.Contains(v.text(), s) {
			return time.Since(v.started)
		}
		select {
		case <-v.exited:
			v.t.Fatalf("qemu exited (%v) before the console showed %q", v.err, s)
		default:
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("console did not show %q within %s", s, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// powerButton presses the ACPI power button through QMP.
func (v *vm) powerButton() {
	v.t.Helper()
	c, err := net.DialTimeout("unix", v.qmp, 5*time.Second)
	if err != nil {
		v.t.Fatalf("qmp: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // greeting
		v.t.Fatalf("qmp greeting: %v", err)
	}
	for _, cmd := range []string{"qmp_capabilities", "system_powerdown"} {
		b, _ := json.Marshal(map[string]string{"execute": cmd})
		if _, err := c.Write(append(b, '\n')); err != nil {
			v.t.Fatalf("qmp %s: %v", cmd, err)
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				v.t.Fatalf("qmp %s: %v", cmd, err)
			}
			if strings.Contains(line, `"return"`) {
				break
			}
			if strings.Contains(line, `"error"`) {
				v.t.Fatalf("qmp %s: %s", cmd, line)
			}
		}
	}
}

// waitExit waits for qemu to exit (the guest powered off).
func (v *vm) waitExit(timeout time.Duration) {
	v.t.Helper()
	select {
	case <-v.exited:
		if v.err != nil {
			v.t.Fatalf("qemu exited with %v", v.err)
		}
	case <-time.After(timeout):
		v.t.Fatalf("the guest did not power off within %s", timeout)
	}
}

// freePorts returns n distinct loopback TCP or UDP ports that are free
// right now: all are held open until every one is chosen, so two calls
// cannot hand out the same port.
func freePorts(t testing.TB, network string, n int) []int {
	t.Helper()
	var ports []int
	for i := 0; i < n; i++ {
		switch network {
		case "udp":
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
		default:
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		}
	}
	return ports
}

// txWatch collects the datagrams sent to a loopback UDP port: qemu's output
// for the capture NIC (every one would be a frame the appliance transmitted
// on the mirror port), or syslog messages.
type txWatch struct {
	conn   net.PacketConn
	mu     sync.Mutex
	frames [][]byte
}

func watchTx(t testing.TB, port int) *txWatch {
	t.Helper()
	c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("listen for capture NIC output: %v", err)
	}
	w := &txWatch{conn: c}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			w.mu.Lock()
			w.frames = append(w.frames, append([]byte(nil), buf[:n]...))
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.Close() })
	return w
}

func (w *txWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.frames)
}

// text returns everything received, one datagram per line.
func (w *txWatch) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, f := range w.frames {
		b.Write(f)
		b.WriteByte('\n')
	}
	return b.String()
}

func (w *txWatch) describe() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s []string
	for i, f := range w.frames {
		if i == 5 {
			s = append(s, "...")
			break
		}
		s = append(s, fmt.Sprintf("% x", f[:min(len(f), 34)]))
	}
	return strings.Join(s, "\n")
}
