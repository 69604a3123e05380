package power

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func event(typ, code uint16, value int32) []byte {
	b := make([]byte, eventSize)
	binary.LittleEndian.PutUint16(b[16:], typ)
	binary.LittleEndian.PutUint16(b[18:], code)
	binary.LittleEndian.PutUint32(b[20:], uint32(value))
	return b
}

func TestWaitPress(t *testing.T) {
	var stream bytes.Buffer
	stream.Write(event(evKey, 30, 1))       // KEY_A pressed
	stream.Write(event(0, 0, 0))            // SYN
	stream.Write(event(evKey, keyPower, 0)) // power released: not a press
	if err := WaitPress(bytes.NewReader(stream.Bytes())); !errors.Is(err, io.EOF) {
		t.Fatalf("no press in stream: got %v", err)
	}
	stream.Write(event(evKey, keyPower, 1))
	if err := WaitPress(&stream); err != nil {
		t.Fatalf("press not seen: %v", err)
	}
	if _, err := ReadEvent(bytes.NewReader(make([]byte, 10))); err == nil {
		t.Fatal("short event accepted")
	}
}

func TestHasKey(t *testing.T) {
	// The ACPI power button's capabilities/key as sysfs shows it: bit 116.
	if !HasKey("10000000000000 0\n", keyPower) {
		t.Error("power button bitmap not recognised")
	}
	// A keyboard with many keys, power included (word 1 bit 52).
	if !HasKey("402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe", keyPower) {
		t.Error("keyboard bitmap not recognised")
	}
	if HasKey("0", keyPower) || HasKey("", keyPower) || HasKey("zz 0", keyPower) {
		t.Error("device without a power key accepted")
	}
}
