package alert

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"time"
)

// conn is one connection to a collector.
type conn struct {
	c      net.Conn
	stream bool          // tcp or tls: octet-counting framing
	relp   *relpSession  // relp: acknowledged commands
	dead   chan struct{} // closed when the collector closes or the read fails
	err    error         // why, once dead is closed
}

// transport is how messages reach a collector for one URL scheme. Each
// transport lives in a file of its own and registers itself there with
// registerTransport; parsing, dialling, the CLI's description and the TLS
// options all read the registry.
type transport struct {
	// dial connects to d's collector. For a TLS transport it completes
	// the handshake, so a certificate the client cannot verify fails here
	// with the reason.
	dial func(ctx context.Context, d *Destination) (*conn, error)
	// delivery says when a message counts as delivered, in words.
	delivery string
	// tls: the scheme runs over TLS and takes ca=, cert=, key= and
	// server_name=.
	tls bool
}

var transports = map[string]transport{}

// registerTransport adds a scheme's transport; it is called from init in
// the transport's own file.
func registerTransport(scheme string, t transport) {
	if _, dup := transports[scheme]; dup || t.dial == nil || t.delivery == "" {
		panic("alert: transport " + scheme + " registered twice or incomplete")
	}
	transports[scheme] = t
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string { return slices.Sorted(maps.Keys(transports)) }

// DeliveryRule says when a message sent to a destination of the scheme
// counts as delivered.
func DeliveryRule(scheme string) string { return transports[scheme].delivery }

// dial connects to d through its scheme's transport.
func dial(ctx context.Context, d *Destination) (*conn, error) {
	t, ok := transports[d.Scheme]
	if !ok {
		return nil, fmt.Errorf("%s: unsupported scheme %q: want one of %s", d.Name, d.Scheme, strings.Join(Schemes(), ", "))
	}
	ctx, cancel := context.WithTimeout(ctx, d.Timeout)
	defer cancel()
	return t.dial(ctx, d)
}

func tlsHint(err error) string {
	var cv *tls.CertificateVerificationError
	var op *net.OpError
	switch {
	case errors.As(err, &cv):
		return "the collector's certificate was not accepted: check ca= names the CA that signed it and that it is valid for the host or server_name="
	case errors.As(err, &op) && op.Op == "remote error":
		return "the collector refused the connection: check cert= and key= name a client certificate it trusts, and its TLS versions and ciphers"
	case errors.Is(err, io.EOF):
		return "the collector closed the connection: does it speak TLS on this port, and does it require a client certificate (cert=, key=)?"
	default:
		return "check the collector's TLS settings, ca=, cert=, key= and server_name="
	}
}

// watch starts the goroutine that notices a collector closing the
// connection or refusing it (a mutual-TLS collector that rejected the client
// certificate sends an alert and closes). Syslog collectors never send data,
// so any read result ends the connection.
func watch(c net.Conn) *conn {
	cn := &conn{c: c, stream: true, dead: make(chan struct{})}
	go func() {
		var b [512]byte
		n, err := c.Read(b[:])
		switch {
		case err == nil || n > 0:
			cn.err = fmt.Errorf("collector sent %d unexpected bytes; closing", n)
		case errors.Is(err, io.EOF):
			cn.err = errors.New("collector closed the connection")
		default:
			cn.err = fmt.Errorf("connection lost: %w", err)
		}
		close(cn.dead)
	}()
	return cn
}

// udp reports whether the connection sends datagrams.
func (cn *conn) udp() bool { return !cn.stream && cn.relp == nil }

// alive reports whether the collector has not closed the connection.
func (cn *conn) alive() bool {
	select {
	case <-cn.dead:
		return false
	default:
		return true
	}
}

// deadErr returns why the connection died.
func (cn *conn) deadErr() error {
	<-cn.dead
	return cn.err
}

// send delivers one batch: framed is the octet-counted stream for tcp and
// tls; msgs are the messages for udp (one datagram each) and relp.
func (cn *conn) send(framed []byte, msgs [][]byte, timeout time.Duration) error {
	switch {
	case cn.relp != nil:
		if len(msgs) == 0 {
			return nil
		}
		return cn.relpSend(msgs, timeout)
	case cn.stream:
		if len(framed) == 0 {
			return nil
		}
		return cn.write(framed, timeout)
	}
	for _, m := range msgs {
		if err := cn.write(m, timeout); err != nil {
			return err
		}
	}
	return nil
}

func (cn *conn) write(b []byte, timeout time.Duration) error {
	if !cn.alive() {
		return cn.deadErr()
	}
	if err := cn.c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := cn.c.Write(b)
	return err
}

func (cn *conn) close() {
	if cn.relp != nil {
		cn.relpClose()
	}
	cn.c.Close()
	if cn.stream {
		<-cn.dead
	}
}
