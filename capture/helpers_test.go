package capture

import (
	"time"

	"github.com/gopacket/gopacket"
)

func captureInfo(sec int64, capLen, wire int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: time.Unix(1_700_000_000+sec, 0), CaptureLength: capLen, Length: wire}
}
