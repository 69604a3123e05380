package disk

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// TestFormatMountUnmount formats an empty loop device, finds it by label,
// mounts it, writes a file, unmounts, and refuses to format it again.
func TestFormatMountUnmount(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "losetup", "mke2fs")
	img := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 96<<20); err != nil {
		t.Fatal(err)
	}
	loop := testenv.Run(t, "losetup", "--find", "--show", img)
	t.Cleanup(func() { testenv.Run(t, "losetup", "-d", loop) })
	d := Device{Name: filepath.Base(loop), Path: loop, Size: 96 << 20}
	if err := Format(context.Background(), d, "TB-TEST"); err != nil {
		t.Fatal(err)
	}
	got, ok, err := FindLabel([]Device{d}, "TB-TEST")
	if err != nil || !ok || got.Path != loop {
		t.Fatalf("formatted disk not found by label: %v %v", ok, err)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := Mount(d, mnt); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "kept"), []byte("yes"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	if err := Format(context.Background(), d, "TB-TEST"); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("formatting a used disk: %v", err)
	}
	if err := Mount(d, mnt); err != nil {
		t.Fatal(err)
	}
	defer Unmount(mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "kept")); err != nil || string(b) != "yes" {
		t.Fatalf("file not kept across mounts: %q %v", b, err)
	}
}
