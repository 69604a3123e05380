package capture

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// SocketStats is what the kernel counted for one capture socket since the
// previous call: PACKET_STATISTICS resets on every read.
type SocketStats struct {
	Packets      uint64 // frames the socket handled, drops included
	Drops        uint64 // frames dropped because the ring or buffer was full
	QueueFreezes uint64 // times the TPACKET_V3 ring froze for want of free blocks
}

// RingConfig describes one TPACKET_V3 capture socket.
type RingConfig struct {
	Interface string
	// RingBytes is the size of the mmap ring (default 64 MiB), rounded
	// down to whole blocks, at least one.
	RingBytes int
	// BlockBytes is the ring's block size, a multiple of the page size
	// (default 1 MiB, or a sixteenth of a ring under 16 MiB); the largest
	// frame captured whole is a little less.
	// The reader wakes once per block, so at a high rate larger blocks
	// cost less CPU per frame. The kernel zeroes each block, one
	// contiguous run of pages, when the ring is set up, so a larger ring
	// takes longer to open (figures in BENCHMARKS.md, "Ring blocks").
	BlockBytes int
	// BlockTimeout hands a partly filled block to the reader after this
	// long (default 50 ms).
	BlockTimeout time.Duration
	// PollTimeout bounds each wait for a block (default 100 ms): Read then
	// returns ErrNoPacket, so readers notice cancellation and the ring is
	// never unmapped under a reader.
	PollTimeout time.Duration
	// FanoutGroup, when not zero, joins the socket to this
	// PACKET_FANOUT_HASH group so several sockets share the interface's
	// traffic by flow.
	FanoutGroup uint16
	// NoPromiscuous leaves the interface out of promiscuous mode.
	NoPromiscuous bool
	// Filter is a classic BPF program (e.g. from tcpdump -dd). When nil,
	// a built-in filter drops frames the host itself sends, which a
	// mirror port should never carry, and keeps only the Ethernet, IP and
	// first 14 TCP or UDP header bytes of ordinary TCP and UDP frames
	// (ARP, DHCP, ICMPv6 and anything else stay whole); the wire length is
	// reported either way.
	Filter []bpf.RawInstruction
	// Gopacket reads the ring through gopacket's afpacket instead of
	// walking its blocks directly. The direct reader costs less CPU per
	// frame; gopacket's is also what OpenRing falls back to when the
	// direct one cannot be set up.
	Gopacket bool
}

// minRingBlocks is the fewest blocks a ring of the default block size is
// cut into: smaller rings get smaller blocks, so the kernel always has
// blocks to fill while the reader holds one.
const minRingBlocks = 16

func (c RingConfig) withDefaults() RingConfig {
	if c.RingBytes <= 0 {
		c.RingBytes = 64 << 20
	}
	if c.BlockBytes <= 0 {
		page := unix.Getpagesize()
		c.BlockBytes = max(page, min(1<<20, c.RingBytes/minRingBlocks/page*page))
	}
	if c.BlockTimeout <= 0 {
		c.BlockTimeout = 50 * time.Millisecond
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = 100 * time.Millisecond
	}
	return c
}

// dropOutgoing starts a filter by dropping the frames the host itself
// sends, which a mirror port should never carry; the rest of the program
// follows it.
func dropOutgoing(rest ...bpf.Instruction) ([]bpf.RawInstruction, error) {
	return bpf.Assemble(append([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipFalse: 1},
		bpf.RetConstant{Val: 0},
	}, rest...))
}

// incomingOnly accepts every frame except those the host sends.
func incomingOnly() ([]bpf.RawInstruction, error) {
	return dropOutgoing(bpf.RetConstant{Val: fullFrame})
}

// transportBytes is how much of a TCP or UDP header the accounting reads:
// the ports and, for TCP, the flags in byte 13.
const transportBytes = 14

// ipv6HeaderSnap is how much of an IPv6 TCP or UDP frame the ring keeps:
// the Ethernet header, the fixed IPv6 header and transportBytes. (An IPv4
// frame keeps as much, with its own header length.)
const ipv6HeaderSnap = 14 + 40 + transportBytes

// fullFrame is the snap length of frames kept whole.
const fullFrame = 0x40000

// incomingHeaders drops the frames the host sends, then applies
// headerRules.
func incomingHeaders() ([]bpf.RawInstruction, error) {
	return dropOutgoing(headerRules()...)
}

