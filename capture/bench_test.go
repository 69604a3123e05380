package capture

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tapbeat/tapbeat/capture/internal/synth"
)

// synthFrames returns n synthetic frames held in memory.
func synthFrames(b *testing.B, n int) [][]byte {
	b.Helper()
	var buf bytes.Buffer
	if _, err := synth.Write(&buf, synth.Config{Frames: n, MACs: 5000}); err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(b.TempDir(), "frames.pcap")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return framesOf(b, p)
}

// BenchmarkWorkerPacket is the per-packet path alone: parse, per-MAC
// accounting, flow starts and control-plane decoding, over 5,000 stations.
// One op is one frame; it must report 0 allocs/op.
func BenchmarkWorkerPacket(b *testing.B) {
	frames := synthFrames(b, 200_000)
	w := newWorker(Options{})
	w.fold, w.rx = true, true
	for i, f := range frames { // warm the tables up
		w.packet(f, len(f), int64(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		w.packet(f, len(f), int64(i))
	}
}

// BenchmarkWorkerBatch is the live per-packet path: frames accounted in
// batches of up to 32 as the ring hands them out, the period handed over
// every 25,000 frames and the stations' traffic with it every 100,000 (a
// 250 ms period and a 1 s traffic period at 100 kpps). One op is one
// frame; it must report 0 allocs/op once the tables have grown.
func BenchmarkWorkerBatch(b *testing.B) {
	frames := synthFrames(b, 200_000)
	ps := make([]Packet, len(frames))
	for i, f := range frames {
		ps[i] = Packet{Data: f, WireLen: len(f), Time: int64(i)}
	}
	w := newWorker(Options{})
	spare := &period{}
	run := func(from, n int) {
		for done := 0; done < n; {
			i := (from + done) % len(ps)
			k := min(batchSize, len(ps)-i, n-done)
			w.batch(ps[i : i+k])
			done += k
			if (from+done)%25_000 < k {
				p := w.take(spare, (from+done)%100_000 < k)
				p.reset()
				spare = p
			}
		}
	}
	run(0, 2*len(ps)) // warm the tables up
	b.ReportAllocs()
	b.ResetTimer()
	run(0, b.N)
}

// BenchmarkReplayFile replays a synthetic pcap from the page cache (1M
// frames, or the file TAPBEAT_BENCH_PCAP names); one op is the whole file.
func BenchmarkReplayFile(b *testing.B) {
	p := os.Getenv("TAPBEAT_BENCH_PCAP")
	if p == "" {
		p = filepath.Join(b.TempDir(), "synth.pcap")
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := synth.Write(f, synth.Config{Frames: 1_000_000, MACs: 5000}); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	var frames uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src, err := OpenFile(p)
		if err != nil {
			b.Fatal(err)
		}
		rep, err := Replay(context.Background(), src, nil, Options{})
		if err != nil {
			b.Fatal(err)
		}
		frames += rep.Records
		src.Close()
	}
	b.ReportMetric(float64(frames)/b.Elapsed().Seconds()/1e6, "Mpps")
}

// BenchmarkControlDecoder decodes the control-plane frames of the recorded
// captures (ARP, DHCP, NDP) in turn. One op is one frame.
func BenchmarkControlDecoder(b *testing.B) {
	var frames [][]byte
	for _, name := range []string{"ping-arp.pcap", "dhcp.pcap", "ndp.pcap"} {
		for _, f := range framesOf(b, "../testdata/capture/"+name) {
			var h Header
			if ParseHeader(f, &h) && isControl(&h) {
				frames = append(frames, f)
			}
		}
	}
	if len(frames) == 0 {
		b.Fatal("no control-plane frames in the recorded captures")
	}
	d := NewControlDecoder()
	var ev []Evidence
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev = d.Decode(frames[i%len(frames)], ev[:0])
	}
}

// BenchmarkForgedMACs is a host flooding frames from 4,096 forged source
// MACs chosen to collide under Fibonacci hashing, against 4,096 ordinary
// MACs (sub-benchmark "ordinary"). One op is one frame.
func BenchmarkForgedMACs(b *testing.B) {
	for _, tc := range []struct {
		name string
		macs []uint64
	}{
		{"ordinary", func() []uint64 {
			m := make([]uint64, 4096)
			for i := range m {
				m[i] = 0x020000000000 | uint64(i)*0x10001
			}
			return m
		}()},
		{"forged", craftedMACs(4096)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			frames := make([][]byte, len(tc.macs))
			for i, m := range tc.macs {
				f := make([]byte, 64)
				for j := range 6 {
					f[j] = 0xff
					f[6+j] = byte(m >> (40 - 8*j))
				}
				f[12], f[13] = 0x88, 0xb5 // a local experimental EtherType
				frames[i] = f
			}
			w := newWorker(Options{})
			for _, f := range frames {
				w.packet(f, len(f), 0)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f := frames[i%len(frames)]
				w.packet(f, len(f), 1)
			}
		})
	}
}
