package daemon

import (
	"os"
	"syscall"
)

// inode returns the file's inode number where the platform has one.
func inode(st os.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}
