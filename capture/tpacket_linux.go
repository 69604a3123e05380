package capture

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets into the TPACKET_V3 structures of <linux/if_packet.h>: a block
// starts with struct tpacket_block_desc (version, offset_to_priv, then
// struct tpacket_hdr_v1), and each frame with struct tpacket3_hdr.
const (
	blockStatusOff = 8  // tpacket_hdr_v1.block_status
	blockNumOff    = 12 // tpacket_hdr_v1.num_pkts
	blockFirstOff  = 16 // tpacket_hdr_v1.offset_to_first_pkt
	blockLenOff    = 20 // tpacket_hdr_v1.blk_len

	// frameRoom is how far before tp_mac the frame header and the
	// sockaddr_ll the kernel writes after it reach: TPACKET_ALIGN(sizeof
	// (struct tpacket3_hdr)) + sizeof(struct sockaddr_ll).
	frameRoom = 48 + 20
	vlanLen   = 4
)

// tpacketRing is a TPACKET_V3 receive ring read in place: each Read hands
// out the next frame of the block the reader holds, and a block goes back
// to the kernel only once its last frame was handed out and Read is called
// again. The per-frame path is a few loads from the frame header: no lock,
// no system call, no time.Time.
type tpacketRing struct {
	fd        int
	iface     string
	ring      []byte
	blockSize int
	blocks    int
	file      *os.File        // the socket, registered with the runtime's poller
	raw       syscall.RawConn // for waiting on it without blocking a thread
	timeout   time.Duration   // longest wait for a block

	blk  int    // block the reader is in
	held bool   // the reader owns block blk (the kernel handed it over)
	left uint32 // frames of block blk not yet handed out
	off  int    // offset in ring of the next frame header
	end  int    // end of block blk's data in ring

	touched byte // prefetchAhead's sums (on architectures where it loads)
	ahead   int  // how far prefetchAhead has asked for in the held block
}

// openTPacket sets up a TPACKET_V3 ring on ifindex: the socket takes no
// frame until it is bound, which happens only once the ring and the filter
// are in place.
func openTPacket(cfg RingConfig, ifindex int, filter []bpf.RawInstruction) (*tpacketRing, error) {
	pageSize := unix.Getpagesize()
	if cfg.BlockBytes%pageSize != 0 {
		return nil, fmt.Errorf("block size %d is not a multiple of the page size (%d)", cfg.BlockBytes, pageSize)
	}
	blocks := max(cfg.RingBytes/cfg.BlockBytes, 1)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	r := &tpacketRing{fd: fd, iface: cfg.Interface, blockSize: cfg.BlockBytes, blocks: blocks}
	r.timeout = max(cfg.PollTimeout, time.Millisecond)
	if err := r.setup(cfg, ifindex, filter, pageSize); err != nil {
		r.close()
		return nil, err
	}
	// A non-blocking socket in an os.File is registered with the runtime's
	// poller: a reader waiting for a block parks its goroutine rather than
	// blocking a thread in poll(2), which the scheduler would have to
	// notice and work around on every wait.
	r.file = os.NewFile(uintptr(fd), "packet socket on "+cfg.Interface)
	raw, err := r.file.SyscallConn()
	if err != nil {
		r.close()
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	r.raw = raw
	return r, nil
}

func (r *tpacketRing) setup(cfg RingConfig, ifindex int, filter []bpf.RawInstruction, pageSize int) error {
	if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("TPACKET_V3: %w", err)
	}
	frameSize := min(r.blockSize, pageSize)
	req := unix.TpacketReq3{
		Block_size:     uint32(r.blockSize),
		Block_nr:       uint32(r.blocks),
		Frame_size:     uint32(frameSize),
		Frame_nr:       uint32(r.blockSize / frameSize * r.blocks),
		Retire_blk_tov: uint32(max(cfg.BlockTimeout.Milliseconds(), 1)),
	}
	if err := unix.SetsockoptTpacketReq3(r.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("receive ring of %d blocks of %d bytes: %w", r.blocks, r.blockSize, err)
	}
	ring, err := unix.Mmap(r.fd, 0, r.blockSize*r.blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map the ring (%d bytes): %w", r.blockSize*r.blocks, err)
	}
	r.ring = ring
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: (*unix.SockFilter)(unsafe.Pointer(&filter[0]))}
	if err := unix.SetsockoptSockFprog(r.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("attach filter: %w", err)
	}
	if err := unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if !cfg.NoPromiscuous {
		mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(r.fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return fmt.Errorf("promiscuous mode: %w", err)
		}
	}
	if cfg.FanoutGroup != 0 {
		arg := int(cfg.FanoutGroup) | unix.PACKET_FANOUT_HASH<<16
		if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_FANOUT, arg); err != nil {
			return fmt.Errorf("join fanout group %d: %w", cfg.FanoutGroup, err)
		}
	}
	// Counters start now: PACKET_STATISTICS resets on read.
	if _, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err != nil {
		return fmt.Errorf("statistics: %w", err)
	}
	return nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// u32 reads a native-endian uint32 of the ring.
func (r *tpacketRing) u32(off int) uint32 {
	return *(*uint32)(unsafe.Pointer(&r.ring[off : off+4][0]))
}

// status is block blk's block_status, read with acquire semantics: the
// kernel sets it after writing the block.
func (r *tpacketRing) status(blk int) *uint32 {
	return (*uint32)(unsafe.Pointer(&r.ring[blk*r.blockSize+blockStatusOff : blk*r.blockSize+blockStatusOff+4][0]))
}

