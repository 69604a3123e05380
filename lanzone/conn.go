package lanzone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"golang.org/x/time/rate"
)

// eofConn notes whether the TCP connection under TLS reached its end.
// crypto/tls reports both a close_notify and a bare TCP close at a record
// boundary as io.EOF; only the raw end tells them apart: after a
// close_notify TLS stops reading, so the raw EOF is never read.
type eofConn struct {
	net.Conn
	eof atomic.Bool
}

func (e *eofConn) Read(p []byte) (int, error) {
	n, err := e.Conn.Read(p)
	if err == io.EOF {
		e.eof.Store(true)
	}
	return n, err
}

// conn is one authenticated agent connection.
type conn struct {
	l      *Listener
	nc     net.Conn
	raw    *eofConn // under nc
	remote netip.AddrPort
	id     string
	name   string
	org    string
	fp     pki.Fingerprint

	wmu       sync.Mutex
	closed    atomic.Bool
	lastFrame atomic.Int64 // unix nanoseconds of the newest frame read
	// instance is the agent process's instance from its hello ("" from an
	// agent older than protocol 1.1).
	instance string
	// cause is how the connection ended (a schema.DisconnectCause), set
	// once by whoever saw the end first: the sensor closing it on purpose,
	// or the reader.
	cause   atomic.Uint32
	goodbye wire.Goodbye // the agent's goodbye, with schema.CauseGoodbye (reader only)
}

// setCause records how the connection ended unless that is already known.
func (c *conn) setCause(cause schema.DisconnectCause) {
	c.cause.CompareAndSwap(0, uint32(cause))
}

// causeOf tells how a connection ended from the error its read (or write)
// returned: io.EOF is a close_notify unless the raw connection ended (a TCP
// close without close_notify); io.ErrUnexpectedEOF a close inside a record
// or frame.
func (c *conn) causeOf(err error) schema.DisconnectCause {
	switch {
	case errors.Is(err, io.EOF) && c.raw != nil && c.raw.eof.Load():
		return schema.CauseEOF
	case errors.Is(err, io.EOF):
		return schema.CauseCloseNotify
	case errors.Is(err, io.ErrUnexpectedEOF):
		return schema.CauseEOF
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED):
		return schema.CauseReset
	case isTimeout(err):
		return schema.CauseIdleTimeout
	}
	return schema.CauseTLSError
}

// causeOfCode is how a connection the sensor closes with an error code ends.
func causeOfCode(code string) schema.DisconnectCause {
	switch code {
	case wire.CodeRevoked:
		return schema.CauseRevoked
	case wire.CodeReplaced:
		return schema.CauseReplaced
	case wire.CodeShutdown:
		return schema.CauseSensorShutdown
	}
	return schema.CauseProtocol
}

// write sends frames with the write timeout.
func (c *conn) write(frames ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.l.opts.WriteTimeout))
	for _, f := range frames {
		if _, err := c.nc.Write(f); err != nil {
			return err
		}
	}
	return nil
}

// closeWith sends an error message (best effort, within about a second)
// and closes. A write in progress is cut short by the same deadline rather
// than skipped over, so a peer that reads gets the reason.
func (c *conn) closeWith(code, msg string) {
	c.setCause(causeOfCode(code))
	if c.closed.Swap(true) {
		return
	}
	if f, err := wire.Marshal(wire.TypeError, wire.Error{Code: code, Message: msg}); err == nil {
		deadline := time.Now().Add(time.Second)
		_ = c.nc.SetWriteDeadline(deadline)
		c.wmu.Lock()
		_ = c.nc.SetWriteDeadline(deadline)
		_, _ = c.nc.Write(f)
		c.wmu.Unlock()
	}
	c.nc.Close()
}

// idleLateSlack is how late an idle deadline may be noticed before the
// lateness is taken for a stall of the sensor rather than scheduling noise.
const idleLateSlack = 250 * time.Millisecond

