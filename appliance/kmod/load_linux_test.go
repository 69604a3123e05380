package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadRejectsNonModule(t *testing.T) {
	p := filepath.Join(t.TempDir(), "junk.ko")
	if err := os.WriteFile(p, []byte("not an ELF module"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Load(p)
	if err == nil {
		t.Fatal("a junk module loaded")
	}
	// The kernel rejects the file (ENOEXEC), or refuses before looking
	// (EPERM without the capability, ENOSYS in a sandbox); the error names
	// the module either way.
	if !strings.Contains(err.Error(), "junk.ko") {
		t.Errorf("error does not name the module: %v", err)
	}
	if err := Load(filepath.Join(t.TempDir(), "missing.ko")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing module: %v", err)
	}
}
