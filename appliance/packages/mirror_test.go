package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// DebianMirror returns the Debian archive the machine's apt sources use
// for suite (deb822 .sources files and one-line .list files alike), or
// deb.debian.org when none names it. The packages' install test builds its
// clean Debian root from it.
func DebianMirror(etcApt, suite string) string {
	var files []string
	files = append(files, filepath.Join(etcApt, "sources.list"))
	more, _ := filepath.Glob(filepath.Join(etcApt, "sources.list.d", "*"))
	files = append(files, more...)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var uri string
		if strings.HasSuffix(f, ".sources") {
			uri = mirrorDeb822(raw, suite)
		} else {
			uri = mirrorOneLine(raw, suite)
		}
		if uri != "" {
			return strings.TrimSuffix(uri, "/")
		}
	}
	return "http://deb.debian.org/debian"
}

// mirrorDeb822 finds a "Types: deb" stanza whose Suites include suite.
func mirrorDeb822(raw []byte, suite string) string {
	for _, stanza := range bytes.Split(raw, []byte("\n\n")) {
		fields := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(stanza))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") {
				continue
			}
			if k, v, ok := strings.Cut(line, ":"); ok {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !contains(strings.Fields(fields["types"]), "deb") || !contains(strings.Fields(fields["suites"]), suite) {
			continue
		}
		if uris := strings.Fields(fields["uris"]); len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
}

// mirrorOneLine finds a "deb [options] URI SUITE COMPONENTS" line.
func mirrorOneLine(raw []byte, suite string) string {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == suite {
			return f[0]
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
