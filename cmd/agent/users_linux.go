package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
)

// utmp record layout on Linux (glibc, 64-bit and 32-bit alike): 384 bytes.
const (
	utmpSize        = 384
	utmpUserOffset  = 44
	utmpUserLen     = 32
	utmpUserProcess = 7
)

// UtmpPath is where signed-in sessions are recorded.
const UtmpPath = "/var/run/utmp"

// Users returns the distinct names of signed-in users from utmp (USER_PROCESS
// records). A missing utmp (containers) means nobody is signed in.
func Users() ([]string, error) { return readUtmp(UtmpPath) }

func readUtmp(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	seen := map[string]bool{}
	var out []string
	for off := 0; off+utmpSize <= len(b); off += utmpSize {
		rec := b[off : off+utmpSize]
		if int16(binary.LittleEndian.Uint16(rec[0:2])) != utmpUserProcess { // ut_type is a short
			continue
		}
		name := rec[utmpUserOffset : utmpUserOffset+utmpUserLen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if len(name) == 0 || seen[string(name)] {
			continue
		}
		seen[string(name)] = true
		out = append(out, string(name))
	}
	sort.Strings(out)
	if len(out) > 64 {
		out = out[:64]
	}
	return out, nil
}
