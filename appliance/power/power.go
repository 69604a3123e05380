// Package power watches the input devices for the ACPI power button (and
// any keyboard's power key) so the appliance can shut down cleanly.
package power

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Input event constants from linux/input-event-codes.h.
const (
	evKey    = 0x01
	keyPower = 116
)

// eventSize is sizeof(struct input_event) on 64-bit Linux: a 16-byte
// timeval, then type (u16), code (u16) and value (s32).
const eventSize = 24

// Event is one input event without its timestamp.
type Event struct {
	Type  uint16
	Code  uint16
	Value int32
}

// IsPowerPress reports whether e is a press of the power key.
func (e Event) IsPowerPress() bool { return e.Type == evKey && e.Code == keyPower && e.Value == 1 }

// ReadEvent reads one 64-bit input_event from r.
func ReadEvent(r io.Reader) (Event, error) {
	var b [eventSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return Event{}, fmt.Errorf("input event cut short: %w", err)
		}
		return Event{}, err
	}
	return Event{
		Type:  binary.LittleEndian.Uint16(b[16:]),
		Code:  binary.LittleEndian.Uint16(b[18:]),
		Value: int32(binary.LittleEndian.Uint32(b[20:])),
	}, nil
}

// WaitPress reads events from r until a power key press (nil) or a read
// error.
func WaitPress(r io.Reader) error {
	for {
		e, err := ReadEvent(r)
		if err != nil {
			return err
		}
		if e.IsPowerPress() {
			return nil
		}
	}
}

// HasKey reports whether a sysfs key capability bitmap (space-separated hex
// words of 64 bits, most significant word first) has bit key set.
func HasKey(bitmap string, key int) bool {
	words := strings.Fields(bitmap)
	idx := key / 64
	if idx >= len(words) {
		return false
	}
	w := words[len(words)-1-idx]
	var v uint64
	if _, err := fmt.Sscanf(w, "%x", &v); err != nil {
		return false
	}
	return v&(1<<(uint(key)%64)) != 0
}
