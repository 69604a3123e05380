//go:build !linux

package daemon

// openFileLimit returns 0: unknown here, so the built-in caps apply.
func openFileLimit() uint64 { return 0 }
