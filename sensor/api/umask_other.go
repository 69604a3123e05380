//go:build !linux

package api

// withUmask runs fn; the socket's mode is set right after creation.
func withUmask(_ int, fn func()) { fn() }
