package sensor

import "time"

// Clock tells the correlator what time it is. The daemon passes the wall
// clock; tests and offline replay pass a clock they advance themselves.
type Clock interface {
	Now() time.Time
}

// WallClock is the real clock.
type WallClock struct{}

// Now returns time.Now().
func (WallClock) Now() time.Time { return time.Now() }

// ManualClock is a Clock that only moves when told to. The zero value starts
// at the zero time; it is not safe for concurrent use.
type ManualClock struct{ T time.Time }

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time { return c.T }

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) { c.T = c.T.Add(d) }

// Set moves the clock to t.
func (c *ManualClock) Set(t time.Time) { c.T = t }
