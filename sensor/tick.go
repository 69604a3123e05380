package sensor

import (
	"fmt"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
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
func (c *Correlator) Tick() []schema.Event {
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

// teardownMargin: frames an endpoint sends within this long of its
// connection's drop are not counted as "still sending": they may be the TCP
// teardown of the dropped connection itself (the kernel answering the
// sensor's close with a reset), not a host that carries on.
const teardownMargin = 500 * time.Millisecond

// sentSince reports whether any MAC of e sent a frame after t.
func (c *Correlator) sentSince(e *endpoint, t int64) bool {
	for _, mi := range e.owned {
		if c.macs[mi].lastSeen > t {
			return true
		}
	}
	return false
}

func heartbeating(s schema.Status) bool {
	return s == schema.StatusGreen || s == schema.StatusYellow || s == schema.StatusRed
}

// judgeDrop applies the dropped-connection rule: once the reconnect grace
// after a drop has passed without the agent coming back, an endpoint whose
// MACs sent after the drop is missing. Traffic from before the drop does
// not count, so a link that went down with the connection (a flap, a
// suspend) never makes it missing here; the missing deadline still judges
// it later as it judges any silence.
func (c *Correlator) judgeDrop(out []schema.Event, e *endpoint, now int64, blind bool) ([]schema.Event, bool) {
	if e.dropAt == 0 || e.dropJudged || e.connected || now-e.dropAt < int64(c.cfg.ReconnectGrace) {
		return out, false
	}
	e.dropJudged = true
	if blind || !heartbeating(e.status) || !c.sentSince(e, e.dropAt+int64(teardownMargin)) {
		return out, false
	}
	gone := time.Duration(now - e.dropAt)
	reason := fmt.Sprintf("connection dropped without goodbye (%s), host still sending: no agent for %s after the drop, "+
		"so it was killed or crashed and not restarted", e.dropCause.Text(), gone.Round(100*time.Millisecond))
	details := &schema.HeartbeatMissingDetails{
		Left:                  "dropped",
		Disconnect:            e.dropCause.String(),
		SinceDropSeconds:      gone.Seconds(),
		ReconnectGraceSeconds: c.cfg.ReconnectGrace.Seconds(),
	}
	return c.markMissing(out, e, now, reason, details), true
}

func (c *Correlator) judge(out []schema.Event, e *endpoint, now int64, blind bool) []schema.Event {
	var judged bool
	if out, judged = c.judgeDrop(out, e, now, blind); judged {
		return out
	}
	silentFor := now - max(e.lastHB, c.startedAt)
	if silentFor < c.intervalOf(e)*int64(c.cfg.MissingAfter) {
		return out
	}
	sending := c.sentRecently(e, now)
	switch e.status {
	case schema.StatusMissing:
		ladder := c.cfg.MissingRealert
		silent := time.Duration(now - e.lastHB)
		step := e.realert
		for step < len(ladder) && silent >= ladder[step] {
			step++
		}
		if step > e.realert {
			e.realert = step
			if sending && !blind {
				ev := c.endpointEvent(e, schema.EventHeartbeatMissing, schema.SeverityError)
				ev.Reason = fmt.Sprintf("still no heartbeat after %s while its MACs keep sending", silent.Round(time.Second))
				ev.PreviousStatus = schema.StatusMissing
				ev.Details = &schema.HeartbeatMissingDetails{SilentForSeconds: silent.Seconds(), Escalation: step}
				out = c.emit(out, ev)
			}
		}
		return out
	case schema.StatusOffline, schema.StatusUnknown:
		if blind || !sending {
			e.wokeAt = 0
			if e.status == schema.StatusUnknown && !blind {
				return c.setStatus(out, e, schema.StatusOffline, now, "no heartbeat and no traffic")
			}
			return out
		}
		// An offline endpoint sends again after a silence the sensor saw: a
		// laptop waking from suspend, a host booting. Its agent gets an
		// interval (its next heartbeat) and the reconnect grace to come
		// back before it is missing. (Unknown was not seen silent: the
		// capture was blind.)
		if e.status == schema.StatusOffline {
			if e.wokeAt == 0 {
				e.wokeAt = now
			}
			if now-e.wokeAt < int64(c.cfg.HeartbeatInterval+c.cfg.ReconnectGrace) {
				return out
			}
		}
	default: // green, yellow, red, stopped: the deadline just passed
		if blind {
			return c.setStatus(out, e, schema.StatusUnknown, now, "no heartbeat while the capture is blind: missing or offline cannot be told")
		}
		if !sending {
			return c.setStatus(out, e, schema.StatusOffline, now, "no heartbeat and no traffic")
		}
	}
	// No heartbeat past the deadline and its MACs send: missing.
	silent := c.silence(e, now)
	reason := fmt.Sprintf("no heartbeat for %s while its MACs keep sending", silent.Round(time.Second))
	details := &schema.HeartbeatMissingDetails{}
	switch {
	case e.goodbye == schema.GoodbyeShutdown:
		ago := time.Duration(now - e.goodbyeAt).Round(time.Second)
		reason += fmt.Sprintf("; its agent said goodbye for a shutdown %s ago, yet the host kept sending: "+
			"a shutdown that did not happen is suspicious (a goodbye can be forged to hide a stopped agent)", ago)
		details.Left, details.Goodbye, details.SuspiciousGoodbye = "goodbye", string(e.goodbye), true
	case e.goodbye != "":
		ago := time.Duration(now - e.goodbyeAt).Round(time.Second)
		reason += fmt.Sprintf("; its agent said goodbye (%s) %s ago and did not come back", e.goodbye, ago)
		details.Left, details.Goodbye = "goodbye", string(e.goodbye)
	case e.dropAt != 0:
		reason += fmt.Sprintf("; its connection dropped without goodbye (%s)", e.dropCause.Text())
		details.Left, details.Disconnect = "dropped", e.dropCause.String()
	}
	if e.wokeAt != 0 {
		reason += fmt.Sprintf("; it started sending again %s ago after a silence and its agent did not come back",
			time.Duration(now-e.wokeAt).Round(time.Second))
	}
	if c.agentConnectionSeen(e, now) {
		reason += "; its connection to the LAN zone is still active: agent present but silent"
		details.AgentConnectionSeen = true
	}
	return c.markMissing(out, e, now, reason, details)
}

// silence is how long e has not heartbeated (since the sensor started, if
// it never did).
func (c *Correlator) silence(e *endpoint, now int64) time.Duration {
	if e.lastHB == 0 {
		return time.Duration(now - c.startedAt)
	}
	return time.Duration(now - e.lastHB)
}

// markMissing makes e missing and raises heartbeat_missing with reason and
// details (silent_for_seconds and escalation added). Escalation counts the
// ladder's steps reached: 0 for a verdict before the missing deadline (a
// dropped connection), whose first re-alert then comes at that deadline.
func (c *Correlator) markMissing(out []schema.Event, e *endpoint, now int64, reason string, details *schema.HeartbeatMissingDetails) []schema.Event {
	prev := e.status
	e.status, e.statusSince = schema.StatusMissing, now
	silent := c.silence(e, now)
	e.realert = 0
	for e.realert < len(c.cfg.MissingRealert) && silent >= c.cfg.MissingRealert[e.realert] {
		e.realert++
	}
	ev := c.endpointEvent(e, schema.EventHeartbeatMissing, schema.SeverityError)
	ev.PreviousStatus = prev
	ev.Transition = true
	ev.Reason = reason
	details.SilentForSeconds = silent.Seconds()
	details.Escalation = e.realert
	if silent >= c.cfg.deadline {
		details.Escalation = max(e.realert, 1)
	}
	ev.Details = details
	return c.emit(out, ev)
}

func (c *Correlator) setStatus(out []schema.Event, e *endpoint, s schema.Status, now int64, reason string) []schema.Event {
	if e.status == s {
		return out
	}
	ev := c.endpointEvent(e, schema.EventStatusChanged, schema.SeverityInfo)
	ev.PreviousStatus = e.status
	e.status, e.statusSince = s, now
	ev.Status = s
	ev.Transition = true
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
