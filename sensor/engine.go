package sensor

import (
	"context"
	"sync"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Publisher receives the events the correlator emits, in sequence order. It
// is called with the engine's lock held, so it must not block for long nor
// call back into the engine: hand the events to a queue.
type Publisher func([]schema.Event)

// Engine makes a Correlator safe for concurrent inputs (LAN-zone
// connections, capture workers, the ticker) and publishes its events.
type Engine struct {
	mu      sync.Mutex
	c       *Correlator
	publish Publisher
}

// NewEngine wraps c; publish may be nil.
func NewEngine(c *Correlator, publish Publisher) *Engine {
	if publish == nil {
		publish = func([]schema.Event) {}
	}
	return &Engine{c: c, publish: publish}
}

func (e *Engine) out(evs []schema.Event) {
	if len(evs) > 0 {
		e.publish(evs)
	}
}

// Hello passes an endpoint's hello to the correlator.
func (e *Engine) Hello(h schema.Hello) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	evs, err := e.c.Hello(h)
	e.out(evs)
	return err
}

// Heartbeat passes a heartbeat to the correlator.
func (e *Engine) Heartbeat(hb schema.Heartbeat) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	evs, err := e.c.Heartbeat(hb)
	e.out(evs)
	return err
}

// Heartbeats passes several heartbeats under one hold of the lock (a
// fleet's records of endpoints held elsewhere, fed in batches); one for an
// unknown endpoint is skipped.
func (e *Engine) Heartbeats(hbs []schema.Heartbeat) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, hb := range hbs {
		evs, _ := e.c.Heartbeat(hb)
		e.out(evs)
	}
}

// Disconnect records that an endpoint's connection ended, and how.
func (e *Engine) Disconnect(d schema.Disconnect) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out(e.c.Disconnect(d))
}

// Remove forgets a revoked endpoint.
func (e *Engine) Remove(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out(e.c.Remove(id))
}

// Traffic passes a batch of per-MAC summaries to the correlator.
func (e *Engine) Traffic(batch []schema.TrafficSummary) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out(e.c.Traffic(batch))
}

// FlowStarts passes flow starts to the correlator.
func (e *Engine) FlowStarts(flows []schema.Flow) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range flows {
		e.out(e.c.FlowStart(f))
	}
}

// CaptureHealth passes a capture interface's report to the correlator.
func (e *Engine) CaptureHealth(h schema.CaptureHealth) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out(e.c.CaptureHealth(h))
}

// Record numbers and publishes an event raised outside the correlator.
func (e *Engine) Record(ev schema.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out(e.c.Record(ev))
}

// Tick applies the time-driven rules once.
func (e *Engine) Tick() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out(e.c.Tick())
}

// ClockStepped tells the correlator that the wall clock jumped by step.
func (e *Engine) ClockStepped(step time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out(e.c.ClockStepped(step))
}

// Stalled tells the correlator that the sensor did not run for d.
func (e *Engine) Stalled(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.out(e.c.Stalled(d))
}

// Run ticks every period until ctx ends. Before each tick it measures how
// late the tick came on the monotonic clock and reports lateness beyond
// StallTolerance as a stall of the sensor, then compares the wall clock
// with the monotonic one and reports a step of more than
// ClockStepTolerance; the correlator reads the wall clock.
func (e *Engine) Run(ctx context.Context, period time.Duration) error {
	t := time.NewTicker(period)
	defer t.Stop()
	start := time.Now()
	var watch StepWatch
	var lag LagWatch
	watch.Observe(start.Round(0), 0)
	lag.Observe(0, period)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			now := time.Now()
			if late := lag.Observe(now.Sub(start), period); late > StallTolerance {
				e.Stalled(late)
			}
			if step := watch.Observe(now.Round(0), now.Sub(start)); step > ClockStepTolerance || step < -ClockStepTolerance {
				e.ClockStepped(step)
			}
			e.Tick()
		}
	}
}

// Reconfigure replaces the correlation rules without losing state.
func (e *Engine) Reconfigure(cfg Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c.Reconfigure(cfg)
}

// AtRisk returns the current at-risk list.
func (e *Engine) AtRisk() schema.AtRiskList {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c.AtRisk()
}

// Endpoints returns every endpoint's state, ordered by id. Heartbeats wait
// only for the copy, not for the ordering.
func (e *Engine) Endpoints() []schema.EndpointState {
	e.mu.Lock()
	out := e.c.endpointStates()
	e.mu.Unlock()
	sortStates(out)
	return out
}

// StatusCounts returns how many endpoints are in each status.
func (e *Engine) StatusCounts() map[schema.Status]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c.StatusCounts()
}

// Unmanaged returns the unmanaged inventory.
func (e *Engine) Unmanaged() []schema.Station {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c.Unmanaged()
}

// Snapshot returns the state worth keeping across a restart, ordered as
// Correlator.Snapshot orders it. Heartbeats wait only for the copy.
func (e *Engine) Snapshot() Snapshot {
	e.mu.Lock()
	s := e.c.snapshot()
	e.mu.Unlock()
	s.sort()
	return s
}

// Config returns the rules in force.
func (e *Engine) Config() Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c.Config()
}

// Endpoint returns one endpoint's state.
func (e *Engine) Endpoint(id string) (schema.EndpointState, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.c.Endpoint(id)
}
