package disk

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// Format makes an ext4 filesystem labelled label on dev with mke2fs (found
// on PATH). It refuses a device that is not empty.
func Format(ctx context.Context, d Device, label string) error {
	f, err := os.Open(d.Path)
	if err != nil {
		return fmt.Errorf("format %s: %w", d.Path, err)
	}
	zero, err := AllZero(f, 1<<20)
	f.Close()
	if err != nil {
		return fmt.Errorf("format %s: %w", d.Path, err)
	}
	if !zero {
		return fmt.Errorf("format %s: the disk is not empty; refusing to overwrite it", d.Path)
	}
	out, err := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-L", label, d.Path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mke2fs %s: %w: %s", d.Path, err, out)
	}
	return nil
}

// Mount mounts the ext4 filesystem on dev at dir (created if needed).
func Mount(d Device, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", d.Path, err)
	}
	if err := unix.Mount(d.Path, dir, "ext4", unix.MS_NOATIME|unix.MS_NODEV|unix.MS_NOSUID, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", d.Path, dir, err)
	}
	return nil
}

// Unmount syncs and unmounts dir.
func Unmount(dir string) error {
	unix.Sync()
	if err := unix.Unmount(dir, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}
