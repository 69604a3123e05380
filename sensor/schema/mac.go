package schema

import (
	"encoding/hex"
	"fmt"
)

// MAC is an IEEE 802 MAC-48 address. Unlike net.HardwareAddr it is a
// comparable value, so it serves as a map key without allocation.
type MAC [6]byte

// ParseMAC parses a MAC address written as six hexadecimal octets separated
// by colons, dashes or nothing ("00:11:22:33:44:55", "00-11-22-33-44-55",
// "001122334455").
func ParseMAC(s string) (MAC, error) {
	var m MAC
	// The hex digits without separators (':', '-', '.'), on the stack:
	// every hello and every shared record parses its MACs.
	var clean [12]byte
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ':', '-', '.':
		default:
			if n == len(clean) {
				return m, fmt.Errorf("parse MAC %q: want six octets such as 00:11:22:33:44:55", s)
			}
			clean[n] = c
			n++
		}
	}
	if n != len(clean) {
		return m, fmt.Errorf("parse MAC %q: want six octets such as 00:11:22:33:44:55", s)
	}
	if _, err := hex.Decode(m[:], clean[:]); err != nil {
		return m, fmt.Errorf("parse MAC %q: %w", s, err)
	}
	return m, nil
}

// MustParseMAC is ParseMAC for constants in tests and tables; it panics on a
// malformed address.
func MustParseMAC(s string) MAC {
	m, err := ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// String formats the address as lower-case colon-separated octets.
func (m MAC) String() string {
	var b [17]byte
	return string(m.AppendTo(b[:0]))
}

// AppendTo appends the address as String writes it (17 bytes) to b.
func (m MAC) AppendTo(b []byte) []byte {
	const digits = "0123456789abcdef"
	for i, o := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, digits[o>>4], digits[o&0x0f])
	}
	return b
}

// MarshalText implements encoding.TextMarshaler.
func (m MAC) MarshalText() ([]byte, error) { return m.AppendTo(make([]byte, 0, 17)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// IsGroup reports whether m is a multicast or broadcast address (the I/G bit
// of the first octet is set). Group addresses never identify a sender.
func (m MAC) IsGroup() bool { return m[0]&0x01 != 0 }

// Uint64 returns the address as an integer, handy as a compact key.
func (m MAC) Uint64() uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 |
		uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

// MACFromUint64 is the inverse of MAC.Uint64.
func MACFromUint64(v uint64) MAC {
	return MAC{byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
