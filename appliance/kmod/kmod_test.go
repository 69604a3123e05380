package kmod

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	got, err := ParseList(strings.NewReader("# deps first\nkernel/lib/crc16.ko\n\nkernel/fs/ext4/ext4.ko\nkernel/lib/crc16.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/lib/crc16.ko", "kernel/fs/ext4/ext4.ko"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
	for _, bad := range []string{"/abs/x.ko", "kernel/../../etc/x.ko", "kernel/x.ko.xz"} {
		if _, err := ParseList(strings.NewReader(bad + "\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: want an error naming the line, got %v", bad, err)
		}
	}
}

func TestAliases(t *testing.T) {
	a, err := ParseAliases(strings.NewReader(`# Aliases extracted from modules themselves.
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias virtio:d00000001v* virtio_net
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias fs-ext4 ext4
`))
	if err != nil {
		t.Fatal(err)
	}
	devices := []string{"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", "virtio:d00000001v00001AF4"}
	for m, want := range map[string]bool{"e1000": true, "e1000e": false, "virtio_net": true, "usb_storage": true, "ext4": true, "button": true} {
		if got := a.Wanted(m, devices); got != want {
			t.Errorf("Wanted(%s) = %v, want %v", m, got, want)
		}
	}
	if !a.AsyncProbe("e1000") || a.AsyncProbe("ext4") || a.AsyncProbe("usb_storage") {
		t.Error("AsyncProbe: want PCI and virtio drivers only")
	}
	if (Aliases{"virtio_pci": {"pci:v00001AF4d*sv*sd*bc*sc*i*"}}).AsyncProbe("virtio_pci") {
		t.Error("virtio_pci must probe synchronously: the virtio drivers are gated on its devices")
	}
	if ModuleName("kernel/arch/x86/crypto/crc32c-intel.ko") != "crc32c_intel" {
		t.Error("ModuleName does not follow modules.alias spelling")
	}
}
