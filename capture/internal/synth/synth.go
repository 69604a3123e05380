// Package synth writes large synthetic Ethernet captures for benchmarks and
// load tests: many stations exchanging a mix of TCP (45 %, one in 16 a SYN),
// UDP (45 %) and ARP (10 %) frames of bimodal sizes, each station with eight
// peers and one source port per peer and service. The output is
// deterministic for a given Config.
package synth

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Config describes a synthetic capture.
type Config struct {
	Frames int       // number of frames (default 4,000,000)
	MACs   int       // number of stations (default 5,000)
	Start  time.Time // time of the first frame (default 2026-01-01 UTC)
	// Gap is the time between frames (default 1 µs).
	Gap  time.Duration
	Seed uint64 // pseudo-random seed (default 1)
}

func (c Config) withDefaults() Config {
	if c.Frames <= 0 {
		c.Frames = 4_000_000
	}
	if c.MACs < 2 {
		c.MACs = 5000
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if c.Gap <= 0 {
		c.Gap = time.Microsecond
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	return c
}

// MAC returns station i's address (locally administered, unicast).
func MAC(i int) [6]byte {
	return [6]byte{0x02, 0x5b, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

// IPv4 returns station i's address in 10.0.0.0/8.
func IPv4(i int) [4]byte { return [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)} }

// Write writes the capture described by cfg to w as a nanosecond pcap and
// returns the number of frames written.
func Write(w io.Writer, cfg Config) (int, error) {
	cfg = cfg.withDefaults()
	bw := bufio.NewWriterSize(w, 1<<20)
	pw := pcapgo.NewWriterNanos(bw)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return 0, fmt.Errorf("write pcap header: %w", err)
	}
	rng := cfg.Seed
	next := func() uint64 { // xorshift64
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return rng
	}
	frame := make([]byte, 1514)
	ts := cfg.Start
	for n := 0; n < cfg.Frames; n++ {
		r := next()
		// Each station talks to eight peers, as stations on a LAN talk
		// to a few servers and neighbours rather than to everyone.
		src := int(r % uint64(cfg.MACs))
		dst := int((uint64(src)*2654435761 + ((r>>20)%8)*40503) % uint64(cfg.MACs))
		if dst == src {
			dst = (dst + 1) % cfg.MACs
		}
		kind := (r >> 40) % 20
		// Sizes are bimodal as on a real LAN: mostly small frames (ACKs,
		// DNS, ARP), the rest up to a full 1514-byte frame.
		size := 60 + int((r>>45)%68)
		if (r>>52)%5 < 2 {
			size = 128 + int((r>>45)%1387)
		}
		var b []byte
		switch {
		case kind < 2:
			b = arp(frame, src, dst, kind == 1)
		case kind < 11:
			b = ipv4(frame, src, dst, layers.IPProtocolTCP, size, uint16(r>>8), (r>>50)%16 == 0)
		default:
			b = ipv4(frame, src, dst, layers.IPProtocolUDP, size, uint16(r>>8), false)
		}
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}
		if err := pw.WritePacket(ci, b); err != nil {
			return n, fmt.Errorf("write frame %d: %w", n, err)
		}
		ts = ts.Add(cfg.Gap)
	}
	if err := bw.Flush(); err != nil {
		return cfg.Frames, fmt.Errorf("flush pcap: %w", err)
	}
	return cfg.Frames, nil
}

func ether(b []byte, src, dst [6]byte, typ uint16) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], typ)
}

func arp(b []byte, src, dst int, reply bool) []byte {
	b = b[:60]
	clear(b)
	s, d := MAC(src), MAC(dst)
	if reply {
		ether(b, s, d, 0x0806)
	} else {
		ether(b, s, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 0x0806)
	}
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], 0x0800)
	a[4], a[5] = 6, 4
	op := uint16(1)
	if reply {
		op = 2
	}
	binary.BigEndian.PutUint16(a[6:], op)
	si, di := IPv4(src), IPv4(dst)
	copy(a[8:], s[:])
	copy(a[14:], si[:])
	if reply {
		copy(a[18:], d[:])
	}
	copy(a[24:], di[:])
	return b
}

func ipv4(b []byte, src, dst int, proto layers.IPProtocol, size int, port uint16, syn bool) []byte {
	b = b[:size]
	ether(b, MAC(src), MAC(dst), 0x0800)
	ip := b[14:]
	clear(ip[:40])
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	ip[8], ip[9] = 64, byte(proto)
	si, di := IPv4(src), IPv4(dst)
	copy(ip[12:], si[:])
	copy(ip[16:], di[:])
	l4 := ip[20:]
	// One source port per peer and service: a 5-tuple recurs.
	svc := int(port % 6)
	binary.BigEndian.PutUint16(l4[0:], uint16(32768+(src*31+dst*17+svc)%16384))
	binary.BigEndian.PutUint16(l4[2:], []uint16{443, 80, 8347, 53, 123, 22}[svc])
	if proto == layers.IPProtocolTCP {
		l4[12] = 5 << 4
		if syn {
			l4[13] = 0x02
		} else {
			l4[13] = 0x10
		}
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(size-34))
	}
	return b
}
