package capture

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

// recSink records everything capture reports.
type recSink struct {
	mu     sync.Mutex
	tx     map[schema.MAC][2]uint64 // packets, bytes
	last   map[schema.MAC]time.Time
	ips    map[schema.MAC]map[string]bool
	flows  []schema.Flow
	health []schema.CaptureHealth
	binds  []schema.Binding
}

func newRecSink() *recSink {
	return &recSink{tx: map[schema.MAC][2]uint64{}, last: map[schema.MAC]time.Time{}, ips: map[schema.MAC]map[string]bool{}}
}

func (s *recSink) Traffic(b []schema.TrafficSummary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range b {
		c := s.tx[t.MAC]
		s.tx[t.MAC] = [2]uint64{c[0] + t.Packets, c[1] + t.Bytes}
		if t.LastSeen.After(s.last[t.MAC]) {
			s.last[t.MAC] = t.LastSeen
		}
		if s.ips[t.MAC] == nil {
			s.ips[t.MAC] = map[string]bool{}
		}
		for _, ip := range t.IPs {
			s.ips[t.MAC][ip.String()] = true
		}
	}
}

func (s *recSink) FlowStarts(f []schema.Flow) {
	s.mu.Lock()
	s.flows = append(s.flows, f...)
	s.mu.Unlock()
}

func (s *recSink) CaptureHealth(h schema.CaptureHealth) {
	s.mu.Lock()
	s.health = append(s.health, h)
	s.mu.Unlock()
}

func (s *recSink) Bindings(b []schema.Binding) {
	s.mu.Lock()
	s.binds = append(s.binds, b...)
	s.mu.Unlock()
}

func (s *recSink) counts(m schema.MAC) [2]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tx[m]
}

func (s *recSink) lastHealth() (schema.CaptureHealth, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.health) == 0 {
		return schema.CaptureHealth{}, 0
	}
	return s.health[len(s.health)-1], len(s.health)
}

func (s *recSink) drops() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n uint64
	for _, h := range s.health {
		n += h.Drops
	}
	return n
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// liveLab is a veth pair: frames are sent from the end inside a namespace
// and captured on the end in the test's own namespace.
type liveLab struct {
	ns       *testenv.Netns
	send, in string
}

func newLiveLab(t testing.TB, mtu int) *liveLab {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip")
	ns := testenv.NewNetns(t)
	a, b := testenv.Veth(t, ns, nil)
	if mtu > 0 {
		ns.Run(t, "ip", "link", "set", a, "mtu", strconv.Itoa(mtu))
		testenv.Run(t, "ip", "link", "set", b, "mtu", strconv.Itoa(mtu))
	}
	return &liveLab{ns: ns, send: a, in: b}
}

// inject writes raw frames on the namespace's end of the pair.
func (l *liveLab) inject(t testing.TB, frames [][]byte, repeat int) {
	t.Helper()
	var err error
	l.ns.Do(t, func() {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName(l.send); err != nil {
			return
		}
		var c *packet.Conn
		if c, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil); err != nil {
			return
		}
		defer c.Close()
		for range repeat {
			for _, f := range frames {
				for {
					_, err = c.WriteTo(f, &packet.Addr{HardwareAddr: f[0:6]})
					if err == nil || !isNoBuffers(err) {
						break
					}
					time.Sleep(time.Millisecond)
				}
				if err != nil {
					return
				}
			}
		}
	})
	if err != nil {
		t.Fatalf("inject frames on %s: %v", l.send, err)
	}
}

func isNoBuffers(err error) bool {
	return errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN)
}

func startLive(t *testing.T, cfg LiveConfig, sink Sink) (*Live, func()) {
	t.Helper()
	l, err := NewLive(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { stopLive(t, cancel, done) }) }
	t.Cleanup(stop)
	return l, stop
}

func stopLive(t *testing.T, cancel func(), done chan error) {
	{
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			var buf strings.Builder
			pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Errorf("Run did not return within 5 s of cancellation:\n%s", buf.String())
		}
	}
}

