package daemon

import "github.com/tapbeat/tapbeat/sensor/schema"

// fanout is the capture.Sink the daemon gives capture: traffic and flows to
// the correlator, traffic rollups and bindings to history, health to both
// the correlator and the metrics.
type fanout struct{ s *Sensor }

func (f fanout) Traffic(batch []schema.TrafficSummary) {
	f.s.engine.Traffic(batch)
	f.s.watchTraffic(batch)
	// AddTraffic writes only when a minute closes: a nil error does not
	// say the disk has room.
	if err := f.s.store.AddTraffic(batch); err != nil {
		f.s.noteStore(err, "store traffic rollups")
	}
}

func (f fanout) FlowStarts(flows []schema.Flow) { f.s.engine.FlowStarts(flows) }

func (f fanout) CaptureHealth(h schema.CaptureHealth) {
	f.s.engine.CaptureHealth(h)
	f.s.metrics.capture(h)
}

func (f fanout) Bindings(bs []schema.Binding) {
	f.s.noteStore(f.s.store.AddBindings(bs), "store IP bindings")
	f.s.watchBindings(bs)
}
