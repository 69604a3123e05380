// Package disk finds the appliance's data disk by filesystem label, decides
// whether a disk is empty enough to format, formats it with mke2fs and
// mounts it.
package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const (
	superblockOffset = 1024
	extMagic         = 0xEF53
)

// ExtLabel reads the ext2/3/4 superblock from r and returns the volume
// label; ok is false when r holds no ext filesystem.
func ExtLabel(r io.ReaderAt) (label string, ok bool, err error) {
	sb := make([]byte, 136)
	if _, err := r.ReadAt(sb, superblockOffset); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("read superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != extMagic {
		return "", false, nil
	}
	name := sb[0x78 : 0x78+16]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return string(name), true, nil
}

// AllZero reports whether the first n bytes of r are zero (a disk with no
// partition table and no filesystem). A device shorter than n counts by
// what it has.
func AllZero(r io.ReaderAt, n int64) (bool, error) {
	buf := make([]byte, 64<<10)
	for off := int64(0); off < n; off += int64(len(buf)) {
		k, err := r.ReadAt(buf, off)
		for _, b := range buf[:k] {
			if b != 0 {
				return false, nil
			}
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("read: %w", err)
		}
	}
	return true, nil
}

// Device is a block device as sysfs describes it.
type Device struct {
	// Name is the kernel name (vda, sda1, nvme0n1).
	Name string
	// Path is the device node (/dev/vda).
	Path string
	// Size is the size in bytes.
	Size int64
	// ReadOnly is true for read-only media such as the boot CD.
	ReadOnly bool
	// Partition is true for a partition, false for a whole disk.
	Partition bool
	// HasPartitions is true for a whole disk with partitions.
	HasPartitions bool
}

// List returns the block devices under sysBlock (normally /sys/class/block)
// with nodes under devDir (normally /dev), sorted by name. Loop, ram and
// other virtual devices with no size are left out.
func List(sysBlock, devDir string) ([]Device, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var out []Device
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "zram") {
			continue
		}
		dir := filepath.Join(sysBlock, name)
		d := Device{Name: name, Path: filepath.Join(devDir, name)}
		sectors, _ := readInt(filepath.Join(dir, "size"))
		d.Size = sectors * 512
		if d.Size == 0 {
			continue
		}
		ro, _ := readInt(filepath.Join(dir, "ro"))
		d.ReadOnly = ro != 0
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			d.Partition = true
		} else {
			subs, _ := os.ReadDir(dir)
			for _, s := range subs {
				if strings.HasPrefix(s.Name(), name) {
					if _, err := os.Stat(filepath.Join(dir, s.Name(), "partition")); err == nil {
						d.HasPartitions = true
					}
				}
			}
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// FindLabel returns the first device (whole disk or partition) whose ext
// filesystem has the given label.
func FindLabel(devs []Device, label string) (Device, bool, error) {
	var errs []error
	for _, d := range devs {
		got, ok, err := labelOf(d.Path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok && got == label {
			return d, true, nil
		}
	}
	return Device{}, false, errors.Join(errs...)
}

func labelOf(path string) (string, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	l, ok, err := ExtLabel(f)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", path, err)
	}
	return l, ok, nil
}

// EmptyDisks returns the writable whole disks with no partitions whose
// first MiB is all zeros: the only disks the appliance will format.
func EmptyDisks(devs []Device) ([]Device, error) {
	var out []Device
	var errs []error
	for _, d := range devs {
		if d.Partition || d.HasPartitions || d.ReadOnly || d.Size < 64<<20 {
			continue
		}
		f, err := os.Open(d.Path)
		if err != nil {
			errs = append(errs, fmt.Errorf("open %s: %w", d.Path, err))
			continue
		}
		zero, err := AllZero(f, 1<<20)
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.Path, err))
			continue
		}
		if zero {
			out = append(out, d)
		}
	}
	return out, errors.Join(errs...)
}