var (
	tbSrc1 = schema.MustParseMAC("02:7b:00:00:00:01")
	tbSrc2 = schema.MustParseMAC("02:7b:00:00:00:02")
	tbSrc3 = schema.MustParseMAC("02:7b:00:00:00:03")
	tbDst  = schema.MustParseMAC("02:7b:00:00:00:ff")
)

// waitHealthy waits for the first healthy report, so frames are sent only
// once the sockets are open.
func waitHealthy(t *testing.T, s *recSink) {
	t.Helper()
	waitFor(t, "capture to report the interface up", 5*time.Second, func() bool {
		h, _ := s.lastHealth()
		return h.Up
	})
}

func TestLiveCountsEveryFrameExactly(t *testing.T) {
	lab := newLiveLab(t, 9000)
	sink := newRecSink()
	startLive(t, LiveConfig{Interfaces: []string{lab.in}, Workers: 2}, sink)
	waitHealthy(t, sink)

	plain := testFrame(tbSrc1, tbDst, nil, 60)
	dot1q := testFrame(tbSrc2, tbDst, []uint16{EtherTypeVLAN, 10}, 200)
	qinq := testFrame(tbSrc2, tbDst, []uint16{EtherTypeQinQ, 20, EtherTypeVLAN, 30}, 300)
	jumbo := testFrame(tbSrc3, tbDst, nil, 9014)
	const n = 500
	before := time.Now()
	lab.inject(t, [][]byte{plain, dot1q, qinq, jumbo}, n)

	want := map[schema.MAC][2]uint64{
		tbSrc1: {n, n * 60},
		tbSrc2: {2 * n, n * (200 + 300)},
		tbSrc3: {n, n * 9014},
	}
	waitFor(t, "every injected frame to be counted", 10*time.Second, func() bool {
		for m, w := range want {
			if sink.counts(m) != w {
				return false
			}
		}
		return true
	})
	time.Sleep(600 * time.Millisecond) // nothing more may arrive
	for m, w := range want {
		if got := sink.counts(m); got != w {
			t.Errorf("%s: %d frames / %d bytes, want %d / %d", m, got[0], got[1], w[0], w[1])
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if last := sink.last[tbSrc3]; last.Before(before.Add(-time.Second)) || last.After(time.Now()) {
		t.Errorf("LastSeen %v is not a packet time of this test", last)
	}
	if !sink.ips[tbSrc1]["198.51.100.1"] {
		t.Errorf("source address of %s not reported: %v", tbSrc1, sink.ips[tbSrc1])
	}
	// One UDP 5-tuple per sender: the first datagram starts a flow, the
	// following n-1 do not.
	flows := map[schema.MAC]int{}
	for _, f := range sink.flows {
		flows[f.SrcMAC]++
	}
	for _, m := range []schema.MAC{tbSrc1, tbSrc3} {
		if flows[m] != 1 {
			t.Errorf("%s: %d flow starts, want 1 (%v)", m, flows[m], sink.flows)
		}
	}
	var drops uint64
	for _, h := range sink.health {
		drops += h.Drops
		if !h.Up || h.Interface != lab.in {
			t.Errorf("unexpected health report %+v", h)
		}
	}
	if drops != 0 {
		t.Errorf("%d frames dropped at a gentle rate", drops)
	}
}

func TestLiveFallbackSocketCounts(t *testing.T) {
	lab := newLiveLab(t, 0)
	sink := newRecSink()
	startLive(t, LiveConfig{Interfaces: []string{lab.in}, Fallback: true}, sink)
	waitHealthy(t, sink)
	lab.inject(t, [][]byte{testFrame(tbSrc1, tbDst, nil, 100)}, 300)
	waitFor(t, "300 frames through the fallback socket", 10*time.Second, func() bool {
		return sink.counts(tbSrc1) == [2]uint64{300, 300 * 100}
	})
}

func TestLiveLinkDownAndUp(t *testing.T) {
	lab := newLiveLab(t, 0)
	sink := newRecSink()
	l, _ := startLive(t, LiveConfig{Interfaces: []string{lab.in}, Workers: 2, Reopen: 100 * time.Millisecond}, sink)
	waitHealthy(t, sink)
	frame := testFrame(tbSrc1, tbDst, nil, 80)
	lab.inject(t, [][]byte{frame}, 100)
	waitFor(t, "the first 100 frames", 5*time.Second, func() bool { return sink.counts(tbSrc1)[0] == 100 })

	for _, c := range []struct {
		name      string
		down, up  func()
		reasonHas string
	}{
		{"peer down (carrier lost)",
			func() { lab.ns.Run(t, "ip", "link", "set", lab.send, "down") },
			func() { lab.ns.Run(t, "ip", "link", "set", lab.send, "up") }, "no link"},
		{"capture interface down",
			func() { testenv.Run(t, "ip", "link", "set", lab.in, "down") },
			func() { testenv.Run(t, "ip", "link", "set", lab.in, "up") }, ""},
		{"capture interface gone (a NIC unplugged)",
			func() { testenv.Run(t, "ip", "link", "del", lab.in) },
			func() { // plugged back: a new interface of the same name
				testenv.Run(t, "ip", "link", "add", lab.in, "type", "veth", "peer", "name", lab.send, "netns", lab.ns.Name)
				testenv.Run(t, "ip", "link", "set", lab.in, "up")
				lab.ns.Run(t, "ip", "link", "set", lab.send, "up")
			}, "gone"},
	} {
		c.down()
		waitFor(t, c.name+" reported", 5*time.Second, func() bool {
			h, _ := sink.lastHealth()
			return !h.Up && h.Reason != ""
		})
		h, _ := sink.lastHealth()
		if !strings.Contains(h.Reason, c.reasonHas) || !strings.Contains(h.Reason, lab.in) {
			t.Errorf("%s: reason %q should name %s and say %q", c.name, h.Reason, lab.in, c.reasonHas)
		}
		c.up()
		waitHealthy(t, sink)
	}
	// Wait for the peer's link to be running again before sending.
	time.Sleep(200 * time.Millisecond)
	lab.inject(t, [][]byte{frame}, 100)
	waitFor(t, "100 more frames after the interface came back", 5*time.Second, func() bool {
		return sink.counts(tbSrc1)[0] == 200
	})
	if r := l.Stats().Reopens; r < 3 {
		t.Errorf("%d reopens, want at least 3", r)
	}
}

func TestLiveTinyRingReportsDrops(t *testing.T) {
	lab := newLiveLab(t, 0)
	sink := newRecSink()
	ring := RingConfig{RingBytes: 2 * 4096, BlockBytes: 4096, BlockTimeout: 50 * time.Millisecond}
	l, stop := startLive(t, LiveConfig{Interfaces: []string{lab.in}, Ring: ring}, sink)
	waitHealthy(t, sink)
	const sent = 20000
	frame := testFrame(tbSrc1, tbDst, nil, 1000)
	lab.inject(t, [][]byte{frame}, sent)
	waitFor(t, "drops to be reported", 5*time.Second, func() bool { return sink.drops() > 0 })
	time.Sleep(500 * time.Millisecond)
	stop()
	got := sink.counts(tbSrc1)[0]
	st := l.Stats()
	if got >= sent {
		t.Fatalf("all %d frames arrived through a one-block ring: the test did not flood it", got)
	}
	// The kernel's own count (drops included) covers every frame sent,
	// and the frames received plus those dropped add up to it.
	if st.Packets < sent || got+st.Drops < sent {
		t.Errorf("sent %d: received %d, kernel handled %d and dropped %d", sent, got, st.Packets, st.Drops)
	}
	if sink.drops() != st.Drops {
		t.Errorf("health reports %d drops, counters %d", sink.drops(), st.Drops)
	}
}

// testFrameTCP builds a TCP SYN from src to dst port.
func testFrameTCP(src, dst schema.MAC, port uint16) []byte {
	b := testFrame(src, dst, nil, 60)
	b[14+9] = ProtoTCP
	binary.BigEndian.PutUint16(b[14+22:], port)
	b[14+20+12] = 5 << 4
	b[14+20+13] = tcpFlagSYN
	return b
}

func TestLiveHeartbeatChannelAndBindings(t *testing.T) {
	lab := newLiveLab(t, 0)
	sink := newRecSink()
	startLive(t, LiveConfig{Interfaces: []string{lab.in}}, sink)
	waitHealthy(t, sink)
	// A heartbeat connection already established when capture started:
	// no SYN, only acknowledgements to the LAN-zone port.
	ack := testFrameTCP(tbSrc2, tbDst, DefaultLANPort)
	ack[14+20+13] = tcpFlagACK
	syn := testFrameTCP(tbSrc1, tbDst, 443)
	arp := serialize(t,
		&layers.Ethernet{SrcMAC: net.HardwareAddr(tbSrc3[:]), DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPReply, SourceHwAddress: tbSrc3[:], SourceProtAddress: []byte{192, 0, 2, 33},
			DstHwAddress: make([]byte, 6), DstProtAddress: []byte{192, 0, 2, 33}})
	lab.inject(t, [][]byte{ack, syn, arp}, 3)
	waitFor(t, "the frames", 5*time.Second, func() bool { return sink.counts(tbSrc3)[0] == 3 && sink.counts(tbSrc2)[0] == 3 })
	time.Sleep(300 * time.Millisecond)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var hb, syns int
	for _, f := range sink.flows {
		switch {
		case f.SrcMAC == tbSrc2 && f.DstPort == DefaultLANPort && f.Proto == ProtoTCP:
			hb++
		case f.SrcMAC == tbSrc1 && f.DstPort == 443:
			syns++
		}
	}
	if hb != 1 || syns != 3 {
		t.Errorf("heartbeat-channel flow starts %d (want 1), SYN flow starts %d (want 3): %+v", hb, syns, sink.flows)
	}
	var arpSeen bool
	for _, b := range sink.binds {
		if b.Source == SourceARP && b.MAC == tbSrc3 && b.IP.String() == "192.0.2.33" {
			arpSeen = true
		}
	}
	if !arpSeen {
		t.Errorf("gratuitous ARP binding not reported: %+v", sink.binds)
	}
}

// TestLiveIgnoresFramesTheHostSends sends frames out of the captured
// interface itself: the built-in filters of both the ring and the fallback
// socket drop them, while frames arriving on it are counted.
func TestLiveIgnoresFramesTheHostSends(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(map[bool]string{false: "ring", true: "fallback"}[fallback], func(t *testing.T) {
			lab := newLiveLab(t, 0)
			sink := newRecSink()
			startLive(t, LiveConfig{Interfaces: []string{lab.in}, Fallback: fallback}, sink)
			waitHealthy(t, sink)
			ifi, err := net.InterfaceByName(lab.in)
			if err != nil {
				t.Fatal(err)
			}
			c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ALL, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			own := testFrame(tbSrc2, tbDst, nil, 100)
			for range 50 {
				if _, err := c.WriteTo(own, &packet.Addr{HardwareAddr: own[0:6]}); err != nil {
					t.Fatalf("send on %s: %v", lab.in, err)
				}
			}
			lab.inject(t, [][]byte{testFrame(tbSrc1, tbDst, nil, 100)}, 50)
			waitFor(t, "the 50 arriving frames", 10*time.Second, func() bool {
				return sink.counts(tbSrc1) == [2]uint64{50, 50 * 100}
			})
			time.Sleep(1200 * time.Millisecond) // a whole traffic period more
			if got := sink.counts(tbSrc2); got != [2]uint64{} {
				t.Errorf("frames the host sent were counted: %d frames, %d bytes", got[0], got[1])
			}
		})
	}
}
