package isotest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// BenchmarkBoot measures the time from starting qemu (TCG) to the daemon's
// "sensor ready" line: booting kernel and initramfs straight from qemu
// (-kernel/-initrd, the reference: no firmware, no GRUB, no ISO), from the
// ISO as a CD under BIOS, and from the ISO as a USB stick under UEFI. Each
// sub-benchmark reports seconds per boot and the ratio to the reference.
//
//	go test -run '^$' -bench Boot -benchtime 1x ./appliance/isotest/
func BenchmarkBoot(b *testing.B) {
	testenv.RequireCommands(b, "qemu-system-x86_64", "mke2fs")
	requireFirmware(b)
	iso, tapbeat := image(b)
	if !daemonReady(b, tapbeat) {
		b.Skip("tapbeat has no run command: nothing prints sensor ready")
	}
	bootDir := filepath.Join(filepath.Dir(iso), "iso", "boot")
	kernel, initrd := filepath.Join(bootDir, "vmlinuz"), filepath.Join(bootDir, "initrd.img")
	for _, f := range []string{kernel, initrd} {
		if _, err := os.Stat(f); err != nil {
			b.Fatalf("the reference boot needs the ISO's build tree: %v", err)
		}
	}
	work := b.TempDir()
	dir := filepath.Join(work, "sensor")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	provision(b, tapbeat, dir)
	writeFile(b, filepath.Join(dir, "appliance.toml"), "capture = [\""+capMAC+"\"]\n[mgmt]\nmac = \""+mgmtMAC+"\"\n")

	var reference float64
	for _, mode := range []string{"direct", "bios", "uefi"} {
		b.Run(mode, func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				disk := filepath.Join(b.TempDir(), "data.img")
				testenv.Run(b, "mke2fs", "-q", "-t", "ext4", "-L", "TAPBEAT-DATA", "-d", dir, disk, "2G")
				udp := freePorts(b, "udp", 2)
				m := machine{
					iso: iso, dataDisk: disk, mgmtMAC: mgmtMAC, capMAC: capMAC, uefi: mode == "uefi",
					fwd:   map[int]int{freePorts(b, "tcp", 1)[0]: 8347},
					capTo: udp[0], capFrom: udp[1],
				}
				if mode == "direct" {
					m.kernel, m.initrd = kernel, initrd
				}
				v := boot(b, m)
				total += v.waitFor("sensor ready", 3*time.Minute)
				v.powerButton()
				v.waitExit(2 * time.Minute)
			}
			mean := total.Seconds() / float64(b.N)
			b.ReportMetric(mean, "s/boot")
			if mode == "direct" {
				reference = mean
			} else if reference > 0 {
				b.ReportMetric(mean/reference, "x-direct")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}
