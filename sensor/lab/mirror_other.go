//go:build !linux

package lab

import (
	"context"
	"fmt"
)

// MirrorReport is what VerifyMirror counted.
type MirrorReport struct {
	// Sent is how many frames of the exchange the two hosts transmitted.
	Sent int
	// Mirrored is how many frames of the exchange arrived on the mirror.
	Mirrored int
	// EchoRequests and EchoReplies count ICMP echo frames on the mirror.
	EchoRequests, EchoReplies int
}

// VerifyMirror needs Linux AF_PACKET sockets.
func (l *Lab) VerifyMirror(ctx context.Context, from, to string, count int) (MirrorReport, error) {
	return MirrorReport{}, fmt.Errorf("verify mirror: %w", errUnsupported)
}
