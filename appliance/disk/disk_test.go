package disk

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// image makes an ext4 image file with mke2fs, as an administrator would
// prepare a data disk.
func image(t *testing.T, label string) string {
	t.Helper()
	testenv.RequireCommands(t, "mke2fs")
	p := filepath.Join(t.TempDir(), "disk.img")
	testenv.Run(t, "mke2fs", "-q", "-t", "ext4", "-L", label, p, "16M")
	return p
}

func TestExtLabel(t *testing.T) {
	p := image(t, "TAPBEAT-DATA")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, ok, err := ExtLabel(f)
	if err != nil || !ok || got != "TAPBEAT-DATA" {
		t.Fatalf("ExtLabel = %q %v %v", got, ok, err)
	}
	// A zeroed file and a short file hold no filesystem.
	z := filepath.Join(t.TempDir(), "zero.img")
	if err := os.WriteFile(z, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	zf, _ := os.Open(z)
	defer zf.Close()
	if _, ok, err := ExtLabel(zf); ok || err != nil {
		t.Fatalf("zero image: ok=%v err=%v", ok, err)
	}
	if empty, err := AllZero(zf, 1<<20); !empty || err != nil {
		t.Fatalf("zero image not empty: %v %v", empty, err)
	}
	if empty, err := AllZero(f, 1<<20); empty || err != nil {
		t.Fatalf("ext4 image counted empty: %v %v", empty, err)
	}
}

// fakeSys lays out a /sys/class/block and /dev pair backed by image files.
func fakeSys(t *testing.T, devs map[string]string, partitions map[string]string) (string, string) {
	t.Helper()
	sys, dev := t.TempDir(), t.TempDir()
	for name, img := range devs {
		d := filepath.Join(sys, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(img)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(d, "size"), strconv.FormatInt(st.Size()/512, 10))
		write(t, filepath.Join(d, "ro"), "0")
		if err := os.Symlink(img, filepath.Join(dev, name)); err != nil {
			t.Fatal(err)
		}
	}
	for part, parent := range partitions {
		d := filepath.Join(sys, parent, part)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(d, "partition"), "1")
	}
	return sys, dev
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFindLabelAndEmptyDisks(t *testing.T) {
	data := image(t, "TAPBEAT-DATA")
	other := image(t, "OTHER")
	blank := filepath.Join(t.TempDir(), "blank.img")
	if err := os.WriteFile(blank, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(blank, 128<<20); err != nil {
		t.Fatal(err)
	}
	partitioned := filepath.Join(t.TempDir(), "parted.img")
	if err := os.WriteFile(partitioned, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(partitioned, 128<<20); err != nil {
		t.Fatal(err)
	}
	sys, dev := fakeSys(t, map[string]string{"vda": other, "vdb": data, "vdc": blank, "vdd": partitioned}, map[string]string{"vdd1": "vdd"})
	devs, err := List(sys, dev)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 4 {
		t.Fatalf("List = %+v", devs)
	}
	d, ok, err := FindLabel(devs, "TAPBEAT-DATA")
	if err != nil || !ok || d.Name != "vdb" {
		t.Fatalf("FindLabel = %+v %v %v", d, ok, err)
	}
	if _, ok, _ := FindLabel(devs, "NOPE"); ok {
		t.Fatal("found a label no disk has")
	}
	empty, err := EmptyDisks(devs)
	if err != nil {
		t.Fatal(err)
	}
	// vda and vdb hold filesystems, vdd has a partition (even though its
	// first MiB is zero here): only vdc may be formatted.
	if len(empty) != 1 || empty[0].Name != "vdc" {
		t.Fatalf("EmptyDisks = %+v", empty)
	}
}
