//go:build !amd64

package capture

import "unsafe"

// prefetchLines loads one byte of each cache line at ps: independent loads
// whose cache misses overlap. The sum only keeps the loads from being
// optimised away.
func prefetchLines(ps []unsafe.Pointer) byte {
	var sum byte
	for _, p := range ps {
		sum += *(*byte)(p)
	}
	return sum
}

// prefetchBytes loads one byte of every cache line b touches.
func prefetchBytes(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	sum := b[len(b)-1]
	for o := 0; o < len(b); o += 64 {
		sum += b[o]
	}
	return sum
}
