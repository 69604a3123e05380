package sensor

import (
	"fmt"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// ClockStepTolerance is the smallest jump of the wall clock, beyond the
// monotonic clock, that Engine.Run reports as a step. Slewing (NTP's
// gradual correction) never comes near it within one tick.
const ClockStepTolerance = 5 * time.Second

// ClockStepped tells the correlator that the wall clock it reads jumped by
// step: NTP setting the time at boot, an administrator's date command, a
// virtual machine resumed. Every time the correlator keeps was read on the
// old clock, so a forward jump would make every endpoint look silent at
// once and a backward one would mute missing verdicts for as long. It moves
// all of them by step, which keeps every silence and every interval as
// long as it really was, and reports the step.
func (c *Correlator) ClockStepped(step time.Duration) []schema.Event {
	d := int64(step)
	shift := func(t *int64) {
		if *t != 0 {
			*t += d
		}
	}
	shift(&c.startedAt)
	shift(&c.lastPrune)
	shift(&c.lastFrameAt)
	shift(&c.lastHBAt)
	shift(&c.clearFrom)
	for _, e := range c.endpoints {
		if e != nil {
			shift(&e.statusSince)
			shift(&e.lastHB)
			shift(&e.dropAt)
			shift(&e.goodbyeAt)
			shift(&e.wokeAt)
		}
	}
	for i := range c.macs {
		shift(&c.macs[i].firstSeen)
		shift(&c.macs[i].lastSeen)
	}
	for k, t := range c.hbChannel {
		c.hbChannel[k] = t + d
	}
	for k, t := range c.policySeen {
		c.policySeen[k] = t + d
	}
	for k, t := range c.pairSeen {
		c.pairSeen[k] = t + d
	}
	for _, ci := range c.capture {
		shift(&ci.lossyUntil)
	}
	for _, st := range c.unmanaged {
		st.FirstSeen, st.LastSeen = st.FirstSeen.Add(step), st.LastSeen.Add(step)
	}
	return c.emit(nil, schema.Event{
		Type: schema.EventClockStepped, Severity: schema.SeverityWarning,
		Reason: fmt.Sprintf("the sensor's clock jumped by %s; the times it keeps were moved with it, so silences are still timed right (events before this one carry the old clock's times)",
			signed(step.Round(time.Millisecond))),
		Details: &schema.ClockSteppedDetails{StepSeconds: step.Seconds()},
	})
}

func signed(d time.Duration) string {
	if d > 0 {
		return "+" + d.String()
	}
	return d.String()
}

// StepWatch notices steps of the wall clock: between two observations the
// wall clock should move as far as the monotonic one. The zero value is
// ready to use.
type StepWatch struct {
	wall time.Time     // wall reading at the last observation
	mono time.Duration // monotonic reading then
	ok   bool
}

// Observe takes a wall-clock reading (without a monotonic part, as from
// time.Now().Round(0)) and a monotonic one (time since any fixed instant)
// and returns how far the wall clock moved beyond the monotonic clock since
// the previous observation: 0 the first time.
func (w *StepWatch) Observe(wall time.Time, mono time.Duration) time.Duration {
	var step time.Duration
	if w.ok {
		step = wall.Sub(w.wall) - (mono - w.mono)
	}
	w.wall, w.mono, w.ok = wall, mono, true
	return step
}
