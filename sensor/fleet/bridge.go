package fleet

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Engine is what the bridge feeds: the sensor's engine (the LAN zone's
// correlator interface).
type Engine interface {
	Hello(schema.Hello) error
	Heartbeat(schema.Heartbeat) error
	// Heartbeats passes a batch at once, skipping unknown endpoints.
	Heartbeats([]schema.Heartbeat)
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
//     status and disconnect events (schema.OwnedByHolder);
//   - a sensor seeing a MAC's traffic owns no_heartbeat, heartbeat_missing
//     and heartbeat_restored for it, and the flow alerts
//     (schema.OwnedByObserver); when several sensors see the same traffic,
//     the first to claim the fact in the fleet raises it (see claimOf);
//   - while the fleet is degraded, an endpoint held elsewhere keeps its last
//     shared state (unknown to the fleet, never missing), and no_heartbeat
//     is withheld: the sensor cannot vouch for MACs another sensor may hold.
type Bridge struct {
	f atomic.Pointer[Fleet] // the current membership (Restart replaces it)
	e Engine                // set once, before use
	// lmu guards local, which every heartbeat reads: apart from mu, which
	// the feed holds while it walks the records of the whole fleet.
	lmu   sync.RWMutex
	local map[string]held // endpoints whose connection this sensor holds

	mu     sync.Mutex
	remote map[string]fed  // endpoints held elsewhere, as fed to the engine
	ready  bool            // the fleet's whole heartbeat state is here (Fleet.Vouchable)
	lost   map[string]bool // endpoints whose heartbeat_missing another sensor claimed
	keptAt time.Time       // the last keep-alive pass
	// removed are revoked endpoints: their shared records are never fed
	// again, even while a record's deletion is on its way. The value says
	// the endpoint was held elsewhere: its holder reports the removal.
	removed map[string]bool
	// withheld are no_heartbeat events raised before the fleet's state
	// could be vouched for; they are judged again once it can, and go to
	// publish if they stand.
	withheld []schema.Event
	publish  func([]schema.Event)
}

// held is a locally held endpoint: its hello and its latest health.
type held struct {
	hello   schema.Hello
	health  schema.Health
	reasons []string
}

type fed struct {
	rec   EndpointRecord // the latest record received
	fedAt time.Time      // when the engine was last fed for it
}

// NewBridge returns a bridge for f; SetEngine completes it.
func NewBridge(f *Fleet) *Bridge {
	b := &Bridge{local: map[string]held{}, remote: map[string]fed{}, lost: map[string]bool{}, removed: map[string]bool{}}
	b.f.Store(f)
	return b
}

// SetEngine sets the engine the bridge feeds and publish, where events
// the bridge held back and raises later go (the engine's publisher). Call
// it before the bridge is used.
func (b *Bridge) SetEngine(e Engine, publish func([]schema.Event)) {
	b.e, b.publish = e, publish
}

// engine returns the engine: set once before use, read without a lock on
// every input.
func (b *Bridge) engine() Engine { return b.e }

// fleet returns the current membership (Restart replaces it).
func (b *Bridge) fleet() *Fleet { return b.f.Load() }

// Restart leaves the fleet and joins it again with cfg, keeping the
// engine's state: a changed [fleet] table (the first peer added by
// `tapbeat fleet add`, a new address) takes effect without restarting the
// sensor. Until the new membership has the shared state, endpoints held
// elsewhere keep their last state, as while degraded. ctx bounds the new
// membership.
func (b *Bridge) Restart(ctx context.Context, cfg Config) error {
	old := b.fleet()
	opts := old.opts
	opts.Config = cfg
	old.Close()
	nf, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.f.Store(nf)
	b.ready = false
	b.mu.Unlock()
	b.lmu.RLock()
	local := make([]held, 0, len(b.local))
	for _, h := range b.local {
		local = append(local, h)
	}
	b.lmu.RUnlock()
	for _, h := range local {
		b.put(h)
	}
	return nil
}

// Close leaves the fleet.
func (b *Bridge) Close() { b.fleet().Close() }

// Traffic returns the current membership's node counters (see
// Fleet.Traffic).
func (b *Bridge) Traffic() (NodeTraffic, bool) { return b.fleet().Traffic() }

// Hello passes a local endpoint's hello on and shares it.
func (b *Bridge) Hello(h schema.Hello) error {
	// Held here from now on: its events are this sensor's (an endpoint
	// failing over from another sensor included).
	b.lmu.Lock()
	b.local[h.EndpointID] = held{hello: h, health: h.Health, reasons: h.Reasons}
	b.lmu.Unlock()
	b.mu.Lock()
	delete(b.remote, h.EndpointID)
	b.mu.Unlock()
	if err := b.engine().Hello(h); err != nil {
		b.lmu.Lock()
		delete(b.local, h.EndpointID)
		b.lmu.Unlock()
		return err
	}
	b.put(held{hello: h, health: h.Health, reasons: h.Reasons})
	return nil
}

// Heartbeat passes a heartbeat on and shares it (on change or refresh).
func (b *Bridge) Heartbeat(hb schema.Heartbeat) error {
	if err := b.engine().Heartbeat(hb); err != nil {
		return err
	}
	b.lmu.RLock()
	h, ok := b.local[hb.EndpointID]
	b.lmu.RUnlock()
	if ok && (h.health != hb.Health || !slices.Equal(h.reasons, hb.Reasons)) {
		h.health, h.reasons = hb.Health, hb.Reasons
		b.lmu.Lock()
		if _, still := b.local[hb.EndpointID]; still {
			b.local[hb.EndpointID] = h
		}
		b.lmu.Unlock()
	}
	if ok {
		b.put(h)
	}
	return nil
}

func (b *Bridge) put(h held) {
	f := b.fleet()
	f.PutEndpoint(EndpointRecord{ID: h.hello.EndpointID, Name: h.hello.Name, Org: h.hello.Org, Connected: true,
		Health: h.health, Reasons: h.reasons, Interfaces: h.hello.Interfaces, Users: h.hello.Users,
		LastHeartbeat: f.now(), Instance: h.hello.Instance})
}

// Disconnect passes a local disconnect on and releases the endpoint in the
// fleet unless another sensor took it over. A connection this sensor
// closes because it is stopping is not released: its record stays with a
// holder that is about to go silent, which other sensors judge as unknown
// (never missing) until the agent is back, here or elsewhere, as after a
// crash. Released, its endpoint would be judged on the missing deadline
// while its agent waits for a seat.
func (b *Bridge) Disconnect(d schema.Disconnect) {
	id := d.EndpointID
	b.engine().Disconnect(d)
	b.lmu.Lock()
	_, ok := b.local[id]
	delete(b.local, id)
	b.lmu.Unlock()
	f := b.fleet()
	if ok && d.Cause != schema.CauseSensorShutdown {
		go func() {
			if err := f.ReleaseEndpoint(context.Background(), d); err != nil {
				f.log.Debug("fleet: release", "endpoint", id, "err", err)
			}
		}()
	}
}

// Remove passes a revocation on and deletes the endpoint's shared record
// (every sensor applies the revocation; the first deletion wins).
func (b *Bridge) Remove(id string) {
	b.lmu.Lock()
	_, held := b.local[id]
	delete(b.local, id)
	b.lmu.Unlock()
	b.mu.Lock()
	b.removed[id] = !held
	b.mu.Unlock()
	b.engine().Remove(id)
	b.mu.Lock()
	delete(b.remote, id)
	b.mu.Unlock()
	f := b.fleet()
	go func() {
		if err := f.DeleteEndpoint(context.Background(), id); err != nil {
			f.log.Debug("fleet: delete a revoked endpoint's record", "endpoint", id, "err", err)
		}
	}()
}

// Record passes an event on.
func (b *Bridge) Record(ev schema.Event) { b.engine().Record(ev) }

// AtRisk is the engine's list: it holds the endpoints of the whole fleet,
// so every sensor pushes the same list.
func (b *Bridge) AtRisk() schema.AtRiskList { return b.engine().AtRisk() }

// owns decides, from what the bridge knows, whether this sensor may raise
// ev.
func (b *Bridge) owns(f *Fleet, ev schema.Event, degraded bool) bool {
	info, _ := ev.Type.Info()
	observer := info.Owner == schema.OwnedByObserver
	b.mu.Lock()
	defer b.mu.Unlock()
	_, remote := b.remote[ev.EndpointID]
	remote = remote || b.removed[ev.EndpointID]
	if ev.EndpointID != "" && remote && !observer {
		return false
	}
	if ev.Type == schema.EventNoHeartbeat && (degraded || !b.ready) {
		f.log.Info("fleet: no_heartbeat withheld until the fleet's heartbeat state is available", "macs", ev.MACs)
		b.withheld = append(b.withheld, ev)
		return false
	}
	return true
}

// Own runs in the daemon's pipeline, in sequence order, before events are
// stored, never under the engine's lock: it keeps the events this sensor
// owns (see Bridge), holds back no_heartbeat while the fleet's state is
// incomplete, keeps the observer-owned events this sensor is the first in
// the fleet to claim (and the end of a heartbeat_missing it raised), and
// appends what it keeps to the fleet's event stream. While the fleet is
// degraded, events are kept unclaimed: a duplicate alert is better than a
// lost one.
func (b *Bridge) Own(evs []schema.Event) []schema.Event {
	f := b.fleet()
	degraded := f.isDegraded()
	out := evs[:0]
	for _, ev := range evs {
		if b.owns(f, ev, degraded) && b.claim(f, ev, degraded) {
			out = append(out, ev)
		}
	}
	if !degraded {
		for _, ev := range out {
			if err := f.PublishEvent(ev); err != nil {
				f.log.Debug("fleet: event stream", "err", err)
			}
		}
	}
	return out
}

func (b *Bridge) claim(f *Fleet, ev schema.Event, degraded bool) bool {
	if followsMissing(ev) {
		// The end of a heartbeat_missing, and its escalations, are the
		// report of the sensor that raised it.
		b.mu.Lock()
		defer b.mu.Unlock()
		lost := b.lost[ev.EndpointID]
		if ev.Type == schema.EventHeartbeatRestored {
			delete(b.lost, ev.EndpointID)
		}
		return !lost
	}
	if degraded {
		return true
	}
	c, ok := f.claimOf(ev)
	if !ok {
		return true
	}
	won, err := f.Claim(context.Background(), c)
	if err != nil {
		f.log.Warn("fleet: verdict raised unclaimed; another sensor may raise it too", "type", ev.Type, "err", err)
		return true
	}
	if ev.Type == schema.EventHeartbeatMissing {
		b.mu.Lock()
		if won {
			delete(b.lost, ev.EndpointID)
		} else {
			b.lost[ev.EndpointID] = true
		}
		b.mu.Unlock()
	}
	if !won {
		f.log.Info("fleet: verdict raised by another sensor", "type", ev.Type, "endpoint", ev.EndpointID, "macs", ev.MACs)
	}
	return won
}

// Run feeds the engine the endpoints other sensors hold and turns the
// fleet's health changes into fleet_degraded / fleet_restored events,
// until ctx ends.
func (b *Bridge) Run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		f := b.fleet()
		select {
		case <-ctx.Done():
			return
		case c := <-f.Changes():
			typ, sev := schema.EventFleetRestored, schema.SeverityNotice
			if c.Degraded {
				typ, sev = schema.EventFleetDegraded, schema.SeverityError
			}
			b.engine().Record(schema.Event{Type: typ, Severity: sev, Reason: c.Reason,
				Details: &schema.FleetDetails{Sensor: f.Name()}})
		case <-t.C:
			b.feed()
		}
	}
}

