package daemon

import (
	"context"

	"github.com/tapbeat/tapbeat/capture"
)

// runCapture reads every configured capture interface on TPACKET_V3 rings
// until ctx ends. A lost interface is reopened by capture itself and
// reported to the correlator as capture health meanwhile.
func (s *Sensor) runCapture(ctx context.Context) error {
	live, err := capture.NewLive(capture.LiveConfig{
		Interfaces: s.cfg.Capture.Interfaces,
		Workers:    s.cfg.Capture.Fanout,
		Ring:       capture.RingConfig{RingBytes: s.cfg.Capture.RingMiB << 20},
		Options:    capture.Options{LANPort: s.opts.Config.LANPort()},
		Logger:     s.log.With("part", "capture"),
	}, fanout{s})
	if err != nil {
		return err
	}
	return live.Run(ctx)
}
