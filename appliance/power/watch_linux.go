package power

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Watch opens every /dev/input/event* whose device has a power key (the
// ACPI "Power Button" devices, keyboards) and sends on the returned channel
// when one is pressed. Devices that appear later (a module loaded late) are
// picked up by rescanning every few seconds until ctx ends.
func Watch(ctx context.Context, log *slog.Logger) <-chan struct{} {
	out := make(chan struct{}, 1)
	go func() {
		watched := map[string]bool{}
		for {
			paths, _ := filepath.Glob("/dev/input/event*")
			for _, p := range paths {
				if watched[p] || !hasPowerKey(filepath.Base(p)) {
					continue
				}
				f, err := os.Open(p)
				if err != nil {
					log.Warn("cannot watch input device", "dev", p, "err", err)
					continue
				}
				watched[p] = true
				log.Info("watching power button", "dev", p, "name", deviceName(filepath.Base(p)))
				go func() {
					defer f.Close()
					go func() { <-ctx.Done(); f.Close() }()
					if err := WaitPress(f); err == nil {
						select {
						case out <- struct{}{}:
						default:
						}
					}
				}()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(3 * time.Second):
			}
		}
	}()
	return out
}

func deviceName(ev string) string {
	b, _ := os.ReadFile("/sys/class/input/" + ev + "/device/name")
	return strings.TrimSpace(string(b))
}

// hasPowerKey reads the device's key capability bitmap from sysfs
// (capabilities/key, hex words, most significant first).
func hasPowerKey(ev string) bool {
	b, err := os.ReadFile("/sys/class/input/" + ev + "/device/capabilities/key")
	if err != nil {
		return false
	}
	return HasKey(string(b), keyPower)
}
