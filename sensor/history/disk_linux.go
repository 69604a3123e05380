package history

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// freeSpace returns the bytes available to unprivileged users and the size
// of the file system holding dir.
func freeSpace(dir string) (free, total uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}
