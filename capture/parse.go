package capture

import "encoding/binary"

// EtherTypes and IP protocols the parser understands.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeARP   = 0x0806
	EtherTypeVLAN  = 0x8100 // IEEE 802.1Q customer tag
	EtherTypeQinQ  = 0x88a8 // IEEE 802.1ad service tag
	EtherTypeIPv6  = 0x86dd
	etherType9100  = 0x9100 // pre-standard QinQ, still seen on switches
	ProtoTCP       = 6
	ProtoUDP       = 17
	ProtoICMPv6    = 58
	tcpFlagSYN     = 0x02
	tcpFlagACK     = 0x10
	maxVLANTags    = 2
	maxIPv6ExtHops = 4
)

// Header is what the accounting path reads from one frame. ParseHeader fills
// it in place so the hot path never allocates.
type Header struct {
	Dst, Src uint64 // MAC addresses as schema.MAC.Uint64 values
	// VLAN holds the 12-bit VLAN identifiers of the tags in the frame,
	// outermost first; Tags says how many were present (0 to 2; a third
	// tag stops the parse).
	VLAN      [maxVLANTags]uint16
	Tags      uint8
	EtherType uint16 // the innermost EtherType
	// IPVersion is 4 or 6 when the frame carries an IP header the parser
	// could read, else 0.
	IPVersion uint8
	Proto     uint8 // IP protocol (after IPv6 extension headers)
	// NonFirstFragment is set for IPv4/IPv6 fragments after the first:
	// they carry no transport header.
	NonFirstFragment bool
	HasPorts         bool // SrcPort and DstPort (and TCPFlags for TCP) are valid
	TCPFlags         uint8
	ICMPv6Type       uint8 // valid when Proto is ProtoICMPv6 and HasPorts is false
	SrcPort, DstPort uint16
	Src4, Dst4       uint32   // IPv4 addresses, big-endian order as integers
	Src6, Dst6       [16]byte // IPv6 addresses
	L3Offset         int      // where the network header starts
	L4Offset         int      // where the transport header starts, 0 if unknown
}

func mac48(b []byte) uint64 {
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 |
		uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// ParseHeader reads the Ethernet, 802.1Q / 802.1ad, IPv4 / IPv6 and TCP / UDP
// headers of frame into h. It returns false, leaving h unspecified, when the
// frame is shorter than an Ethernet header (14 bytes); any later header that
// is cut short or malformed just ends the parse with the fields read so far.
func ParseHeader(frame []byte, h *Header) bool {
	if len(frame) < 14 {
		return false
	}
	*h = Header{}
	// Both addresses as two 8-byte loads: the first six bytes of the
	// first, the last six of the second.
	h.Dst = binary.BigEndian.Uint64(frame[0:8]) >> 16
	h.Src = binary.BigEndian.Uint64(frame[4:12]) & (1<<48 - 1)
	off := 12
	et := binary.BigEndian.Uint16(frame[off:])
	for et == EtherTypeVLAN || et == EtherTypeQinQ || et == etherType9100 {
		if h.Tags == maxVLANTags || len(frame) < off+6 {
			h.EtherType = et
			return true
		}
		h.VLAN[h.Tags] = binary.BigEndian.Uint16(frame[off+2:]) & 0x0fff
		h.Tags++
		off += 4
		et = binary.BigEndian.Uint16(frame[off:])
	}
	h.EtherType = et
	off += 2
	h.L3Offset = off
	switch et {
	case EtherTypeIPv4:
		parseIPv4(frame, off, h)
	case EtherTypeIPv6:
		parseIPv6(frame, off, h)
	}
	return true
}

func parseIPv4(b []byte, off int, h *Header) {
	if len(b) < off+20 || b[off]>>4 != 4 {
		return
	}
	ihl := int(b[off]&0x0f) * 4
	if ihl < 20 {
		return
	}
	h.IPVersion = 4
	h.Proto = b[off+9]
	h.Src4 = binary.BigEndian.Uint32(b[off+12:])
	h.Dst4 = binary.BigEndian.Uint32(b[off+16:])
	if binary.BigEndian.Uint16(b[off+6:])&0x1fff != 0 {
		h.NonFirstFragment = true
		return
	}
	parseL4(b, off+ihl, h)
}

func parseIPv6(b []byte, off int, h *Header) {
	if len(b) < off+40 || b[off]>>4 != 6 {
		return
	}
	h.IPVersion = 6
	copy(h.Src6[:], b[off+8:off+24])
	copy(h.Dst6[:], b[off+24:off+40])
	next := b[off+6]
	off += 40
	for i := 0; i < maxIPv6ExtHops; i++ {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < off+2 {
				h.Proto = next
				return
			}
			next, off = b[off], off+8+int(b[off+1])*8
			continue
		case 44: // fragment
			if len(b) < off+8 {
				h.Proto = next
				return
			}
			if binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
				h.Proto = b[off]
				h.NonFirstFragment = true
				return
			}
			next, off = b[off], off+8
			continue
		}
		break
	}
	h.Proto = next
	parseL4(b, off, h)
}

func parseL4(b []byte, off int, h *Header) {
	switch h.Proto {
	case ProtoTCP:
		if len(b) < off+14 {
			return
		}
		h.TCPFlags = b[off+13]
	case ProtoUDP:
		if len(b) < off+8 {
			return
		}
	case ProtoICMPv6:
		if len(b) >= off+1 {
			h.ICMPv6Type = b[off]
			h.L4Offset = off
		}
		return
	default:
		return
	}
	h.L4Offset = off
	h.HasPorts = true
	h.SrcPort = binary.BigEndian.Uint16(b[off:])
	h.DstPort = binary.BigEndian.Uint16(b[off+2:])
}
