package lab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// MirrorReport is what VerifyMirror counted.
type MirrorReport struct {
	// Sent is how many frames of the exchange the two hosts transmitted,
	// as seen by AF_PACKET sockets on their own interfaces.
	Sent int
	// Mirrored is how many frames of the exchange arrived on the sensor's
	// mirror interface.
	Mirrored int
	// EchoRequests and EchoReplies count the ICMP echo frames of the
	// exchange on the mirror interface.
	EchoRequests, EchoReplies int
}

// VerifyMirror pings from host from to host to's first address count
// times while reading the sensor's mirror interface, and the two hosts'
// first interfaces, with AF_PACKET sockets. It fails unless every frame
// of the exchange (ARP between the two hosts and every unicast frame from
// one to the other) that either host transmitted appears on the mirror
// exactly once, byte for byte, and nothing else of the exchange does.
func (l *Lab) VerifyMirror(ctx context.Context, from, to string, count int) (MirrorReport, error) {
	var rep MirrorReport
	fromIfs, err := l.Interfaces(from)
	if err != nil {
		return rep, err
	}
	toIfs, err := l.Interfaces(to)
	if err != nil {
		return rep, err
	}
	a, b := fromIfs[0], toIfs[0]
	macA, macB := a.HardwareAddr(), b.HardwareAddr()
	fromNS, _ := l.Namespace(from)
	toNS, _ := l.Namespace(to)

	caps := make([]*frameCapture, 0, 3)
	defer func() {
		for _, c := range caps {
			c.stop()
		}
	}()
	for _, spec := range []struct{ ns, ifname string }{
		{fromNS, a.Name}, {toNS, b.Name}, {l.Sensor.Namespace, l.Sensor.Mirror},
	} {
		c, err := startCapture(spec.ns, spec.ifname)
		if err != nil {
			return rep, err
		}
		caps = append(caps, c)
	}
	pingErr := l.Ping(ctx, from, b.Addr.Addr(), count)
	// Let the last frames reach the sockets.
	time.Sleep(200 * time.Millisecond)
	var frames [3][][]byte
	for i, c := range caps {
		frames[i] = c.stop()
	}
	if pingErr != nil {
		return rep, pingErr
	}

	inExchange := func(f []byte) bool {
		if len(f) < 14 {
			return false
		}
		dst, src := net.HardwareAddr(f[0:6]), net.HardwareAddr(f[6:12])
		if !bytes.Equal(src, macA) && !bytes.Equal(src, macB) {
			return false
		}
		if bytes.Equal(dst, macA) || bytes.Equal(dst, macB) {
			return true
		}
		return binary.BigEndian.Uint16(f[12:14]) == unix.ETH_P_ARP && bytes.Equal(dst, broadcastMAC)
	}
	sent := make(map[string]int)
	for i, own := range []net.HardwareAddr{macA, macB} {
		for _, f := range frames[i] {
			if inExchange(f) && bytes.Equal(f[6:12], own) {
				sent[string(f)]++
				rep.Sent++
			}
		}
	}
	mirrored := make(map[string]int)
	for _, f := range frames[2] {
		if !inExchange(f) {
			continue
		}
		mirrored[string(f)]++
		rep.Mirrored++
		switch icmpEchoType(f) {
		case 8:
			rep.EchoRequests++
		case 0:
			rep.EchoReplies++
		}
	}
	var problems []string
	for f, n := range sent {
		if m := mirrored[f]; m != n {
			problems = append(problems, fmt.Sprintf("%s sent %d times, mirrored %d times", describeFrame([]byte(f)), n, m))
		}
	}
	for f, m := range mirrored {
		if _, ok := sent[f]; !ok {
			problems = append(problems, fmt.Sprintf("%s mirrored %d times, never sent", describeFrame([]byte(f)), m))
		}
	}
	if rep.EchoRequests < count || rep.EchoReplies < count {
		problems = append(problems, fmt.Sprintf("%d echo requests and %d replies mirrored, want %d of each", rep.EchoRequests, rep.EchoReplies, count))
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
		}
		return rep, fmt.Errorf("lab %s: mirror of %s <-> %s is wrong: %s", l.Name, from, to, strings.Join(problems, "; "))
	}
	return rep, nil
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// icmpEchoType returns the ICMP type of an untagged IPv4 ICMP echo frame
// (8 request, 0 reply), or -1.
func icmpEchoType(f []byte) int {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP {
		return -1
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != 1 || len(ip) < ihl+8 {
		return -1
	}
	if t := ip[ihl]; t == 0 || t == 8 {
		return int(t)
	}
	return -1
}

func describeFrame(f []byte) string {
	return fmt.Sprintf("frame %s > %s type %#04x len %d", net.HardwareAddr(f[6:12]), net.HardwareAddr(f[0:6]), binary.BigEndian.Uint16(f[12:14]), len(f))
}

// frameCapture reads every frame on one interface into memory.
type frameCapture struct {
	conn   *packet.Conn
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	frames [][]byte
	wg     sync.WaitGroup
}

// captureBuffer is the socket receive buffer: the default holds only a few
// hundred small frames.
const captureBuffer = 4 << 20

// startCapture opens an AF_PACKET socket for all protocols on ifname inside
// namespace ns and reads it until stop.
func startCapture(ns, ifname string) (*frameCapture, error) {
	var conn *packet.Conn
	err := do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s in namespace %s: %w", ifname, ns, err)
	}
	if rc, err := conn.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, captureBuffer)
		})
	}
	c := &frameCapture{conn: conn, done: make(chan struct{})}
	c.wg.Add(1)
	go c.read()
	return c, nil
}

func (c *frameCapture) read() {
	defer c.wg.Done()
	buf := make([]byte, 1<<16)
	for {
		// After stop, read until the interface has been quiet for
		// 100 ms: mirrored copies of the last frames may still be on
		// their way through a busy machine.
		wait := 50 * time.Millisecond
		stopping := false
		select {
		case <-c.done:
			wait, stopping = 100*time.Millisecond, true
		default:
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(wait))
		n, _, err := c.conn.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if stopping {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		c.mu.Lock()
		c.frames = append(c.frames, bytes.Clone(buf[:n]))
		c.mu.Unlock()
	}
}

// stop ends the capture and returns the frames read; later calls return
// the same frames.
func (c *frameCapture) stop() [][]byte {
	c.once.Do(func() {
		close(c.done)
		c.wg.Wait()
		_ = c.conn.Close()
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}
