package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Do runs f on an OS thread inside the named host's namespace and returns
// its error. Sockets f opens stay in the namespace, and can be used from
// any goroutine after Do returns.
func (l *Lab) Do(host string, f func() error) error {
	ns, err := l.Namespace(host)
	if err != nil {
		return err
	}
	return do(ns, f)
}

// checkLiteral rejects addresses whose host part is not an IP literal: the
// lab never resolves names. An empty host is allowed when listening.
func checkLiteral(address string, listen bool) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("address %q: %w", address, err)
	}
	if host == "" && listen {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("address %q: the lab takes IP addresses only, never names to resolve: %w", address, err)
	}
	return nil
}

// Listen opens a stream listener inside the named host's namespace.
// address must use an IP literal (or an empty host).
func (l *Lab) Listen(ctx context.Context, host, network, address string) (net.Listener, error) {
	if err := checkLiteral(address, true); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := l.Do(host, func() (err error) {
		ln, err = (&net.ListenConfig{}).Listen(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s in lab host %s: %w", network, address, host, err)
	}
	return ln, nil
}

// ListenPacket opens a packet listener inside the named host's namespace.
// address must use an IP literal (or an empty host).
func (l *Lab) ListenPacket(ctx context.Context, host, network, address string) (net.PacketConn, error) {
	if err := checkLiteral(address, true); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err := l.Do(host, func() (err error) {
		pc, err = (&net.ListenConfig{}).ListenPacket(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s %s in lab host %s: %w", network, address, host, err)
	}
	return pc, nil
}

// Dial connects from inside the named host's namespace. address must use
// an IP literal.
func (l *Lab) Dial(ctx context.Context, host, network, address string) (net.Conn, error) {
	if err := checkLiteral(address, false); err != nil {
		return nil, err
	}
	var c net.Conn
	err := l.Do(host, func() (err error) {
		c, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from lab host %s: %w", network, address, host, err)
	}
	return c, nil
}

// Ping sends count ICMP echo requests from the named host to addr with
// iputils ping (numeric output, 0.2 s apart) and fails unless every one is
// answered. An IPv6 link-local addr without a zone is sent out of the
// host's first interface.
func (l *Lab) Ping(ctx context.Context, from string, to netip.Addr, count int) error {
	if count < 1 {
		return fmt.Errorf("ping count %d: send at least one echo request", count)
	}
	if to.Is6() && to.IsLinkLocalUnicast() && to.Zone() == "" {
		ifs, err := l.Interfaces(from)
		if err != nil {
			return err
		}
		to = to.WithZone(ifs[0].Name)
	}
	n := strconv.Itoa(count)
	// -W 2: wait up to 2 s for each reply; -w bounds the whole run.
	_, err := l.Run(ctx, from, "ping", "-n", "-q", "-c", n, "-i", "0.2", "-W", "2",
		"-w", strconv.Itoa(count/5+3), to.String())
	if err != nil {
		return fmt.Errorf("ping %s from lab host %s: %w", to, from, err)
	}
	return nil
}

// exchangeTimeout bounds TCPExchange and UDPExchange when ctx has no
// earlier deadline.
const exchangeTimeout = 10 * time.Second

// TCPExchange opens a TCP connection from host from to host to's first
// address on port, sends payload, and checks that the listener on to
// echoes it back whole before both sides close.
func (l *Lab) TCPExchange(ctx context.Context, from, to string, port uint16, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	dst, err := l.Addr(to)
	if err != nil {
		return err
	}
	addr := netip.AddrPortFrom(dst, port).String()
	ln, err := l.Listen(ctx, to, "tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	deadline, _ := ctx.Deadline()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(deadline)
		_, err = io.Copy(c, c)
		served <- err
	}()
	c, err := l.Dial(ctx, from, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(payload); err != nil {
		return fmt.Errorf("tcp %s -> %s: send: %w", from, addr, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("tcp %s -> %s: close write: %w", from, addr, err)
	}
	echo, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("tcp %s -> %s: read echo: %w", from, addr, err)
	}
	if !bytes.Equal(echo, payload) {
		return fmt.Errorf("tcp %s -> %s: sent %d bytes, %d came back different", from, addr, len(payload), len(echo))
	}
	if err := <-served; err != nil {
		return fmt.Errorf("tcp %s -> %s: echo server: %w", from, addr, err)
	}
	return nil
}

// UDPExchange sends count datagrams from host from to host to's first
// address on port and fails unless a listener there receives every one.
func (l *Lab) UDPExchange(ctx context.Context, from, to string, port uint16, count int) error {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	dst, err := l.Addr(to)
	if err != nil {
		return err
	}
	addr := netip.AddrPortFrom(dst, port).String()
	pc, err := l.ListenPacket(ctx, to, "udp", addr)
	if err != nil {
		return err
	}
	defer pc.Close()
	deadline, _ := ctx.Deadline()
	_ = pc.SetReadDeadline(deadline)
	received := make(chan int, 1)
	go func() {
		seen := make(map[string]bool)
		buf := make([]byte, 2048)
		for len(seen) < count {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			seen[string(buf[:n])] = true
		}
		received <- len(seen)
	}()
	c, err := l.Dial(ctx, from, "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range count {
		if _, err := fmt.Fprintf(c, "tapbeat lab datagram %d", i); err != nil {
			return fmt.Errorf("udp %s -> %s: send datagram %d: %w", from, addr, i, err)
		}
	}
	if got := <-received; got != count {
		return fmt.Errorf("udp %s -> %s: only %d of %d datagrams arrived within %s", from, addr, got, count, exchangeTimeout)
	}
	return nil
}
