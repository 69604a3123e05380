package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDebianMirror(t *testing.T) {
	for _, c := range []struct {
		name, file, text, want string
	}{
		{"deb822", "sources.list.d/debian.sources", "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n", "http://mirror.example/debian"},
		{"deb822 other suite first", "sources.list.d/x.sources", "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\nTypes: deb-src deb\nURIs: http://m2.example/debian\nSuites: bookworm\n", "http://m2.example/debian"},
		{"one line", "sources.list", "# deb http://old.example/debian bookworm main\ndeb-src http://src.example/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m3.example/debian bookworm main contrib\n", "http://m3.example/debian"},
		{"nothing for the suite", "sources.list", "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n", "http://deb.debian.org/debian"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, c.file)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := DebianMirror(dir, "bookworm"); got != c.want {
				t.Fatalf("DebianMirror = %q, want %q", got, c.want)
			}
		})
	}
}
