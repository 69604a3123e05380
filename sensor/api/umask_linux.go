package api

import "golang.org/x/sys/unix"

// withUmask runs fn with the process umask set to mask. The umask is
// process-wide; the daemon creates its socket once, at start-up.
func withUmask(mask int, fn func()) {
	old := unix.Umask(mask)
	defer unix.Umask(old)
	fn()
}
