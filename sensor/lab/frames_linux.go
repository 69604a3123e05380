package lab

import (
	"fmt"
	"net"

	"github.com/mdlayher/packet"
)

// SendFrames writes raw Ethernet frames (destination MAC first, no FCS)
// out of a host's interface (counting from 0) on an AF_PACKET socket,
// unchanged: they may carry any source MAC or an 802.1Q tag. Frames
// shorter than 60 bytes are padded by the kernel as needed. The switch
// forwards them and the mirror copies them like any other frame (the
// capture side's kernel moves an 802.1Q tag into the packet's ancillary
// data).
func (l *Lab) SendFrames(host string, iface int, frames [][]byte) error {
	ifs, err := l.Interfaces(host)
	if err != nil {
		return err
	}
	if iface < 0 || iface >= len(ifs) {
		return fmt.Errorf("lab %s: host %s has %d interfaces, no interface %d", l.Name, host, len(ifs), iface)
	}
	name := ifs[iface].Name
	return l.Do(host, func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("send frames on %s %s: %w", host, name, err)
		}
		// Protocol 0: the socket only sends and receives nothing.
		conn, err := packet.Listen(ifi, packet.Raw, 0, nil)
		if err != nil {
			return fmt.Errorf("send frames on %s %s: %w", host, name, err)
		}
		defer conn.Close()
		for i, f := range frames {
			if len(f) < 14 {
				return fmt.Errorf("send frames on %s %s: frame %d is %d bytes, shorter than an Ethernet header", host, name, i, len(f))
			}
			if _, err := conn.WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(f[0:6])}); err != nil {
				return fmt.Errorf("send frames on %s %s: frame %d: %w", host, name, i, err)
			}
		}
		return nil
	})
}
