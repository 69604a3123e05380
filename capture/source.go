package capture

import "errors"

// Packet is one frame read from a Source. Data belongs to the source and is
// valid only until the next Read.
type Packet struct {
	Data    []byte
	WireLen int   // length on the wire, any tag the kernel stripped included
	Time    int64 // capture time, Unix nanoseconds
}

// ErrNoPacket is what a live Source's Read returns when no frame arrived
// within its poll timeout; the caller checks its context and reads again.
var ErrNoPacket = errors.New("capture: no packet within the poll timeout")

// Source is where frames come from: a TPACKET_V3 ring, a plain AF_PACKET
// socket or a capture file. Read returns io.EOF at the end of a file.
// A Source is read by one goroutine at a time.
type Source interface {
	Read(p *Packet) error
	Close() error
}

// batchReader is a Source that can hand out several frames at once, valid
// together until its next call.
type batchReader interface {
	readBatch(ps []Packet) (int, error)
}
