package sensor

import "time"

// An interval change reaches agents over their connections within about a
// second, but an agent heartbeats at the old pace until it has heard it. An
// endpoint is therefore judged by the longer of the old and new interval
// until it heartbeats at the new one; only a shorter interval needs this,
// since a longer one is already the more patient judge.

// intervalOf returns the heartbeat interval e is judged by, in nanoseconds.
func (c *Correlator) intervalOf(e *endpoint) int64 {
	return max(int64(c.cfg.HeartbeatInterval), e.slowInterval)
}

// retime prepares every endpoint for an interval change from old to new.
func (c *Correlator) retime(old, new time.Duration) {
	for _, e := range c.endpoints {
		if e == nil {
			continue
		}
		switch {
		case new < old:
			e.slowInterval = max(e.slowInterval, int64(old))
		case e.slowInterval <= int64(new):
			e.slowInterval = 0
		}
	}
}

// paced notes a heartbeat of e at now: once the gap since the previous one
// is closer to the interval in force than to the longer one e was judged
// by, e has taken up the new pace.
func (c *Correlator) paced(e *endpoint, now int64) {
	if e.slowInterval == 0 || e.lastHB == 0 {
		return
	}
	cur := int64(c.cfg.HeartbeatInterval)
	if now-e.lastHB <= cur+(e.slowInterval-cur)/2 {
		e.slowInterval = 0
	}
}