// feedChunk is how many heartbeats of endpoints held elsewhere the feed
// passes to the engine at once.
const feedChunk = 256

// feed applies the fleet's records of endpoints held elsewhere that
// changed since the last call, and keeps alive the endpoints this sensor
// cannot judge now. Its cost follows the changes, not the fleet's size;
// the keep-alive pass runs once a second.
func (b *Bridge) feed() {
	e := b.engine()
	if e == nil {
		return
	}
	f := b.fleet()
	now := f.now()
	changed := f.takeChanged()
	var hellos []schema.Hello
	var beats []schema.Heartbeat
	var gone []schema.Disconnect
	b.mu.Lock()
	b.lmu.RLock()
	for id, r := range changed {
		if r == nil {
			// Deleted: revoked; the revocation itself removes it from the
			// engine.
			delete(b.remote, id)
			continue
		}
		if _, removed := b.removed[id]; removed || r.Sensor == f.Name() {
			continue
		}
		if _, mine := b.local[id]; mine {
			continue
		}
		prev, known := b.remote[id]
		switch {
		case r.Connected && (!known || !prev.rec.Connected || !sameShape(prev.rec, *r)):
			hellos = append(hellos, helloOf(*r))
			b.remote[id] = fed{rec: *r, fedAt: now}
		case r.Connected:
			beats = append(beats, schema.Heartbeat{EndpointID: id, Health: r.Health, Reasons: r.Reasons})
			b.remote[id] = fed{rec: *r, fedAt: now}
		case known && prev.rec.Connected:
			gone = append(gone, schema.Disconnect{EndpointID: id, Cause: schema.DisconnectCause(r.Cause), Goodbye: r.Goodbye,
				Message: "released by sensor " + r.Sensor})
			b.remote[id] = fed{rec: *r, fedAt: now}
		default:
			b.remote[id] = fed{rec: *r, fedAt: now}
		}
	}
	b.lmu.RUnlock()
	// A connected record held elsewhere keeps its endpoint alive. While
	// its holder is heard, the holder vouches for it: the holder releases
	// an endpoint whose connection dropped or went idle (that disconnect
	// is what the correlator judges) and mends its records against the
	// bucket (Fleet.reconcile). While the holder is not heard, this
	// sensor cannot vouch either way (its agents may still be connected
	// to it), nor while degraded or lacking the whole fleet's state: the
	// last shared state stands, so the correlator does not call the
	// endpoint missing. A holder that died loses its agents to other
	// sensors within 2 intervals, and their new records take over.
	if now.Sub(b.keptAt) >= time.Second {
		b.keptAt = now
		stale := f.opts.Interval + f.opts.Interval/2
		for id, prev := range b.remote {
			if !prev.rec.Connected || now.Sub(prev.fedAt) < stale {
				continue
			}
			r := prev.rec
			beats = append(beats, schema.Heartbeat{EndpointID: id, Health: r.Health, Reasons: r.Reasons})
			prev.fedAt = now
			b.remote[id] = prev
		}
	}
	var rejudge []schema.Event
	var reput []held
	if vouchable := f.Vouchable(); vouchable != b.ready {
		b.ready = vouchable
		f.log.Info("fleet: the whole fleet's heartbeat state is here", "vouchable", vouchable, "withheld", len(b.withheld))
		if vouchable {
			// Shared at once, not at their next heartbeats: other sensors
			// judge the MACs they see against these records.
			b.lmu.RLock()
			for _, h := range b.local {
				reput = append(reput, h)
			}
			b.lmu.RUnlock()
		}
	}
	if b.ready {
		rejudge, b.withheld = b.withheld, nil
	}
	publish := b.publish
	b.mu.Unlock()
	for _, h := range reput {
		b.put(h)
	}
	for _, h := range hellos {
		if err := e.Hello(h); err != nil {
			f.log.Debug("fleet: feed hello", "endpoint", h.EndpointID, "err", err)
		}
	}
	// In chunks: one hold of the engine's lock per chunk, short enough
	// for the heartbeats of local agents waiting behind it.
	for chunk := range slices.Chunk(beats, feedChunk) {
		e.Heartbeats(chunk)
	}
	for _, d := range gone {
		e.Disconnect(d)
	}
	// A withheld no_heartbeat stands only for MACs no endpoint of the
	// fleet declares; the correlator judges the others as endpoints now.
	var stands []schema.Event
	for _, ev := range rejudge {
		if !slices.ContainsFunc(ev.MACs, f.declared) {
			stands = append(stands, ev)
		} else {
			// The correlator judges the MAC again if the endpoint ever lets
			// it go (revoked): binding it ended the report.
			f.log.Info("fleet: withheld no_heartbeat dropped: an endpoint of the fleet declares the MAC", "macs", ev.MACs)
		}
	}
	if len(stands) > 0 && publish != nil {
		publish(stands)
	}
}