// preHello handles a failure before the hello: the peer authenticated but
// does not speak the protocol, which is refused like any other peer.
func (c *conn) preHello(err error) {
	var ve *wire.VersionError
	reason := ""
	code := wire.CodeProtocol
	switch {
	case errors.As(err, &ve):
		reason = fmt.Sprintf("protocol version %d.%d not supported", ve.Major, ve.Minor)
		code = wire.CodeUnsupportedVersion
	case errors.Is(err, net.ErrClosed) || c.closed.Load():
		return
	case isTimeout(err):
		reason = "no hello within the hello timeout"
	case errors.Is(err, io.EOF):
		reason = "closed the connection before its hello"
	default:
		reason = "invalid first message: " + err.Error()
	}
	c.closeWith(code, reason)
	c.l.refuse(c.nc, c.remote, reason, &pki.RefusedError{Reason: reason, ID: c.id, Name: c.name})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *conn) serve(ctx context.Context) {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.l.opts.HelloTimeout))
	f, err := wire.ReadFrame(c.nc)
	if err == nil && f.Type != wire.TypeHello {
		err = fmt.Errorf("%s before hello", f.Type)
	}
	var h wire.Hello
	if err == nil {
		h, err = wire.DecodeHello(f.Payload)
	}
	if err != nil {
		c.preHello(err)
		return
	}
	if !c.helloAllowed(len(f.Payload)) {
		return
	}
	if ctx.Err() != nil {
		c.nc.Close()
		return
	}
	c.instance = h.Instance
	if !c.l.register(c) {
		return
	}
	if ctx.Err() != nil {
		c.l.unregister(c)
		c.nc.Close()
		return
	}
	// A revocation applied between the handshake and now found no
	// registered connection to close: check again now that it is one.
	if e, ok := c.l.trust.Lookup(c.fp); !ok || !e.Active() {
		c.l.unregister(c)
		c.closeWith(wire.CodeRevoked, "this endpoint's certificate was revoked")
		return
	}
	defer func() {
		c.nc.Close()
		d := c.disconnect()
		// Only the endpoint's current connection speaks for it, and the
		// sensor's own shutdown judges nobody.
		if c.l.unregister(c) && ctx.Err() == nil {
			c.l.corr.Disconnect(d)
		}
	}()
	if err := c.l.corr.Hello(c.sensorHello(h)); err != nil {
		c.l.log.Warn("LAN zone: hello refused by the correlator", "id", c.id, "err", err)
		c.closeWith(wire.CodeProtocol, err.Error())
		return
	}
	c.l.stats.hellos.Add(1)
	frames := append([][]byte{*c.l.cfgFrame.Load()}, c.l.atRiskFrames(time.Second)...)
	if err := c.write(frames...); err != nil {
		c.setCause(c.causeOf(err))
		return
	}
	beats := 0
	for {
		deadline := time.Now().Add(c.l.idleLimit())
		_ = c.nc.SetReadDeadline(deadline)
		f, err := wire.ReadFrame(c.nc)
		c.lastFrame.Store(time.Now().UnixNano())
		if err != nil {
			var ve *wire.VersionError
			switch {
			case errors.As(err, &ve):
				c.closeWith(wire.CodeUnsupportedVersion, ve.Error())
			case isTimeout(err) && time.Since(deadline) > idleLateSlack:
				// The deadline passed while the sensor itself was not
				// running (stopped, paused, starved): what the agent sent
				// meanwhile waits unread. A timed-out TLS read can be
				// retried; the silence is timed afresh.
				c.l.stats.idleStalled.Add(1)
				continue
			case isTimeout(err):
				c.l.stats.idleClosed.Add(1)
				c.setCause(schema.CauseIdleTimeout)
				c.closeWith(wire.CodeProtocol, "idle for 3 heartbeat intervals")
			case errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrShortFrame):
				c.closeWith(wire.CodeLimit, err.Error())
			default:
				// Set first by the sensor if it closed the connection itself
				// (replaced, revoked, shutdown, a failed push).
				c.setCause(c.causeOf(err))
			}
			return
		}
		switch f.Type {
		case wire.TypeHeartbeat:
			hb, err := wire.DecodeHeartbeat(f.Payload)
			if err != nil {
				c.closeWith(wire.CodeProtocol, err.Error())
				return
			}
			if err := c.l.corr.Heartbeat(schema.Heartbeat{EndpointID: c.id, Health: hb.Health, Reasons: hb.Reasons}); err != nil {
				c.closeWith(wire.CodeProtocol, err.Error())
				return
			}
			c.l.stats.heartbeats.Add(1)
			if hb.SentAt > 0 {
				c.l.stats.latency.observe(time.Duration(time.Now().UnixNano() - hb.SentAt))
			}
			beats++
			if beats%2 == 0 {
				if err := c.write(c.l.atRiskFrames(time.Second)...); err != nil {
					c.setCause(c.causeOf(err))
					return
				}
			}
		case wire.TypeHello:
			if !c.helloAllowed(len(f.Payload)) {
				return
			}
			h, err := wire.DecodeHello(f.Payload)
			if err != nil {
				c.closeWith(wire.CodeLimit, err.Error())
				return
			}
			if err := c.l.corr.Hello(c.sensorHello(h)); err != nil {
				c.closeWith(wire.CodeProtocol, err.Error())
				return
			}
			c.l.stats.hellos.Add(1)
		case wire.TypeError:
			e, _ := wire.DecodeError(f.Payload)
			c.l.log.Info("LAN zone: agent reported an error", "id", c.id, "code", e.Code, "message", e.Message)
			c.goodbye.Message = e.Code + ": " + e.Message
			c.setCause(schema.CauseAgentError)
			return
		case wire.TypeGoodbye:
			g, err := wire.DecodeGoodbye(f.Payload)
			if err != nil {
				c.closeWith(wire.CodeProtocol, err.Error())
				return
			}
			c.goodbye = g
			c.setCause(schema.CauseGoodbye)
			return
		default:
			// Unknown or sensor-to-agent types are ignored, so later minor
			// versions can add messages.
		}
	}
}

