package capture

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// SocketConfig describes a plain AF_PACKET capture socket, the fallback
// where no ring can be set up. It costs a system call and a copy per frame,
// so it drops frames under load that a ring would keep.
type SocketConfig struct {
	Interface     string
	BufferBytes   int           // socket receive buffer (default 32 MiB)
	PollTimeout   time.Duration // default 100 ms
	NoPromiscuous bool
}

// SocketSource reads frames one recvfrom at a time (mdlayher/packet).
// Frames whose VLAN tag the kernel stripped are counted 4 bytes short.
type SocketSource struct {
	cfg     SocketConfig
	c       *packet.Conn
	ifindex int
	buf     []byte
}

// OpenSocket opens a plain capture socket on cfg.Interface.
func OpenSocket(cfg SocketConfig) (*SocketSource, error) {
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = 32 << 20
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 100 * time.Millisecond
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("capture socket on %q: %w", cfg.Interface, err)
	}
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
	if err != nil {
		return nil, fmt.Errorf("capture socket on %s: %w", cfg.Interface, err)
	}
	s := &SocketSource{cfg: cfg, c: c, ifindex: ifi.Index, buf: make([]byte, 1<<16)}
	if err := s.setup(); err != nil {
		c.Close()
		return nil, fmt.Errorf("capture socket on %s: %w", cfg.Interface, err)
	}
	return s, nil
}

func (s *SocketSource) setup() error {
	filter, err := incomingOnly()
	if err != nil {
		return err
	}
	if err := s.c.SetBPF(filter); err != nil {
		return fmt.Errorf("attach filter: %w", err)
	}
	if !s.cfg.NoPromiscuous {
		if err := s.c.SetPromiscuous(true); err != nil {
			return fmt.Errorf("promiscuous mode: %w", err)
		}
	}
	rc, err := s.c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, s.cfg.BufferBytes)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("receive buffer of %d bytes: %w", s.cfg.BufferBytes, serr)
	}
	_, err = s.c.Stats() // start the counters from zero
	return err
}

// Read returns the next frame (copied into the source's buffer);
// ErrNoPacket when none came within the poll timeout.
func (s *SocketSource) Read(p *Packet) error {
	if err := s.c.SetReadDeadline(time.Now().Add(s.cfg.PollTimeout)); err != nil {
		return fmt.Errorf("capture socket on %s: %w", s.cfg.Interface, err)
	}
	n, _, err := s.c.ReadFrom(s.buf)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return ErrNoPacket
		}
		return fmt.Errorf("capture socket on %s: %w", s.cfg.Interface, err)
	}
	p.Data = s.buf[:n]
	p.WireLen = n
	p.Time = time.Now().UnixNano()
	return nil
}

// Stats returns what the kernel counted since the previous call.
func (s *SocketSource) Stats() (SocketStats, error) {
	st, err := s.c.Stats()
	if err != nil {
		return SocketStats{}, fmt.Errorf("capture socket on %s: statistics: %w", s.cfg.Interface, err)
	}
	return SocketStats{Packets: uint64(st.Packets), Drops: uint64(st.Drops), QueueFreezes: uint64(st.FreezeQueueCount)}, nil
}

// Ifindex is the index of the interface the socket was opened on.
func (s *SocketSource) Ifindex() int { return s.ifindex }

// Close closes the socket.
func (s *SocketSource) Close() error { return s.c.Close() }