// KnownSource reports whether an endpoint of the fleet declares ip: the
// LAN zone admits such a source as known (lanzone.Options.KnownSource).
func (b *Bridge) KnownSource(ip netip.Addr) bool { return b.fleet().DeclaresIP(ip) }

// FailoverAddresses returns this sensor's LAN-zone addresses followed by
// every other live sensor's, for the agents' config message.
func (b *Bridge) FailoverAddresses(own []string) []string { return b.fleet().LANAddresses(own) }

// followsMissing reports whether ev continues a heartbeat_missing episode
// (its escalation or its end) rather than starting one.
func followsMissing(ev schema.Event) bool {
	return ev.Type == schema.EventHeartbeatRestored || ev.Type == schema.EventHeartbeatMissing && !ev.Transition
}

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

// heardLocked reports whether a sensor's registry records reach this sensor
// (the last within silentAfter), and have for rejoinAfter: until then a
// sensor back from a partition or a restart may not have mended its
// endpoint records yet. A heard sensor vouches for the connected records
// it holds. f.mu is held.
func (f *Fleet) heardLocked(r SensorRecord, now time.Time) bool {
	return !r.Received.IsZero() && now.Sub(r.Received) <= f.silentAfter() && now.Sub(r.HeardSince) >= f.rejoinAfter()
}

// silentAfter is how long a sensor's registry record may go unreceived
// before it no longer vouches for its endpoints' records: two intervals
// (the agents' failover bound), at most DegradeAfter, and at least three
// registry writes.
func (f *Fleet) silentAfter() time.Duration {
	return max(3*registryEvery, min(f.opts.DegradeAfter, 2*f.opts.Interval))
}
