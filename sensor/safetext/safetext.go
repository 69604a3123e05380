// Package safetext makes text that endpoints or the wire supplied (host and
// user names, health reasons, DHCP host names) safe to print: it escapes the
// characters that can repaint a terminal, hide text, truncate a C string or
// reorder what a reader sees, in Go's escape notation (\x1b, \u202e).
package safetext

import (
	"fmt"
	"unicode/utf8"
)

// Unsafe reports whether r must not reach an output as is: C0 controls and
// DEL, C1 controls, the bidirectional embedding, override and isolate
// controls (U+202A-U+202E, U+2066-U+2069), the line and paragraph
// separators, and the byte-order mark.
func Unsafe(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7f:
		return true
	case r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	case r == 0x2028 || r == 0x2029 || r == 0xfeff:
		return true
	}
	return false
}

// Append appends s to dst with every unsafe character escaped; newlines and
// tabs are kept when keepLines is set. Invalid UTF-8 bytes are written as
// \xNN.
func Append(dst []byte, s string, keepLines bool) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			dst = fmt.Appendf(dst, `\x%02x`, c)
		case keepLines && (r == '\n' || r == '\t'):
			dst = append(dst, c)
		case r < 0x80 && Unsafe(r):
			dst = fmt.Appendf(dst, `\x%02x`, r)
		case Unsafe(r):
			dst = fmt.Appendf(dst, `\u%04x`, r)
		default:
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return dst
}

// String returns s escaped by Append, newlines and tabs included; s itself
// when nothing needs escaping.
func String(s string) string {
	if !Needed(s) {
		return s
	}
	return string(Append(nil, s, false))
}

// Needed reports whether String would change s.
func Needed(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			for _, r := range s[i:] {
				if r == utf8.RuneError || Unsafe(r) {
					return true
				}
			}
			return false
		}
	}
	return false
}
