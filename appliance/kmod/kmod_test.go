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