// disconnect says how the connection ended, for the correlator and the log.
func (c *conn) disconnect() schema.Disconnect {
	cause := schema.DisconnectCause(c.cause.Load())
	if cause == 0 {
		cause = schema.CauseTLSError
	}
	d := schema.Disconnect{EndpointID: c.id, Cause: cause, Message: c.goodbye.Message}
	if cause == schema.CauseGoodbye {
		d.Goodbye = c.goodbye.Reason
	}
	c.l.stats.ended[cause].Add(1)
	if cause == schema.CauseSensorShutdown {
		return d
	}
	c.l.log.Info("LAN zone: connection ended", "id", c.id, "name", c.name, "remote", c.remote.String(),
		"how", cause.String(), "goodbye", string(d.Goodbye))
	return d
}

// helloBudget is one endpoint's hello allowance. It outlives connections,
// so reconnecting does not refill it.
type helloBudget struct {
	count, bytes *rate.Limiter
}

// helloAllowed takes a hello of size bytes from the endpoint's budget. Past
// it, the connection is closed with a limit_exceeded error and a
// limit_exceeded event is raised (rate-limited like auth_failed).
func (c *conn) helloAllowed(size int) bool {
	o := &c.l.opts
	c.l.mu.Lock()
	b := c.l.budgets[c.id]
	if b == nil {
		b = &helloBudget{
			count: rate.NewLimiter(rate.Every(o.HelloEvery), o.HelloBurst),
			bytes: rate.NewLimiter(rate.Limit(o.HelloBytesPerSec), o.HelloBytesBurst),
		}
		c.l.budgets[c.id] = b
	}
	c.l.mu.Unlock()
	now := time.Now()
	why := ""
	switch {
	case !b.count.AllowN(now, 1):
		why = fmt.Sprintf("more hellos than the budget allows (%d at once, then one every %s): send a hello only when interfaces or users change", o.HelloBurst, o.HelloEvery)
	case !b.bytes.AllowN(now, size):
		why = fmt.Sprintf("hellos larger than the budget allows (%d KiB at once, then %d KiB/s)", o.HelloBytesBurst>>10, o.HelloBytesPerSec>>10)
	default:
		return true
	}
	c.l.stats.helloLimited.Add(1)
	c.closeWith(wire.CodeLimit, why)
	if ok, _, _ := c.l.authLimit.admit(c.remote.Addr(), "hello budget", now); ok {
		c.l.corr.Record(schema.Event{
			Type: schema.EventLimitExceeded, Severity: schema.SeverityWarning,
			EndpointID: c.id, EndpointName: c.name, Org: c.org,
			IPs:     []netip.Addr{c.remote.Addr()},
			Reason:  fmt.Sprintf("endpoint %s (%s) closed: %s", c.name, c.remote, why),
			Details: &schema.LimitExceededDetails{Peer: c.remote, Limit: "hello"},
		})
	}
	return false
}

func (c *conn) sensorHello(h wire.Hello) schema.Hello {
	out := schema.Hello{
		EndpointID: c.id, Name: c.name, Org: c.org,
		Health: h.Health, Reasons: h.Reasons, Users: h.Users, Remote: c.remote,
		Instance: h.Instance,
	}
	for _, itf := range h.Interfaces {
		out.Interfaces = append(out.Interfaces, schema.Interface{Name: itf.Name, MAC: itf.MAC, IPs: itf.IPs})
	}
	return out
}

// counters are the listener's running totals.
type counters struct {
	handshakes, resumed, refused, refusedCap atomic.Uint64
	hellos, heartbeats, pushes, idleClosed   atomic.Uint64
	helloLimited, duplicates, idleStalled    atomic.Uint64
	latency                                  histogram
	ended                                    [16]atomic.Uint64 // by schema.DisconnectCause
}

