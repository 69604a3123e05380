package fleet

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Engine is what the bridge feeds: the sensor's engine (the LAN zone's
// correlator interface).
type Engine interface {
	Hello(schema.Hello) error
	Heartbeat(schema.Heartbeat) error
	Disconnect(schema.Disconnect)
	Remove(id string)
	Record(schema.Event)
	AtRisk() schema.AtRiskList
}

// Bridge joins a sensor's engine to the fleet. The LAN zone feeds it
// instead of the engine: it passes every input on and shares the state of
// the endpoints this sensor holds. It feeds the engine the endpoints other
// sensors hold, so the correlator judges the MACs it sees against the
// fleet's heartbeat state, and it keeps the verdicts owned:
//
//   - the sensor holding an endpoint's connection owns its hello, health,
//     status and disconnect events;
//   - a sensor seeing a MAC's traffic owns no_heartbeat, heartbeat_missing
//     and heartbeat_restored for it (and flow alerts);
//   - while the fleet is degraded, an endpoint held elsewhere keeps its last
//     shared state (unknown to the fleet, never missing), and no_heartbeat
//     is withheld: the sensor cannot vouch for MACs another sensor may hold.
type Bridge struct {
	f *Fleet

	mu     sync.Mutex
	e      Engine
	local  map[string]schema.Hello // endpoints whose connection this sensor holds
	health map[string]schema.Health
	remote map[string]fed // endpoints held elsewhere, as fed to the engine
	ready  bool           // the remote state was fed once since the fleet became healthy
}

type fed struct {
	rec       EndpointRecord
	connected bool
	fedAt     time.Time
}

// NewBridge returns a bridge for f; SetEngine completes it.
func NewBridge(f *Fleet) *Bridge {
	return &Bridge{f: f, local: map[string]schema.Hello{}, health: map[string]schema.Health{}, remote: map[string]fed{}}
}

// SetEngine sets the engine the bridge feeds.
func (b *Bridge) SetEngine(e Engine) {
	b.mu.Lock()
	b.e = e
	b.mu.Unlock()
}

func (b *Bridge) engine() Engine {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.e
}

// Hello passes a local endpoint's hello on and shares it.
func (b *Bridge) Hello(h schema.Hello) error {
	// Held here from now on: its events are this sensor's (an endpoint
	// failing over from another sensor included).
	b.mu.Lock()
	b.local[h.EndpointID] = h
	b.health[h.EndpointID] = h.Health
	delete(b.remote, h.EndpointID)
	b.mu.Unlock()
	if err := b.engine().Hello(h); err != nil {
		b.mu.Lock()
		delete(b.local, h.EndpointID)
		b.mu.Unlock()
		return err
	}
	b.put(h, h.Health, h.Reasons)
	return nil
}

// Heartbeat passes a heartbeat on and shares it (on change or refresh).
func (b *Bridge) Heartbeat(hb schema.Heartbeat) error {
	if err := b.engine().Heartbeat(hb); err != nil {
		return err
	}
	b.mu.Lock()
	h, ok := b.local[hb.EndpointID]
	b.health[hb.EndpointID] = hb.Health
	b.mu.Unlock()
	if ok {
		b.put(h, hb.Health, hb.Reasons)
	}
	return nil
}

func (b *Bridge) put(h schema.Hello, health schema.Health, reasons []string) {
	b.f.PutEndpoint(EndpointRecord{ID: h.EndpointID, Name: h.Name, Org: h.Org, Connected: true, Health: health,
		Reasons: reasons, Interfaces: h.Interfaces, Users: h.Users, LastHeartbeat: b.f.now(), Instance: h.Instance})
}

// Disconnect passes a local disconnect on and releases the endpoint in the
// fleet unless another sensor took it over.
func (b *Bridge) Disconnect(d schema.Disconnect) {
	id := d.EndpointID
	b.engine().Disconnect(d)
	b.mu.Lock()
	_, ok := b.local[id]
	delete(b.local, id)
	b.mu.Unlock()
	if ok {
		go func() {
			if err := b.f.ReleaseEndpoint(context.Background(), d); err != nil {
				b.f.log.Debug("fleet: release", "endpoint", id, "err", err)
			}
		}()
	}
}

// Remove passes a revocation on.
func (b *Bridge) Remove(id string) {
	b.engine().Remove(id)
	b.mu.Lock()
	delete(b.local, id)
	delete(b.remote, id)
	b.mu.Unlock()
}

// Record passes an event on.
func (b *Bridge) Record(ev schema.Event) { b.engine().Record(ev) }

// AtRisk is the engine's list: it holds the endpoints of the whole fleet,
// so every sensor pushes the same list.
func (b *Bridge) AtRisk() schema.AtRiskList { return b.engine().AtRisk() }

// owned lists the event types a sensor raises for an endpoint another
// sensor holds: the verdicts of the traffic it sees.
var owned = []schema.EventType{schema.EventHeartbeatMissing, schema.EventHeartbeatRestored,
	schema.EventLateralMovement, schema.EventPolicyViolation, schema.EventMACConflict}