// read hands out the next frame. Data points into the ring and stays valid
// until the next read.
func (r *tpacketRing) read(p *Packet) error {
	for r.left == 0 {
		if err := r.nextBlock(); err != nil {
			return err
		}
	}
	return r.frame(p)
}

// readBatch hands out up to len(ps) frames, all from one block, so they
// stay valid together until the next read or readBatch. When it returns an
// error with n > 0, the first n frames are still good.
func (r *tpacketRing) readBatch(ps []Packet) (n int, err error) {
	for r.left == 0 {
		if err := r.nextBlock(); err != nil {
			return 0, err
		}
	}
	// The kernel wrote the block from another core.
	r.touched += prefetchAhead(r.ring[:r.end], r.off, &r.ahead)
	for n < len(ps) && r.left > 0 {
		if err := r.frame(&ps[n]); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// frame hands out the frame at r.off.
func (r *tpacketRing) frame(p *Packet) error {
	off := r.off
	if off < 0 || off+frameRoom > r.end {
		return r.corrupt("frame header at %d outside the block", off)
	}
	h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&r.ring[off]))
	mac := off + int(h.Mac)
	stop := mac + int(h.Snaplen)
	if int(h.Mac) < frameRoom || stop > r.end {
		return r.corrupt("frame data %d..%d outside the block", mac, stop)
	}
	wire := int(h.Len)
	if h.Status&unix.TP_STATUS_VLAN_VALID != 0 {
		// The kernel took the outer tag out of the frame; put it back
		// in front of the EtherType, in the room before tp_mac, so the
		// frame reads as it was on the wire.
		tpid := uint16(unix.ETH_P_8021Q)
		if h.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 && h.Hv1.Vlan_tpid != 0 {
			tpid = h.Hv1.Vlan_tpid
		}
		wire += vlanLen
		if int(h.Snaplen) >= 12 && int(h.Mac) >= frameRoom+vlanLen {
			mac -= vlanLen
			b := r.ring[mac:stop]
			copy(b[0:12], b[vlanLen:vlanLen+12])
			b[12], b[13] = byte(tpid>>8), byte(tpid)
			b[14], b[15] = byte(h.Hv1.Vlan_tci>>8), byte(h.Hv1.Vlan_tci)
		}
	}
	p.Data = r.ring[mac:stop:stop]
	p.WireLen = max(wire, stop-mac)
	p.Time = int64(h.Sec)*1e9 + int64(h.Nsec)
	r.left--
	r.off = off + int(h.Next_offset)
	return nil
}

func (r *tpacketRing) corrupt(format string, args ...any) error {
	// Skip the rest of the block rather than read garbage.
	r.left = 0
	return fmt.Errorf("capture ring on %s: block %d: %s", r.iface, r.blk, fmt.Sprintf(format, args...))
}

// nextBlock gives the block the reader holds back to the kernel and waits
// (at most one poll timeout) for the next one.
func (r *tpacketRing) nextBlock() error {
	if r.held {
		atomic.StoreUint32(r.status(r.blk), unix.TP_STATUS_KERNEL)
		r.held = false
		r.blk++
		if r.blk == r.blocks {
			r.blk = 0
		}
	}
	if st := r.status(r.blk); atomic.LoadUint32(st)&unix.TP_STATUS_USER == 0 {
		if err := r.wait(st); err != nil {
			return err
		}
	}
	base := r.blk * r.blockSize
	r.held, r.ahead = true, 0
	r.left = r.u32(base + blockNumOff)
	r.off = base + int(r.u32(base+blockFirstOff))
	r.end = base + min(int(r.u32(base+blockLenOff)), r.blockSize)
	return nil
}

// wait waits at most r.timeout for the kernel to hand over the block whose
// status word is st: ErrNoPacket when it did not, another error when the
// socket failed.
func (r *tpacketRing) wait(st *uint32) error {
	if err := r.file.SetReadDeadline(time.Now().Add(r.timeout)); err != nil {
		return fmt.Errorf("capture ring on %s: set wait deadline: %w", r.iface, err)
	}
	err := r.raw.Read(func(uintptr) bool {
		return atomic.LoadUint32(st)&unix.TP_STATUS_USER != 0
	})
	if err == nil {
		return nil
	}
	// A socket error (the interface went down or away) wakes the poller
	// alone, or arrives with other events and leaves the wait to time
	// out: ask for it either way.
	soerr, gerr := unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if gerr == nil && soerr != 0 {
		return fmt.Errorf("capture ring on %s: socket error (link down or interface gone): %w", r.iface, unix.Errno(soerr))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ErrNoPacket
	}
	return fmt.Errorf("capture ring on %s: wait for a block: %w", r.iface, err)
}

// stats returns what the kernel counted since the previous call.
func (r *tpacketRing) stats() (SocketStats, error) {
	s, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return SocketStats{}, err
	}
	return SocketStats{Packets: uint64(s.Packets), Drops: uint64(s.Drops), QueueFreezes: uint64(s.Freeze_q_cnt)}, nil
}

// close unmaps the ring and closes the socket; no reader may be in read.
func (r *tpacketRing) close() error {
	var err error
	if r.ring != nil {
		err = unix.Munmap(r.ring)
		r.ring = nil
	}
	var cerr error
	if r.file != nil {
		cerr = r.file.Close()
	} else {
		cerr = unix.Close(r.fd)
	}
	if err == nil {
		err = cerr
	}
	return err
}
