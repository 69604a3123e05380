package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"golang.org/x/net/bpf"
)

// openTestRing opens a ring on the lab's capture end and fails the test if
// it is not the direct reader.
func openTestRing(t *testing.T, lab *liveLab, cfg RingConfig) *RingSource {
	t.Helper()
	cfg.Interface = lab.in
	r, err := OpenRing(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if direct, why := r.Direct(); !direct {
		t.Fatalf("ring on %s is read through gopacket: %v", lab.in, why)
	}
	return r
}

// readN reads frames until want arrived, or the ring ran dry once sent
// returned true, or timeout passed; it copies each frame.
func readN(t *testing.T, r *RingSource, want int, sent func() bool, timeout time.Duration) (frames []Packet, batches []int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var ps [batchSize]Packet
	for len(frames) < want && time.Now().Before(deadline) {
		done := sent()
		n, err := r.readBatch(ps[:])
		for _, p := range ps[:n] {
			p.Data = bytes.Clone(p.Data)
			frames = append(frames, p)
		}
		if n > 0 {
			batches = append(batches, n)
		}
		if errors.Is(err, ErrNoPacket) && done {
			break
		}
		if err != nil && !errors.Is(err, ErrNoPacket) {
			t.Errorf("read: %v", err)
			break
		}
	}
	return frames, batches
}

func always() bool { return true }

// ours keeps the frames sent from one of srcs.
func ours(frames []Packet, srcs ...[6]byte) []Packet {
	var out []Packet
	for _, p := range frames {
		for _, m := range srcs {
			if bytes.Equal(p.Data[6:12], m[:]) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// fromMAC accepts only frames sent by src, so frames the system sends on
// its own (IPv6 neighbour discovery) stay out of exact counts.
func fromMAC(t testing.TB, src [6]byte) []bpf.RawInstruction {
	t.Helper()
	f, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 6, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: binary.BigEndian.Uint32(src[:4]), SkipFalse: 3},
		bpf.LoadAbsolute{Off: 10, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(binary.BigEndian.Uint16(src[4:])), SkipFalse: 1},
		bpf.RetConstant{Val: 0x40000},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRingWalksManyFramesPerBlock sends numbered frames through a ring of
// small blocks, so each block holds many frames and the reader goes round
// the ring several times: every frame must come out once, whole, in order.
// Frames go in chunks well under the ring's capacity and each chunk is read
// before the next is sent, so no frame may be dropped however slow the
// machine is.
func TestRingWalksManyFramesPerBlock(t *testing.T) {
	lab := newLiveLab(t, 0)
	r := openTestRing(t, lab, RingConfig{RingBytes: 32 * 4096, BlockBytes: 4096, BlockTimeout: 5 * time.Millisecond, Filter: fromMAC(t, tbSrc1)})
	const sent, chunk = 3000, 200 // a 4 KiB block holds about 20 such frames: 32 blocks hold over 600
	frames := make([][]byte, sent)
	for i := range frames {
		f := testFrame(tbSrc1, tbDst, nil, 60+i%40)
		binary.BigEndian.PutUint32(f[14+28:], uint32(i))
		frames[i] = f
	}
	var got []Packet
	var batches []int
	start := time.Now().UnixNano()
	for from := 0; from < sent; from += chunk {
		lab.inject(t, frames[from:from+chunk], 1)
		part, b := readN(t, r, chunk, always, 10*time.Second)
		got, batches = append(got, part...), append(batches, b...)
	}
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != sent || st.Packets != sent || st.Drops != 0 {
		t.Fatalf("sent %d in chunks of %d: read %d, kernel counted %d with %d drops", sent, chunk, len(got), st.Packets, st.Drops)
	}
	prev := -1
	for _, p := range got {
		i := int(binary.BigEndian.Uint32(p.Data[14+28:]))
		if i <= prev || i >= sent {
			t.Fatalf("frame %d after frame %d", i, prev)
		}
		prev = i
		if !bytes.Equal(p.Data, frames[i]) || p.WireLen != len(frames[i]) {
			t.Fatalf("frame %d: %d bytes (wire %d), want %d bytes equal to those sent", i, len(p.Data), p.WireLen, len(frames[i]))
		}
		if p.Time < start-int64(time.Second) || p.Time > time.Now().UnixNano() {
			t.Fatalf("frame %d: time %d is not a time of this test", i, p.Time)
		}
	}
	most := 0
	for _, n := range batches {
		most = max(most, n)
	}
	if most < 2 {
		t.Errorf("never more than %d frame per batch over %d batches: blocks were not walked", most, len(batches))
	}
}

// TestRingCutsFramesAtSnapLength gives the ring a filter that keeps only
// the first 100 bytes: frames come out cut, with their length on the wire.
func TestRingCutsFramesAtSnapLength(t *testing.T) {
	lab := newLiveLab(t, 9000)
	filter, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 100}})
	if err != nil {
		t.Fatal(err)
	}
	r := openTestRing(t, lab, RingConfig{RingBytes: 1 << 20, BlockBytes: 1 << 16, BlockTimeout: 5 * time.Millisecond, Filter: filter})
	big := testFrame(tbSrc1, tbDst, nil, 1000)
	jumbo := testFrame(tbSrc3, tbDst, nil, 9014)
	lab.inject(t, [][]byte{big, jumbo}, 10)
	all, _ := readN(t, r, 1<<30, always, 5*time.Second)
	got := ours(all, tbSrc1, tbSrc3)
	if len(got) != 20 {
		t.Fatalf("read %d frames, want 20", len(got))
	}
	for i, p := range got {
		want := big
		if i%2 == 1 {
			want = jumbo
		}
		if len(p.Data) != 100 || !bytes.Equal(p.Data, want[:100]) || p.WireLen != len(want) {
			t.Errorf("frame %d: %d bytes captured, %d on the wire; want the first 100 of %d", i, len(p.Data), p.WireLen, len(want))
		}
	}
}

// TestRingPutsVLANTagsBack sends 802.1Q and 802.1ad frames: the kernel
// takes the outer tag out, and the ring reader must hand the frame out as
// it was sent, tag and TPID included. The built-in filter cuts the
// single-tagged and the untagged UDP frames to their headers (the tag put
// back in front) and keeps the double-tagged one whole; the wire length is
// the sent length either way.
func TestRingPutsVLANTagsBack(t *testing.T) {
	lab := newLiveLab(t, 0)
	r := openTestRing(t, lab, RingConfig{RingBytes: 1 << 20, BlockBytes: 1 << 16, BlockTimeout: 5 * time.Millisecond})
	dot1q := testFrame(tbSrc2, tbDst, []uint16{EtherTypeVLAN, 0x2000 | 10}, 200) // priority 1, VLAN 10
	qinq := testFrame(tbSrc2, tbDst, []uint16{EtherTypeQinQ, 20, EtherTypeVLAN, 30}, 300)
	plain := testFrame(tbSrc1, tbDst, nil, 64)
	sent := [][]byte{dot1q, qinq, plain}
	lab.inject(t, sent, 5)
	all, _ := readN(t, r, 1<<30, always, 5*time.Second)
	got := ours(all, tbSrc1, tbSrc2)
	if len(got) != 15 {
		t.Fatalf("read %d frames, want 15", len(got))
	}
	var h Header
	cut := 14 + 20 + transportBytes // dot1q and plain are IPv4 UDP
	kept := [...]int{cut + vlanLen, len(qinq), cut}
	for i, p := range got {
		want := sent[i%3]
		if len(p.Data) != kept[i%3] || !bytes.Equal(p.Data, want[:kept[i%3]]) || p.WireLen != len(want) {
			t.Errorf("frame %d: %d bytes % x (wire %d)\nwant %d bytes % x (%d)", i, len(p.Data), p.Data[:20], p.WireLen, kept[i%3], want[:20], len(want))
			continue
		}
		wantTags := [...]struct {
			n    uint8
			vlan [maxVLANTags]uint16
		}{{1, [2]uint16{10}}, {2, [2]uint16{20, 30}}, {0, [2]uint16{}}}[i%3]
		if !ParseHeader(p.Data, &h) || h.Tags != wantTags.n || h.VLAN != wantTags.vlan || h.Src != tbSrc2.Uint64() && i%3 != 2 {
			t.Errorf("frame %d parses as %d tags %v from %x, want %d tags %v", i, h.Tags, h.VLAN, h.Src, wantTags.n, wantTags.vlan)
		}
	}
}

// TestLiveGopacketRingCounts keeps the fallback reader honest: the same
// exact counts through gopacket's ring, VLAN tags included.
func TestLiveGopacketRingCounts(t *testing.T) {
	lab := newLiveLab(t, 0)
	sink := newRecSink()
	startLive(t, LiveConfig{Interfaces: []string{lab.in}, Ring: RingConfig{Gopacket: true}}, sink)
	waitHealthy(t, sink)
	plain := testFrame(tbSrc1, tbDst, nil, 60)
	dot1q := testFrame(tbSrc2, tbDst, []uint16{EtherTypeVLAN, 10}, 200)
	lab.inject(t, [][]byte{plain, dot1q}, 200)
	waitFor(t, "every frame through gopacket's ring", 10*time.Second, func() bool {
		return sink.counts(tbSrc1) == [2]uint64{200, 200 * 60} && sink.counts(tbSrc2) == [2]uint64{200, 200 * 200}
	})
}

// BenchmarkRingRead is the ring reader alone, direct against gopacket's:
// frames are sent onto a veth pair with the timer stopped, then read back
// out of the ring. One op is one frame; ns/frame is the time spent reading.
func BenchmarkRingRead(b *testing.B) {
	for _, c := range []struct {
		name     string
		gopacket bool
	}{{"direct", false}, {"gopacket", true}} {
		b.Run(c.name, func(b *testing.B) {
			lab := newLiveLab(b, 0)
			r, err := OpenRing(RingConfig{Interface: lab.in, RingBytes: 64 << 20, BlockTimeout: time.Millisecond,
				Filter: fromMAC(b, tbSrc1), Gopacket: c.gopacket})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			frames := make([][]byte, 500) // the peer's backlog holds 1,000
			for i := range frames {
				frames[i] = testFrame(tbSrc1, tbDst, nil, 60+i%200)
			}
			// Sending takes far longer than reading, and StopTimer reads
			// the memory statistics (a stop-the-world) each time, so the
			// reads are timed by hand: ns/frame is the figure.
			var p Packet
			var bytes uint64
			var reading time.Duration
			for done := 0; done < b.N; {
				n := min(b.N-done, len(frames))
				lab.inject(b, frames[:n], 1)
				time.Sleep(3 * time.Millisecond) // the block retires
				start := time.Now()
				for i := 0; i < n; i++ {
					if err := r.Read(&p); err != nil {
						b.Fatalf("frame %d of %d: %v", i, n, err)
					}
					bytes += uint64(p.WireLen)
				}
				reading += time.Since(start)
				done += n
			}
			b.ReportMetric(float64(reading.Nanoseconds())/float64(b.N), "ns/frame")
			if bytes == 0 {
				b.Fatal("nothing read")
			}
		})
	}
}

// TestRingBlocksDefault: the default block is 1 MiB, a small ring still
// gets minRingBlocks blocks of whole pages, and a block size set
// explicitly is kept.
func TestRingBlocksDefault(t *testing.T) {
	page := unix.Getpagesize()
	cases := []struct {
		cfg  RingConfig
		want int
	}{
		{RingConfig{}, 1 << 20},
		{RingConfig{RingBytes: 256 << 20}, 1 << 20},
		{RingConfig{RingBytes: 4 << 20}, 256 << 10},
		{RingConfig{RingBytes: 1 << 20}, 64 << 10},
		{RingConfig{RingBytes: 3 * page}, page},
		{RingConfig{RingBytes: 1 << 20, BlockBytes: 8 * page}, 8 * page},
	}
	for _, c := range cases {
		got := c.cfg.withDefaults()
		if got.BlockBytes != c.want || got.BlockBytes%page != 0 {
			t.Errorf("ring of %d bytes, block %d: default block %d, want %d", c.cfg.RingBytes, c.cfg.BlockBytes, got.BlockBytes, c.want)
		}
	}
}
