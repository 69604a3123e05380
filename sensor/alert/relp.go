package alert

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// RELP (the Reliable Event Logging Protocol of librelp and rsyslog's
// imrelp): every message is a numbered "syslog" command that the collector
// acknowledges with "rsp 200". Frames are
//
//	TXNR SP COMMAND SP DATALEN [SP DATA] LF
//
// with transaction numbers 1 to 999999999, wrapping back to 1.

// relpWindow is the most unacknowledged messages in flight (librelp's
// default window).
const relpWindow = 128

const relpOffer = "relp_version=0\nrelp_software=tapbeat\ncommands=syslog"

type relpSession struct {
	r    *bufio.Reader
	raw  net.Conn // the TCP connection under any TLS
	txnr int
}

func (s *relpSession) next() int {
	s.txnr++
	if s.txnr > 999999999 {
		s.txnr = 1
	}
	return s.txnr
}

func appendRELP(dst []byte, txnr int, cmd string, data []byte) []byte {
	dst = strconv.AppendInt(dst, int64(txnr), 10)
	dst = append(dst, ' ')
	dst = append(dst, cmd...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(len(data)), 10)
	if len(data) > 0 {
		dst = append(dst, ' ')
		dst = append(dst, data...)
	}
	return append(dst, '\n')
}

// readFrame reads one RELP frame.
func readRELPFrame(r *bufio.Reader) (txnr int, cmd string, data []byte, err error) {
	field := func(delims string) (string, byte, error) {
		var b strings.Builder
		for b.Len() < 40 {
			c, err := r.ReadByte()
			if err != nil {
				return "", 0, err
			}
			if strings.IndexByte(delims, c) >= 0 {
				return b.String(), c, nil
			}
			b.WriteByte(c)
		}
		return "", 0, errors.New("RELP header field too long")
	}
	t, _, err := field(" ")
	if err != nil {
		return 0, "", nil, err
	}
	var ok bool
	if txnr, ok = relpNumber(t, 9); !ok {
		return 0, "", nil, fmt.Errorf("RELP: bad transaction number %q", t)
	}
	if cmd, _, err = field(" "); err != nil {
		return 0, "", nil, err
	}
	if !relpCommand(cmd) {
		return 0, "", nil, fmt.Errorf("RELP: bad command %q", cmd)
	}
	l, delim, err := field(" \n")
	if err != nil {
		return 0, "", nil, err
	}
	n, ok := relpNumber(l, 7)
	if !ok || n > 1<<20 {
		return 0, "", nil, fmt.Errorf("RELP: bad data length %q", l)
	}
	if n > 0 {
		if delim != ' ' {
			return 0, "", nil, errors.New("RELP: missing data after length")
		}
		data = make([]byte, n)
		if _, err := io.ReadFull(r, data); err != nil {
			return 0, "", nil, err
		}
		delim, err = r.ReadByte()
		if err != nil {
			return 0, "", nil, err
		}
	}
	if delim != '\n' {
		return 0, "", nil, errors.New("RELP: frame not terminated by LF")
	}
	return txnr, cmd, data, nil
}

// relpNumber parses a RELP number: 1 to max decimal digits, no sign.
func relpNumber(s string, max int) (int, bool) {
	if len(s) == 0 || len(s) > max || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// relpCommand tells whether s is a RELP command: 1 to 32 ASCII letters.
func relpCommand(s string) bool {
	notLetter := func(r rune) bool { return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') }
	return len(s) > 0 && len(s) <= 32 && strings.IndexFunc(s, notLetter) < 0
}

// relp and relp+tls: the collector acknowledges every message.
func init() {
	const rule = "acknowledged by the collector"
	registerTransport("relp", transport{delivery: rule, dial: dialRELP})
	registerTransport("relp+tls", transport{delivery: rule, dial: dialRELP, tls: true})
}

// dialRELP connects, completes the TLS handshake for relp+tls, and opens a
// RELP session.
func dialRELP(ctx context.Context, d *Destination) (*conn, error) {
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", d.Addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (is the collector listening?)", d.Name, err)
	}
	c := raw
	if d.TLS != nil {
		tc := tls.Client(raw, d.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("%s: TLS handshake with the collector failed: %w (%s)", d.Name, err, tlsHint(err))
		}
		c = tc
	}
	cn := &conn{c: c, relp: &relpSession{r: bufio.NewReaderSize(c, 64<<10), raw: raw}, dead: make(chan struct{})}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	hint := "is this a RELP port, e.g. rsyslog imrelp?"
	if d.TLS != nil {
		hint = "the collector ended the TLS session: it may require a client certificate it trusts (cert=, key=; rsyslog imrelp always asks for one), or this is not a RELP port"
	}
	txnr := cn.relp.next()
	if _, err := c.Write(appendRELP(nil, txnr, "open", []byte(relpOffer))); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: RELP open: %w (%s)", d.Name, err, hint)
	}
	if err := cn.relpAwait(txnr, txnr); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: RELP open refused: %w (%s)", d.Name, err, hint)
	}
	c.SetDeadline(time.Time{})
	return cn, nil
}

// relpSend sends msgs as syslog commands and returns once the collector
// has acknowledged every one.
func (cn *conn) relpSend(msgs [][]byte, timeout time.Duration) error {
	for len(msgs) > 0 {
		k := min(len(msgs), relpWindow)
		var buf []byte
		first := 0
		for i, m := range msgs[:k] {
			t := cn.relp.next()
			if i == 0 {
				first = t
			}
			buf = appendRELP(buf, t, "syslog", m)
		}
		last := cn.relp.txnr
		if err := cn.c.SetDeadline(time.Now().Add(timeout)); err != nil {
			return err
		}
		if _, err := cn.c.Write(buf); err != nil {
			return err
		}
		if err := cn.relpAwait(first, last); err != nil {
			return err
		}
		msgs = msgs[k:]
	}
	return nil
}

// relpAwait reads responses until every transaction from first to last
// (wrapping) is acknowledged with 200.
func (cn *conn) relpAwait(first, last int) error {
	want := map[int]bool{}
	for t := first; ; {
		want[t] = true
		if t == last {
			break
		}
		if t++; t > 999999999 {
			t = 1
		}
	}
	for len(want) > 0 {
		if cn.relp.r.Buffered() == 0 {
			quickAck(cn.relp.raw)
		}
		txnr, cmd, data, err := readRELPFrame(cn.relp.r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("collector closed the RELP session")
			}
			return fmt.Errorf("RELP: %w", err)
		}
		switch cmd {
		case "rsp":
			if !want[txnr] {
				return fmt.Errorf("RELP: response to unknown transaction %d", txnr)
			}
			if !strings.HasPrefix(string(data), "200") {
				return fmt.Errorf("RELP: collector refused transaction %d: %q", txnr, data)
			}
			delete(want, txnr)
		case "serverclose":
			return errors.New("collector closed the RELP session (serverclose)")
		default:
			return fmt.Errorf("RELP: unexpected command %q from the collector", cmd)
		}
	}
	return nil
}

// relpClose ends the session politely; errors are ignored.
func (cn *conn) relpClose() {
	cn.c.SetDeadline(time.Now().Add(time.Second))
	t := cn.relp.next()
	if _, err := cn.c.Write(appendRELP(nil, t, "close", nil)); err == nil {
		readRELPFrame(cn.relp.r)
	}
}