// Filter wraps the engine's publisher: it drops the events this sensor
// does not own (see Bridge), and appends the rest to the fleet's event
// stream.
func (b *Bridge) Filter(next func([]schema.Event)) func([]schema.Event) {
	return func(evs []schema.Event) {
		out := evs[:0:0]
		b.mu.Lock()
		degraded := b.f.isDegraded()
		for _, ev := range evs {
			if ev.EndpointID != "" {
				if _, ok := b.remote[ev.EndpointID]; ok && !slices.Contains(owned, ev.Type) {
					continue
				}
			}
			if ev.Type == schema.EventNoHeartbeat && (degraded || !b.ready) {
				b.f.log.Info("fleet: no_heartbeat withheld: the fleet's heartbeat state is not available", "macs", ev.MACs)
				continue
			}
			out = append(out, ev)
		}
		b.mu.Unlock()
		for _, ev := range out {
			if degraded {
				break // the local history keeps them; the stream is unavailable
			}
			if err := b.f.PublishEvent(ev); err != nil {
				b.f.log.Debug("fleet: event stream", "err", err)
			}
		}
		if len(out) > 0 {
			next(out)
		}
	}
}

// Run feeds the engine the endpoints other sensors hold and turns the
// fleet's health changes into fleet_degraded / fleet_restored events,
// until ctx ends.
func (b *Bridge) Run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-b.f.Changes():
			typ, sev := schema.EventFleetRestored, schema.SeverityNotice
			if c.Degraded {
				typ, sev = schema.EventFleetDegraded, schema.SeverityError
			}
			b.engine().Record(schema.Event{Type: typ, Severity: sev, Reason: c.Reason,
				Details: &schema.FleetDetails{Sensor: b.f.Name()}})
		case <-t.C:
			b.feed()
		}
	}
}

// feed applies the fleet's records of endpoints held elsewhere.
func (b *Bridge) feed() {
	e := b.engine()
	if e == nil {
		return
	}
	now := b.f.now()
	degraded := b.f.isDegraded()
	recs := b.f.Endpoints()
	var hellos []schema.Hello
	var beats []schema.Heartbeat
	var gone []schema.Disconnect
	b.mu.Lock()
	for _, r := range recs {
		if r.Sensor == b.f.Name() {
			continue
		}
		if _, mine := b.local[r.ID]; mine {
			continue
		}
		prev, known := b.remote[r.ID]
		switch {
		case r.Connected && (!known || !prev.connected || !sameShape(prev.rec, r)):
			hellos = append(hellos, helloOf(r))
			b.remote[r.ID] = fed{rec: r, connected: true, fedAt: now}
		case r.Connected && r.revision != prev.rec.revision:
			beats = append(beats, schema.Heartbeat{EndpointID: r.ID, Health: r.Health, Reasons: r.Reasons})
			b.remote[r.ID] = fed{rec: r, connected: true, fedAt: now}
		case r.Connected && (degraded || !b.f.heard(r.Sensor, now)) && now.Sub(prev.fedAt) >= b.f.opts.Interval:
			// Cannot vouch either way while degraded, or while the holder
			// is cut off (its agents may still be connected to it): the
			// last shared state stands, so the correlator does not call it
			// missing. A holder that died loses its agents to other sensors
			// within 2 intervals, and their new records take over.
			beats = append(beats, schema.Heartbeat{EndpointID: r.ID, Health: prev.rec.Health, Reasons: prev.rec.Reasons})
			prev.fedAt = now
			b.remote[r.ID] = prev
		case !r.Connected && known && prev.connected:
			gone = append(gone, schema.Disconnect{EndpointID: r.ID, Cause: schema.DisconnectCause(r.Cause), Goodbye: r.Goodbye,
				Message: "released by sensor " + r.Sensor})
			b.remote[r.ID] = fed{rec: r, connected: false, fedAt: now}
		case !r.Connected && !known:
			b.remote[r.ID] = fed{rec: r, connected: false, fedAt: now}
		}
	}
	if !degraded {
		b.ready = true
	}
	b.mu.Unlock()
	for _, h := range hellos {
		if err := e.Hello(h); err != nil {
			b.f.log.Debug("fleet: feed hello", "endpoint", h.EndpointID, "err", err)
		}
	}
	for _, hb := range beats {
		_ = e.Heartbeat(hb)
	}
	for _, d := range gone {
		e.Disconnect(d)
	}
}

// FailoverAddresses returns this sensor's LAN-zone addresses followed by
// every other live sensor's, for the agents' config message.
func (b *Bridge) FailoverAddresses(own []string) []string { return b.f.LANAddresses(own) }

func sameShape(a, b EndpointRecord) bool {
	return a.Name == b.Name && a.Instance == b.Instance && slices.Equal(a.Users, b.Users) &&
		slices.EqualFunc(a.Interfaces, b.Interfaces, func(x, y schema.Interface) bool {
			return x.Name == y.Name && x.MAC == y.MAC && slices.Equal(x.IPs, y.IPs)
		})
}

func helloOf(r EndpointRecord) schema.Hello {
	return schema.Hello{EndpointID: r.ID, Name: r.Name, Org: r.Org, Health: r.Health, Reasons: r.Reasons,
		Interfaces: r.Interfaces, Users: r.Users, Instance: r.Instance}
}

func (f *Fleet) isDegraded() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.degraded
}

// heard reports whether sensor wrote its registry record within
// DegradeAfter (as received here).
func (f *Fleet) heard(sensor string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.peers[sensor]
	return ok && now.Sub(r.Received) <= f.opts.DegradeAfter
}
