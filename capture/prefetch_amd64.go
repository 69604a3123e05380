package capture

import "unsafe"

// prefetchLines asks the processor to bring the cache line at each of ps
// into its caches (PREFETCHT0) and goes on without waiting for them. It
// returns 0, the same signature as the loading fallback on other
// architectures.
//
//go:noescape
func prefetchLines(ps []unsafe.Pointer) byte

// prefetchBytes asks for every cache line b touches without waiting for
// them; it returns 0.
//
//go:noescape
func prefetchBytes(b []byte) byte