// Stats is a snapshot of the listener's counters.
type Stats struct {
	Connected  int    `json:"connected"`
	Handshakes uint64 `json:"handshakes"`
	Resumed    uint64 `json:"resumed"`
	Refused    uint64 `json:"refused"`
	RefusedCap uint64 `json:"refused_connection_cap"`
	Hellos     uint64 `json:"hellos"`
	Heartbeats uint64 `json:"heartbeats"`
	Pushes     uint64 `json:"at_risk_pushes"`
	IdleClosed uint64 `json:"idle_closed"`
	// Ended counts ended endpoint connections by how they ended
	// (schema.DisconnectCause names: "goodbye", "eof", "reset", ...).
	Ended map[string]uint64 `json:"ended,omitempty"`
	// HelloLimited counts connections closed for exceeding the hello budget.
	HelloLimited uint64 `json:"hello_limited"`
	// Duplicates counts connections refused because the same certificate
	// was connected from another address.
	Duplicates uint64 `json:"duplicate_identity_refused"`
	// IdleStalled counts idle deadlines that passed while the sensor was
	// not running: the connection was kept and its silence timed afresh.
	IdleStalled uint64 `json:"idle_deadlines_during_stall"`
	// Latency percentiles from an agent's sent_at to the correlator's
	// return, over heartbeats that carried sent_at (same clock only).
	LatencyP50 time.Duration `json:"latency_p50"`
	LatencyP99 time.Duration `json:"latency_p99"`
	LatencyMax time.Duration `json:"latency_max"`
	LatencyN   uint64        `json:"latency_samples"`
}

// Stats returns the listener's counters.
func (l *Listener) Stats() Stats {
	s := Stats{
		Connected:    l.Connected(),
		Handshakes:   l.stats.handshakes.Load(),
		Resumed:      l.stats.resumed.Load(),
		Refused:      l.stats.refused.Load(),
		RefusedCap:   l.stats.refusedCap.Load(),
		Hellos:       l.stats.hellos.Load(),
		Heartbeats:   l.stats.heartbeats.Load(),
		Pushes:       l.stats.pushes.Load(),
		IdleClosed:   l.stats.idleClosed.Load(),
		HelloLimited: l.stats.helloLimited.Load(),
		Duplicates:   l.stats.duplicates.Load(),
		IdleStalled:  l.stats.idleStalled.Load(),
	}
	for i := range l.stats.ended {
		if n := l.stats.ended[i].Load(); n > 0 {
			if s.Ended == nil {
				s.Ended = map[string]uint64{}
			}
			s.Ended[schema.DisconnectCause(i).String()] = n
		}
	}
	s.LatencyP50, s.LatencyP99, s.LatencyMax, s.LatencyN = l.stats.latency.summary()
	return s
}

// ResetLatency clears the latency histogram (benchmarks measure a steady
// state after warm-up).
func (l *Listener) ResetLatency() { l.stats.latency.reset() }

// LatencyHistogram returns the heartbeat-latency histogram since the start
// (or the last ResetLatency), for metrics: counts[i] heartbeats took less
// than bounds[i] and at least bounds[i-1]; the last count also holds every
// slower one. sum is the total of all observed latencies.
func (l *Listener) LatencyHistogram() (bounds []time.Duration, counts []uint64, sum time.Duration) {
	h := &l.stats.latency
	bounds, counts = make([]time.Duration, len(h.buckets)), make([]uint64, len(h.buckets))
	for i := range h.buckets {
		bounds[i], counts[i] = bucketUpper(i), h.buckets[i].Load()
	}
	return bounds, counts, time.Duration(h.sum.Load())
}

// histogram counts durations in buckets growing by 10 % from 10 µs.
type histogram struct {
	buckets [160]atomic.Uint64
	max     atomic.Int64
	sum     atomic.Int64
}

func bucketOf(d time.Duration) int {
	if d < 10*time.Microsecond {
		return 0
	}
	i := int(math.Log(float64(d)/float64(10*time.Microsecond))/math.Log(1.1)) + 1
	return min(i, 159)
}

func bucketUpper(i int) time.Duration {
	return time.Duration(float64(10*time.Microsecond) * math.Pow(1.1, float64(i)))
}

func (h *histogram) observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.buckets[bucketOf(d)].Add(1)
	h.sum.Add(int64(d))
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

func (h *histogram) reset() {
	for i := range h.buckets {
		h.buckets[i].Store(0)
	}
	h.max.Store(0)
	h.sum.Store(0)
}

func (h *histogram) summary() (p50, p99, max time.Duration, n uint64) {
	var counts [160]uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		n += counts[i]
	}
	if n == 0 {
		return 0, 0, 0, 0
	}
	q := func(p float64) time.Duration {
		target := uint64(math.Ceil(p * float64(n)))
		var acc uint64
		idx := sort.Search(len(counts), func(i int) bool {
			acc = 0
			for _, c := range counts[:i+1] {
				acc += c
			}
			return acc >= target
		})
		return bucketUpper(idx)
	}
	return q(0.50), q(0.99), time.Duration(h.max.Load()), n
}
