package sensor

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// CaptureHealth takes a capture interface's report. Down links and drops
// above the threshold make the sensor blind: no missing verdict is raised
// while it cannot see.
func (c *Correlator) CaptureHealth(h schema.CaptureHealth) []schema.Event {
	now := c.now()
	c.captureSeen = true
	ci, ok := c.capture[h.Interface]
	if !ok {
		ci = &captureIface{}
		c.capture[h.Interface] = ci
	}
	ci.up, ci.reason = h.Up, h.Reason
	if h.Packets > 0 {
		at := h.Time.UnixNano()
		if h.Time.IsZero() {
			at = now
		}
		if at > c.lastFrameAt {
			c.lastFrameAt = at
		}
		if float64(h.Drops) > c.cfg.DropThreshold*float64(h.Packets) {
			ci.lossyUntil = now + int64(c.cfg.HeartbeatInterval)
			ci.lossyWhy = fmt.Sprintf("kernel dropped %d of %d frames (%.1f%%, threshold %.1f%%)",
				h.Drops, h.Packets, 100*float64(h.Drops)/float64(h.Packets), 100*c.cfg.DropThreshold)
		}
	}
	return c.updateCapture(nil, now)
}

// blindReason says why the capture cannot be trusted now, or "".
func (c *Correlator) blindReason(now int64) string {
	if !c.captureSeen {
		return ""
	}
	names := make([]string, 0, len(c.capture))
	for n := range c.capture {
		names = append(names, n)
	}
	sort.Strings(names)
	var why []string
	for _, n := range names {
		ci := c.capture[n]
		switch {
		case !ci.up:
			r := ci.reason
			if r == "" {
				r = "link down"
			}
			why = append(why, fmt.Sprintf("capture interface %s is down: %s", n, r))
		case now < ci.lossyUntil:
			why = append(why, fmt.Sprintf("capture interface %s: %s", n, ci.lossyWhy))
		}
	}
	quiet := int64(c.cfg.QuietAfter)
	if len(why) == 0 && c.lastHBAt > 0 && now-c.lastHBAt < int64(c.cfg.deadline) &&
		now-c.startedAt >= quiet && now-c.lastFrameAt >= quiet {
		why = append(why, fmt.Sprintf("capture saw no frame for %s or more while endpoints heartbeat: check the mirror port and its cabling",
			c.cfg.QuietAfter))
	}
	return strings.Join(why, "; ")
}

func (c *Correlator) updateCapture(out []schema.Event, now int64) []schema.Event {
	why := c.blindReason(now)
	switch {
	case why != "" && (!c.degraded || why != c.degradedWhy):
		c.degraded, c.degradedWhy = true, why
		out = c.emit(out, schema.Event{
			Type: schema.EventCaptureDegraded, Severity: schema.SeverityError,
			Reason:  why + "; missing verdicts are withheld until the capture is healthy",
			Details: &schema.CaptureDegradedDetails{Blind: true},
		})
	case why == "" && c.degraded:
		c.degraded, c.degradedWhy = false, ""
		c.clearFrom = now
		out = c.emit(out, schema.Event{
			Type: schema.EventCaptureRestored, Severity: schema.SeverityNotice,
			Reason: "capture healthy again; missing verdicts resume after one clean interval",
		})
	}
	return out
}

// blind reports whether the last interval's traffic cannot be trusted: the
// capture is degraded now or recovered less than an interval ago.
func (c *Correlator) blind(now int64) bool {
	return c.degraded || now-c.clearFrom < int64(c.cfg.HeartbeatInterval)
}
