package lab

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

func TestMirrorCarriesWireSizedFramesWithChecksums(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ethtool")
	ctx := t.Context()
	l := upTwoEndpoints(t)
	c, err := startCapture(l.Sensor.Namespace, l.Sensor.Mirror)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	if err := l.TCPExchange(ctx, "ep1", "ep2", 9000, payload); err != nil {
		t.Fatal(err)
	}
	frames := c.stop()
	// Only the hosts ever send: the switch and the mirror port are silent.
	hosts := map[string]bool{l.Sensor.LAN.MAC: true}
	for _, e := range l.Endpoints {
		for _, i := range e.Interfaces {
			hosts[i.MAC] = true
		}
	}
	var payloadBytes, biggest, badSums int
	for _, f := range frames {
		if src := net.HardwareAddr(f[6:12]).String(); !hosts[src] {
			t.Errorf("mirror carried a frame from %s, which is no lab host: %s", src, describeFrame(f))
		}
		biggest = max(biggest, len(f))
		if len(f) > 1514 {
			t.Errorf("mirror carried a %d-byte frame: %s", len(f), describeFrame(f))
			break
		}
		if len(f) > 14+20+20 && f[12] == 0x08 && f[13] == 0x00 && f[14+9] == 6 {
			ihl := int(f[14]&0x0f) * 4
			thl := int(f[14+ihl+12]>>4) * 4
			payloadBytes += len(f) - 14 - ihl - thl
			if !tcpChecksumOK(f[14:]) {
				badSums++
			}
		}
	}
	if badSums > 0 {
		t.Errorf("%d of the mirrored TCP segments carry a wrong checksum", badSums)
	}
	// Both directions: the payload and its echo (more if a segment was
	// retransmitted: the mirror shows retransmissions too).
	if payloadBytes < 2*len(payload) {
		t.Errorf("mirror carried %d TCP payload bytes in %d frames (largest %d), want %d", payloadBytes, len(frames), biggest, 2*len(payload))
	}
}

// tcpChecksumOK verifies the TCP checksum of an IPv4 packet.
func tcpChecksumOK(ip []byte) bool {
	ihl := int(ip[0]&0x0f) * 4
	total := int(ip[2])<<8 | int(ip[3])
	seg := ip[ihl:total]
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ip[12:20]) // source and destination addresses
	sum += 6 + uint32(len(seg))
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestSendFramesCrossTheSwitchAndTheMirrorOnce(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ethtool")
	l := upTwoEndpoints(t)
	mirror, err := startCapture(l.Sensor.Namespace, l.Sensor.Mirror)
	if err != nil {
		t.Fatal(err)
	}
	ep2 := l.Endpoints[1].Interfaces[0]
	dst, err := startCapture(l.Endpoints[1].Namespace, ep2.Name)
	if err != nil {
		t.Fatal(err)
	}
	// Frames from a MAC no lab host owns, with a local experimental
	// EtherType.
	spoofed := net.HardwareAddr{0x02, 0xde, 0xad, 0xbe, 0xef, 0x01}
	var frames [][]byte
	for i := range 3 {
		f := append(append(append([]byte{}, ep2.HardwareAddr()...), spoofed...), 0x88, 0xb5)
		f = append(f, bytes.Repeat([]byte{byte(i)}, 100)...)
		frames = append(frames, f)
	}
	// And one tagged VLAN 42: the capture side's kernel moves the tag out of
	// the frame into the packet's ancillary data.
	tagged := append(append(append([]byte{}, ep2.HardwareAddr()...), spoofed...), 0x81, 0x00, 0x00, 42, 0x88, 0xb5)
	tagged = append(tagged, bytes.Repeat([]byte{9}, 100)...)
	untagged := append(append([]byte{}, tagged[:12]...), tagged[16:]...)
	if err := l.SendFrames("ep1", 0, append(frames, tagged)); err != nil {
		t.Fatal(err)
	}
	if err := l.SendFrames("ep1", 0, [][]byte{{1, 2, 3}}); err == nil {
		t.Error("a 3-byte frame was accepted")
	}
	want := append(frames, untagged)
	// The frames cross two veth pairs in softirq: wait until each capture
	// has them all, then a little longer for any duplicate.
	mirror.waitFor(want, 5*time.Second)
	dst.waitFor(want, 5*time.Second)
	time.Sleep(50 * time.Millisecond)
	for _, c := range []struct {
		name   string
		frames [][]byte
	}{{"mirror", mirror.stop()}, {"ep2", dst.stop()}} {
		for i, want := range want {
			n := 0
			for _, f := range c.frames {
				if bytes.Equal(f, want) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s saw frame %d %d times, want once", c.name, i, n)
			}
		}
	}
}

// waitFor returns once c has read every frame in want, or after timeout.
func (c *frameCapture) waitFor(want [][]byte, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		missing := slices.ContainsFunc(want, func(w []byte) bool {
			return !slices.ContainsFunc(c.frames, func(f []byte) bool { return bytes.Equal(f, w) })
		})
		c.mu.Unlock()
		if !missing {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWaitSwitchingNamesLinksThatAreNotUp(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc", "ethtool", "bridge")
	ctx := t.Context()
	l := upTwoEndpoints(t)
	if err := l.waitSwitching(ctx); err != nil {
		t.Fatalf("right after Up: %v", err)
	}
	if err := l.SetPortLink(ctx, "ep2", 0, false); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err := l.waitSwitching(short)
	port := l.Endpoints[1].Interfaces[0].Port
	if err == nil || !strings.Contains(err.Error(), "switch port "+port) {
		t.Fatalf("with ep2's port down: %v, want an error naming switch port %s", err, port)
	}
	t.Logf("with ep2's port down: %v", err)
	if err := l.SetPortLink(ctx, "ep2", 0, true); err != nil {
		t.Fatal(err)
	}
	if err := l.waitSwitching(ctx); err != nil {
		t.Fatalf("with ep2's port back up: %v", err)
	}
}

// upTwoEndpoints brings up a lab with two endpoints, taken down when the
// test ends.
func upTwoEndpoints(t *testing.T) *Lab {
	t.Helper()
	l, err := Up(t.Context(), Config{Name: testenv.UniqueName("tbl"), StateDir: t.TempDir(), Endpoints: Endpoints(2)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return l
}
