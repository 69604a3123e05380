package capture

import "unsafe"

// pageBytes is the page size touch steps by. A larger page is written
// more than once, which does no harm.
const pageBytes = 4096

// touch writes the zero value to one element in every page of s's backing
// array, up to its capacity, so the kernel maps those pages now instead of
// on the hot path's first use of each (a page fault costs a microsecond or
// more). It is meant for arrays just made, whose elements are all zero.
func touch[T any](s []T) {
	s = s[:cap(s)]
	var zero T
	size := int(unsafe.Sizeof(zero))
	if size == 0 {
		return
	}
	step := max(1, pageBytes/size)
	for i := 0; i < len(s); i += step {
		s[i] = zero
	}
}
