// Command gen turns the IEEE registry files of Debian's ieee-data package
// (oui.csv, mam.csv, oui36.csv) into the compact table package inventory
// embeds: one line per assignment, "PREFIX<TAB>ORGANIZATION", prefixes in
// hexadecimal (6, 7 or 9 digits for MA-L, MA-M and MA-S), sorted, gzip.
//
//	go run ./sensor/inventory/internal/gen -in /usr/share/ieee-data -out sensor/inventory/oui.tsv.gz
package main

import (
	"compress/gzip"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	in := flag.String("in", "/usr/share/ieee-data", "directory holding oui.csv, mam.csv and oui36.csv (Debian package ieee-data)")
	out := flag.String("out", "oui.tsv.gz", "table to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	var lines []string
	for _, f := range []struct {
		name   string
		digits int
	}{{"oui.csv", 6}, {"mam.csv", 7}, {"oui36.csv", 9}} {
		rows, err := read(filepath.Join(in, f.name), f.digits)
		if err != nil {
			return err
		}
		lines = append(lines, rows...)
	}
	if len(lines) < 10000 {
		return fmt.Errorf("%s: only %d assignments; is the ieee-data package complete? (apt-get install ieee-data)", in, len(lines))
	}
	slices.Sort(lines)
	lines = slices.Compact(lines)
	tmp := out + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(fh, gzip.BestCompression)
	if _, err := io.WriteString(zw, strings.Join(lines, "\n")+"\n"); err != nil {
		fh.Close()
		return err
	}
	if err := errors.Join(zw.Close(), fh.Close()); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func read(path string, digits int) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w (install Debian's ieee-data package, or pass -in)", err)
	}
	defer fh.Close()
	r := csv.NewReader(fh)
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	var out []string
	for n := 0; ; n++ {
		rec, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if n == 0 || len(rec) < 3 {
			continue // header
		}
		prefix := strings.ToLower(strings.TrimSpace(rec[1]))
		name := strings.Join(strings.Fields(rec[2]), " ")
		if len(prefix) != digits || name == "" {
			continue
		}
		out = append(out, prefix+"\t"+name)
	}
}