// headerRules keeps the Ethernet and IP headers and the first
// transportBytes of the transport header of IPv4 TCP, IPv4 UDP other than
// DHCP (ports 67 and 68) and first fragments only, and of IPv6 TCP and UDP
// (ipv6HeaderSnap); every other
// frame (ARP, DHCP, ICMPv6 neighbour discovery, anything tagged twice or
// unknown) stays whole for the control-plane decoder. Counting needs no
// more: byte counts come from the wire length, which the kernel reports
// beside the cut frame. Less of each frame is written to the ring and read
// back, and the reader's cost follows the ring's cache lines it reads: a
// small IPv4 TCP or UDP frame takes 144 bytes of a ring block, where a
// fixed 128-byte snap took 224.
// The kernel has usually taken the outer VLAN tag out of the frame before
// the filter runs, so offset 12 holds the EtherType.
func headerRules() []bpf.Instruction {
	return []bpf.Instruction{
		// A load past the end of a frame would end the program and drop
		// the frame: lengths are checked first.
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtLen},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: 38, SkipFalse: 22}, // -> 24
		/* 2 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: EtherTypeIPv6, SkipTrue: 21}, // -> 25
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: EtherTypeIPv4, SkipFalse: 19}, // -> 24
		/* 5 */ bpf.LoadAbsolute{Off: 23, Size: 1}, // IPv4 protocol
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ProtoTCP, SkipTrue: 13}, // -> 20
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ProtoUDP, SkipFalse: 16}, // -> 24
		/* 8 */ bpf.LoadAbsolute{Off: 20, Size: 2}, // fragment offset
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 14}, // -> 24
		/* 10 */ bpf.LoadMemShift{Off: 14}, // X = IPv4 header length
		/* 11 */ bpf.LoadExtension{Num: bpf.ExtLen},
		/* 12 */ bpf.ALUOpConstant{Op: bpf.ALUOpSub, Val: 18},
		/* 13 */ bpf.JumpIfX{Cond: bpf.JumpGreaterOrEqual, SkipFalse: 10}, // both ports in the frame? else -> 24
		/* 14 */ bpf.LoadIndirect{Off: 14, Size: 2}, // UDP source port
		/* 15 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 67, SkipTrue: 8}, // -> 24
		/* 16 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 68, SkipTrue: 7}, // -> 24
		/* 17 */ bpf.LoadIndirect{Off: 16, Size: 2}, // UDP destination port
		/* 18 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 67, SkipTrue: 5}, // -> 24
		/* 19 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 68, SkipTrue: 4}, // -> 24
		/* 20 */ bpf.LoadMemShift{Off: 14}, // X = IPv4 header length
		/* 21 */ bpf.TXA{},
		/* 22 */ bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 14 + transportBytes},
		/* 23 */ bpf.RetA{}, // Ethernet, IPv4 and transport headers
		/* 24 */ bpf.RetConstant{Val: fullFrame},
		/* 25 */ bpf.LoadAbsolute{Off: 20, Size: 1}, // IPv6 next header
		/* 26 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ProtoTCP, SkipTrue: 2}, // -> 29
		/* 27 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ProtoUDP, SkipTrue: 1}, // -> 29
		/* 28 */ bpf.RetConstant{Val: fullFrame},
		/* 29 */ bpf.RetConstant{Val: ipv6HeaderSnap},
	}
}

// RingSource reads frames from a TPACKET_V3 mmap ring without copying
// them: by walking the ring's blocks itself, or through gopacket's afpacket
// (RingConfig.Gopacket, or when the direct reader could not be set up).
// Either way a VLAN tag the kernel took out of a frame is counted in its
// wire length; the direct reader also puts it back into the frame.
type RingSource struct {
	cfg       RingConfig
	d         *tpacketRing      // the direct reader, or nil
	tp        *afpacket.TPacket // gopacket's, when d is nil
	ifindex   int
	prev      SocketStats // gopacket's cumulative counters at the previous Stats call
	directErr error       // why the direct reader is not used
}

