package sensor

import (
	"fmt"
	"time"
)

// TrafficLag is how old a frame can be when the correlator first hears of
// it: capture reports the stations of each second once that second is
// over. "Sent recently" looks back at least this far, so that at a short
// heartbeat interval a host that keeps sending is not taken for silent.
const TrafficLag = 2 * time.Second

// sentRecently reports whether any MAC of e sent during the last interval
// (at least TrafficLag).
func (c *Correlator) sentRecently(e *endpoint, now int64) bool {
	since := now - max(c.intervalOf(e), int64(TrafficLag))
	for _, mi := range e.owned {
		if c.macs[mi].lastSeen > since {
			return true
		}
	}
	return false
}

// Tick applies the time-driven rules: missing and offline verdicts, the
// escalation ladder, no-heartbeat verdicts, capture blindness. The daemon
// calls it four times a second.
func (c *Correlator) Tick() []Event {
	now := c.now()
	out := c.updateCapture(nil, now)
	inGrace := now-c.startedAt < int64(c.cfg.HeartbeatInterval)*int64(c.cfg.StartupGrace)
	if !inGrace {
		blind := c.blind(now)
		for _, e := range c.endpoints {
			if e != nil {
				out = c.judge(out, e, now, blind)
			}
		}
		out = c.judgeUnclaimed(out, now)
	}
	if now-c.lastPrune >= int64(c.cfg.DedupWindow) {
		c.prune(now)
	}
	return out
}

func (c *Correlator) judge(out []Event, e *endpoint, now int64, blind bool) []Event {
	silentFor := now - max(e.lastHB, c.startedAt)
	if silentFor < c.intervalOf(e)*int64(c.cfg.MissingAfter) {
		return out
	}
	sending := c.sentRecently(e, now)
	switch e.status {
	case StatusMissing:
		ladder := c.cfg.MissingRealert
		silent := time.Duration(now - e.lastHB)
		step := e.realert
		for step < len(ladder) && silent >= ladder[step] {
			step++
		}
		if step > e.realert {
			e.realert = step
			if sending && !blind {
				ev := c.endpointEvent(e, EventHeartbeatMissing, SeverityError)
				ev.Reason = fmt.Sprintf("still no heartbeat after %s while its MACs keep sending", silent.Round(time.Second))
				ev.PreviousStatus = StatusMissing
				ev.Details = map[string]any{"silent_for_seconds": silent.Seconds(), "escalation": step}
				out = c.emit(out, ev)
			}
		}
		return out
	case StatusOffline, StatusUnknown:
		if blind || !sending {
			if e.status == StatusUnknown && !blind {
				return c.setStatus(out, e, StatusOffline, now, "no heartbeat and no traffic")
			}
			return out
		}
	default: // green, yellow, red: the deadline just passed
		if blind {
			return c.setStatus(out, e, StatusUnknown, now, "no heartbeat while the capture is blind: missing or offline cannot be told")
		}
		if !sending {
			return c.setStatus(out, e, StatusOffline, now, "no heartbeat and no traffic")
		}
	}
	// No heartbeat past the deadline and its MACs send: missing.
	prev := e.status
	e.status, e.statusSince = StatusMissing, now
	silent := time.Duration(now - e.lastHB)
	if e.lastHB == 0 {
		silent = time.Duration(now - c.startedAt)
	}
	e.realert = 0
	for e.realert < len(c.cfg.MissingRealert) && silent >= c.cfg.MissingRealert[e.realert] {
		e.realert++
	}
	ev := c.endpointEvent(e, EventHeartbeatMissing, SeverityError)
	ev.PreviousStatus = prev
	ev.Reason = fmt.Sprintf("no heartbeat for %s while its MACs keep sending", silent.Round(time.Second))
	ev.Details = map[string]any{"silent_for_seconds": silent.Seconds(), "escalation": max(e.realert, 1)}
	if c.agentConnectionSeen(e, now) {
		ev.Reason += "; its connection to the LAN zone is still active: agent present but silent"
		ev.Details["agent_connection_seen"] = true
	}
	return c.emit(out, ev)
}

func (c *Correlator) setStatus(out []Event, e *endpoint, s Status, now int64, reason string) []Event {
	if e.status == s {
		return out
	}
	ev := c.endpointEvent(e, EventStatusChanged, SeverityInfo)
	ev.PreviousStatus = e.status
	e.status, e.statusSince = s, now
	ev.Status = s
	ev.Reason = reason
	return c.emit(out, ev)
}

func (c *Correlator) prune(now int64) {
	c.lastPrune = now
	window := int64(c.cfg.DedupWindow)
	for k, t := range c.policySeen {
		if now-t >= window {
			delete(c.policySeen, k)
		}
	}
	for k, t := range c.pairSeen {
		if now-t >= window {
			delete(c.pairSeen, k)
		}
	}
	for k, t := range c.hbChannel {
		if now-t >= window {
			delete(c.hbChannel, k)
		}
	}
}
