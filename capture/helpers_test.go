package capture

import (
	"testing"
	"time"

	"github.com/gopacket/gopacket"
)

func captureInfo(sec int64, capLen, wire int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: time.Unix(1_700_000_000+sec, 0), CaptureLength: capLen, Length: wire}
}

// framesOf returns copies of every frame in a capture file.
func framesOf(t testing.TB, path string) [][]byte {
	t.Helper()
	src, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var out [][]byte
	var p Packet
	for src.Read(&p) == nil {
		out = append(out, append([]byte(nil), p.Data...))
	}
	return out
}