// OpenRing opens a capture ring on cfg.Interface.
func OpenRing(cfg RingConfig) (*RingSource, error) {
	cfg = cfg.withDefaults()
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("capture ring on %q: %w", cfg.Interface, err)
	}
	filter := cfg.Filter
	if filter == nil {
		if filter, err = incomingHeaders(); err != nil {
			return nil, fmt.Errorf("capture ring on %s: assemble filter: %w", cfg.Interface, err)
		}
	}
	if len(filter) == 0 {
		return nil, fmt.Errorf("capture ring on %s: the BPF filter has no instructions", cfg.Interface)
	}
	var directErr error
	if !cfg.Gopacket {
		d, err := openTPacket(cfg, ifi.Index, filter)
		if err == nil {
			return &RingSource{cfg: cfg, d: d, ifindex: ifi.Index}, nil
		}
		directErr = err
	}
	blocks := max(cfg.RingBytes/cfg.BlockBytes, 1)
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(cfg.Interface),
		afpacket.TPacketVersion3,
		afpacket.OptBlockSize(cfg.BlockBytes),
		afpacket.OptFrameSize(afpacket.DefaultFrameSize),
		afpacket.OptNumBlocks(blocks),
		afpacket.OptBlockTimeout(cfg.BlockTimeout),
		afpacket.OptPollTimeout(cfg.PollTimeout),
	)
	if err != nil {
		if directErr != nil {
			return nil, fmt.Errorf("capture ring on %s (%d blocks of %d bytes): %w (direct reader: %v)", cfg.Interface, blocks, cfg.BlockBytes, err, directErr)
		}
		return nil, fmt.Errorf("capture ring on %s (%d blocks of %d bytes): %w", cfg.Interface, blocks, cfg.BlockBytes, err)
	}
	r := &RingSource{cfg: cfg, tp: tp, ifindex: ifi.Index, directErr: directErr}
	if err := tp.SetBPF(filter); err != nil {
		tp.Close()
		return nil, fmt.Errorf("capture ring on %s: attach filter: %w", cfg.Interface, err)
	}
	if !cfg.NoPromiscuous {
		if err := tp.SetPromiscuous(true); err != nil {
			tp.Close()
			return nil, fmt.Errorf("capture ring on %s: promiscuous mode: %w", cfg.Interface, err)
		}
	}
	if cfg.FanoutGroup != 0 {
		if err := tp.SetFanout(afpacket.FanoutHash, cfg.FanoutGroup); err != nil {
			tp.Close()
			return nil, fmt.Errorf("capture ring on %s: join fanout group %d: %w", cfg.Interface, cfg.FanoutGroup, err)
		}
	}
	return r, nil
}

// Read returns the next frame, pointing into the ring; ErrNoPacket when
// none came within the poll timeout. Any other error means the socket
// stopped working (the link went down or the interface went away): close
// it and open a new one.
func (r *RingSource) Read(p *Packet) error {
	if r.d != nil {
		return r.d.read(p)
	}
	data, ci, err := r.tp.ZeroCopyReadPacketData()
	if err != nil {
		if errors.Is(err, afpacket.ErrTimeout) {
			return ErrNoPacket
		}
		if errors.Is(err, afpacket.ErrPoll) {
			return fmt.Errorf("capture ring on %s: socket error (link down or interface gone): %w", r.cfg.Interface, err)
		}
		return fmt.Errorf("capture ring on %s: %w", r.cfg.Interface, err)
	}
	p.Data = data
	p.WireLen = max(ci.Length, len(data))
	// The kernel took the VLAN tag out of the frame and reported it
	// aside; the frame on the wire was 4 bytes longer.
	if len(ci.AncillaryData) > 0 {
		p.WireLen += 4
	}
	p.Time = ci.Timestamp.UnixNano()
	return nil
}

// readBatch hands out up to len(ps) frames that stay valid together until
// the next call: a block's worth from the direct reader, one from
// gopacket's.
func (r *RingSource) readBatch(ps []Packet) (int, error) {
	if r.d != nil {
		return r.d.readBatch(ps)
	}
	if err := r.Read(&ps[0]); err != nil {
		return 0, err
	}
	return 1, nil
}

// Stats returns what the kernel counted since the previous call.
func (r *RingSource) Stats() (SocketStats, error) {
	if r.d != nil {
		d, err := r.d.stats()
		if err != nil {
			return SocketStats{}, fmt.Errorf("capture ring on %s: statistics: %w", r.cfg.Interface, err)
		}
		return d, nil
	}
	_, s, err := r.tp.SocketStats()
	if err != nil {
		return SocketStats{}, fmt.Errorf("capture ring on %s: statistics: %w", r.cfg.Interface, err)
	}
	cur := SocketStats{Packets: uint64(s.Packets()), Drops: uint64(s.Drops()), QueueFreezes: uint64(s.QueueFreezes())}
	d := SocketStats{Packets: cur.Packets - r.prev.Packets, Drops: cur.Drops - r.prev.Drops, QueueFreezes: cur.QueueFreezes - r.prev.QueueFreezes}
	r.prev = cur
	return d, nil
}

// Ifindex is the index of the interface the ring was opened on.
func (r *RingSource) Ifindex() int { return r.ifindex }

// Direct tells whether the ring is read directly; when it is not, the
// error says why the direct reader could not be set up (nil when gopacket's
// was asked for).
func (r *RingSource) Direct() (bool, error) { return r.d != nil, r.directErr }

// Close unmaps the ring and closes the socket. Readers must have stopped:
// the ring is unmapped without waiting for them.
func (r *RingSource) Close() error {
	if r.d != nil {
		if err := r.d.close(); err != nil {
			return fmt.Errorf("capture ring on %s: close: %w", r.cfg.Interface, err)
		}
		return nil
	}
	r.tp.Close()
	return nil
}
