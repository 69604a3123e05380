package sensor

import (
	"fmt"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// StallTolerance is the lateness of a tick that counts as the sensor not
// looking. Below it, lateness is ordinary scheduling noise; above it, the
// time is taken out of every silence the correlator times.
const StallTolerance = 50 * time.Millisecond

// StallReportAfter is the shortest stall that raises sensor_stalled.
// Shorter ones (a loaded CPU) are still taken out of silences, silently.
const StallReportAfter = time.Second

// Stalled tells the correlator that the sensor itself was not running for
// d: the process was stopped, its virtual machine paused or migrated, or it
// was starved of CPU. Heartbeats that arrived meanwhile wait unread in the
// sockets, so judging silences across the stall would blame endpoints for
// the sensor's absence. Every silence clock (last heartbeat, last traffic,
// the heartbeat channel, the start-up grace, capture health) moves forward
// by d, never past now: the time the sensor was not looking does not count
// against anyone. Stalls of StallReportAfter or more raise sensor_stalled.
func (c *Correlator) Stalled(d time.Duration) []schema.Event {
	if d <= 0 {
		return nil
	}
	now := c.now()
	step := int64(d)
	shift := func(t *int64) {
		if *t != 0 {
			*t = min(*t+step, now)
		}
	}
	shift(&c.startedAt)
	shift(&c.lastFrameAt)
	shift(&c.lastHBAt)
	shift(&c.clearFrom)
	for _, e := range c.endpoints {
		if e != nil {
			shift(&e.lastHB)
		}
	}
	for i := range c.macs {
		shift(&c.macs[i].lastSeen)
	}
	for k, t := range c.hbChannel {
		c.hbChannel[k] = min(t+step, now)
	}
	if d < StallReportAfter {
		return nil
	}
	return c.emit(nil, schema.Event{
		Type: schema.EventSensorStalled, Severity: schema.SeverityNotice,
		Reason: fmt.Sprintf("the sensor was not running for %s (process stopped, virtual machine paused or CPU starved); that time does not count against any endpoint's heartbeat deadline",
			d.Round(time.Millisecond)),
		Details: &schema.SensorStalledDetails{StalledSeconds: d.Seconds()},
	})
}

// LagWatch measures how late periodic ticks run on the monotonic clock.
// The zero value is ready to use.
type LagWatch struct {
	last time.Duration
	ok   bool
}

// Observe takes a monotonic reading (time since any fixed instant) at a
// tick of the given period and returns how much later than one period
// after the previous tick it came: 0 the first time, or when on time.
func (w *LagWatch) Observe(mono, period time.Duration) time.Duration {
	var late time.Duration
	if w.ok {
		late = max(mono-w.last-period, 0)
	}
	w.last, w.ok = mono, true
	return late
}
