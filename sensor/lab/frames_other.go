//go:build !linux

package lab

import "fmt"

// SendFrames needs Linux AF_PACKET sockets.
func (l *Lab) SendFrames(host string, iface int, frames [][]byte) error {
	return fmt.Errorf("send frames: %w", errUnsupported)
}
