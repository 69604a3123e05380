package capture

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// mmapPcap walks the records of an uncompressed classic pcap file mapped
// into memory, handing out frames in place: no read system calls and no
// copies. pcapgo still validates the file header; this only replaces the
// per-record loop, which is where offline replay spends its time.
type mmapPcap struct {
	data   []byte
	off    int
	order  binary.ByteOrder
	nanos  int64 // multiplier from the fraction field to nanoseconds
	maxCap uint32

	touched byte // prefetchAhead's sums (on architectures where it loads)
	ahead   int  // how far prefetchAhead has asked for
}

// populateMax is the largest file mapped with MAP_POPULATE.
const populateMax = 2 << 30

// mapPcap maps f if it is a classic pcap file; it returns nil, nil for
// anything else (pcapng, gzip, pipes), which the caller reads with pcapgo.
func mapPcap(f *os.File) (*mmapPcap, error) {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() < 24 || st.Size() > 1<<40 {
		return nil, nil
	}
	var hdr [24]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return nil, nil
	}
	m := &mmapPcap{off: 24, maxCap: 262144}
	switch binary.LittleEndian.Uint32(hdr[:]) {
	case 0xa1b2c3d4:
		m.order, m.nanos = binary.LittleEndian, 1000
	case 0xa1b23c4d:
		m.order, m.nanos = binary.LittleEndian, 1
	case 0xd4c3b2a1:
		m.order, m.nanos = binary.BigEndian, 1000
	case 0x4d3cb2a1:
		m.order, m.nanos = binary.BigEndian, 1
	default:
		return nil, nil
	}
	if snap := m.order.Uint32(hdr[16:]); snap > m.maxCap {
		m.maxCap = snap
	}
	// Mapping every page up front costs far less than a fault per page,
	// but only while the file fits comfortably in memory.
	flags := unix.MAP_SHARED
	if st.Size() <= populateMax {
		flags |= unix.MAP_POPULATE
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, flags)
	if err != nil {
		return nil, nil // fall back to reading
	}
	_ = unix.Madvise(data, unix.MADV_SEQUENTIAL)
	m.data = data
	return m, nil
}

// prefetchAhead asks for the next aheadBytes of the file before records
// are walked there.
func (m *mmapPcap) prefetchAhead() { m.touched += prefetchAhead(m.data, m.off, &m.ahead) }

// next returns the record at the current offset.
func (m *mmapPcap) next(p *Packet) error {
	if m.off == len(m.data) {
		return io.EOF
	}
	if len(m.data)-m.off < 16 {
		return io.ErrUnexpectedEOF
	}
	h := m.data[m.off : m.off+16]
	capLen, wire := m.order.Uint32(h[8:]), m.order.Uint32(h[12:])
	if capLen > m.maxCap {
		return fmt.Errorf("capture length exceeds snap length: %d > %d", capLen, m.maxCap)
	}
	if capLen > wire {
		return fmt.Errorf("capture length exceeds original packet length: %d > %d", capLen, wire)
	}
	end := m.off + 16 + int(capLen)
	if end > len(m.data) {
		return io.ErrUnexpectedEOF
	}
	p.Data = m.data[m.off+16 : end]
	p.WireLen = int(wire)
	p.Time = int64(m.order.Uint32(h[0:]))*1e9 + int64(m.order.Uint32(h[4:]))*m.nanos
	m.off = end
	return nil
}

func (m *mmapPcap) close() error { return unix.Munmap(m.data) }
