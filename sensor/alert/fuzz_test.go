package alert

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Collector responses are untrusted input: any bytes give a frame or an
// error, never a panic, and a parsed frame re-encodes to what was read.
func FuzzRELPFrame(f *testing.F) {
	f.Add([]byte("1 rsp 6 200 OK\n"))
	f.Add([]byte("0 serverclose 0\n"))
	f.Add([]byte("12 rsp 17 500 not supported\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		txnr, cmd, data, err := readRELPFrame(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if txnr < 0 {
			t.Fatalf("negative transaction number %d", txnr)
		}
		again := appendRELP(nil, txnr, cmd, data)
		t2, c2, d2, err := readRELPFrame(bufio.NewReader(bytes.NewReader(again)))
		if err != nil || t2 != txnr || c2 != cmd || !bytes.Equal(d2, data) {
			t.Fatalf("re-encoded %q parses as %d %q %q, %v", again, t2, c2, d2, err)
		}
	})
}

// A damaged outbox value is an error, never a panic.
func FuzzDecodeEvent(f *testing.F) {
	for _, ev := range testEvents(1, 3) {
		b, err := encodeEvent(nil, &ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev schema.Event
		if details, err := decodeEventDetails(b, &ev, false); err == nil {
			for _, format := range []Format{FormatRFC5424, FormatCEF, FormatJSON} {
				f := Formatter{Format: format}
				f.append(nil, &ev, details, 1)
			}
		}
		decodeEvent(b, &schema.Event{})
	})
}
