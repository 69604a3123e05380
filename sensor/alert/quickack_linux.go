package alert

import (
	"net"

	"golang.org/x/sys/unix"
)

// quickAck asks the kernel to acknowledge received data at once rather
// than after the delayed-ACK timer. A RELP collector that writes each
// response separately with Nagle's algorithm on would otherwise stall
// about 40ms per window waiting for our ACK. The setting lapses after
// some packets, so it is renewed after every read.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}
