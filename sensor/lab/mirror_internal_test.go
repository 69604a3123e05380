package lab

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/testenv"
)

func TestMirrorCarriesWireSizedFramesOnly(t *testing.T) {
	t.Parallel()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ip", "tc")
	ctx := t.Context()
	l, err := Up(ctx, Config{Name: testenv.UniqueName("tbl"), StateDir: t.TempDir(), Endpoints: Endpoints(2)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Error(err)
		}
	})
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
	var payloadBytes, biggest int
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
		}
	}
	// Both directions: the payload and its echo (more if a segment was
	// retransmitted: the mirror shows retransmissions too).
	if payloadBytes < 2*len(payload) {
		t.Errorf("mirror carried %d TCP payload bytes in %d frames (largest %d), want %d", payloadBytes, len(frames), biggest, 2*len(payload))
	}
}
