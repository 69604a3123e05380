package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// registryEvery is how often a sensor rewrites its registry record.
const registryEvery = 2 * time.Second

// MaxClockSkew is how far a sensor's clock may be from the fleet's before
// it is flagged (fleet status, log, and the sensor's own health).
const MaxClockSkew = 30 * time.Second

// EndpointRecord is one endpoint's heartbeat state as the fleet shares it,
// written by the sensor that holds the endpoint's connection.
type EndpointRecord struct {
	ID            string             `json:"endpoint_id"`
	Name          string             `json:"name"`
	Org           string             `json:"org"`
	Sensor        string             `json:"sensor"` // holds the connection
	Connected     bool               `json:"connected"`
	Health        schema.Health      `json:"health"`
	Reasons       []string           `json:"reasons,omitempty"`
	Interfaces    []schema.Interface `json:"interfaces,omitempty"`
	Users         []string           `json:"users,omitempty"`
	LastHeartbeat time.Time          `json:"last_heartbeat"`
	Written       time.Time          `json:"written"`
	// Instance is the agent process's identity, from its hello.
	Instance string `json:"instance,omitempty"`
	// Cause and Goodbye say how the holder's connection ended, once
	// Connected is false (schema.DisconnectCause as a number).
	Cause   uint8                `json:"cause,omitempty"`
	Goodbye schema.GoodbyeReason `json:"goodbye,omitempty"`
	// Received is when this sensor last received the record (local clock;
	// not shared): freshness is judged on it, so a peer's skewed clock
	// cannot make a record look fresh or stale.
	Received time.Time `json:"-"`
	revision uint64
}

// same reports whether two records differ only in times.
func (r EndpointRecord) same(o EndpointRecord) bool {
	return r.ID == o.ID && r.Name == o.Name && r.Sensor == o.Sensor && r.Connected == o.Connected && r.Instance == o.Instance &&
		r.Health == o.Health && slices.Equal(r.Reasons, o.Reasons) && slices.Equal(r.Users, o.Users) &&
		slices.EqualFunc(r.Interfaces, o.Interfaces, func(a, b schema.Interface) bool {
			return a.Name == b.Name && a.MAC == b.MAC && slices.Equal(a.IPs, b.IPs)
		})
}

type writtenRecord struct {
	rec EndpointRecord
	at  time.Time
}

// SensorRecord is one sensor's entry in the fleet registry.
type SensorRecord struct {
	Name      string    `json:"name"`
	FleetAddr string    `json:"fleet_addr,omitempty"`
	LAN       []string  `json:"lan"` // LAN-zone host:port
	Started   time.Time `json:"started"`
	Written   time.Time `json:"written"` // the sensor's own clock
	// Skew is Written minus the time the fleet stored the record (not
	// shared: computed by the reader).
	Skew     time.Duration `json:"-"`
	Received time.Time     `json:"-"`
	// HeardSince is when this sensor's records started reaching here
	// without a gap longer than silentAfter (local clock; not shared).
	HeardSince time.Time `json:"-"`
}

// Refresh bounds how long an unchanged endpoint record goes unwritten: 20
// heartbeat intervals (5 min at 15 s), so the shared last heartbeat is
// never older than that. A change (connect, disconnect, health,
// interfaces, users) is written at once. Freshness does not rest on it:
// the holder's registry record, rewritten every 2 s, vouches for the
// connected records it holds (see heardLocked), and the holder mends its
// records against the bucket every reconcileEvery.
func (f *Fleet) Refresh() time.Duration { return 20 * f.opts.Interval }

// reconcileEvery is how often a sensor compares the records it holds
// with the bucket's.
const reconcileEvery = 2 * time.Second

// writeSettle is how long a held endpoint's record may disagree with what
// this sensor holds before reconcile writes it again: a write of its own
// may be on its way. A write the fleet refused or left unanswered for
// publishTimeout is written again at the endpoint's next heartbeat
// (asyncFailed).
const writeSettle = 5 * time.Second

// publishTimeout bounds the wait for an asynchronous write's answer.
const publishTimeout = 10 * time.Second

// rejoinAfter is how long a sensor heard again after a gap (a partition,
// a restart) must be heard before its records vouch for their endpoints:
// by then it has mended them against the bucket (released what it stopped
// holding while cut off, rewritten what was lost).
func (f *Fleet) rejoinAfter() time.Duration { return 3 * f.opts.Interval }

// reclaimAfter is how long a record the bucket says this sensor holds,
// with no connection here (left by a restart of this sensor), stays
// connected before this sensor releases it: long enough for its agent,
// retrying every 15 s at most, to come back to a sensor restarting under
// load. Released with CauseSensorShutdown, it is judged on the missing
// deadline, not as a dropped connection.
func (f *Fleet) reclaimAfter() time.Duration { return 8 * f.opts.Interval }

// PutEndpoint shares a locally held endpoint's state if it changed or its
// last write is older than Refresh. It never blocks on the fleet: the
// record is queued for writeLoop, which writes asynchronously.
func (f *Fleet) PutEndpoint(r EndpointRecord) {
	now := f.now()
	r.Sensor = f.Name()
	f.wmu.Lock()
	defer f.wmu.Unlock()
	w, ok := f.written[r.ID]
	// Nothing is written, nor counted as written, before the bucket exists.
	if f.writeTo == nil || ok && w.rec.same(r) && now.Sub(w.at) < f.Refresh() {
		return
	}
	f.written[r.ID] = writtenRecord{rec: r, at: now}
	r.Written = now
	f.pending[r.ID] = r
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes the queued endpoint records until ctx ends. A record
// queued again before it was sent is sent once, in its latest state.
func (f *Fleet) writeLoop(ctx context.Context) {
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			f.reconcile(ctx)
			continue
		case <-f.wake:
		}
		f.wmu.Lock()
		batch := f.pending
		if len(batch) > 0 {
			f.pending = make(map[string]EndpointRecord, len(batch))
		}
		f.wmu.Unlock()
		for id, r := range batch {
			f.wmu.Lock()
			w, ok := f.written[id]
			f.wmu.Unlock()
			if !ok || !w.at.Equal(r.Written) {
				continue // released or deleted since it was queued
			}
			b, err := json.Marshal(r)
			if err == nil {
				_, err = f.js.PublishAsync("$KV."+BucketEndpoints+"."+id, b)
			}
			if err != nil {
				f.log.Debug("fleet: endpoint write", "endpoint", id, "err", err)
				f.wmu.Lock()
				delete(f.written, id) // try again at the next heartbeat
				f.wmu.Unlock()
			}
		}
	}
}

// ReleaseEndpoint records that this sensor no longer holds the endpoint's
// connection, unless another sensor took it over meanwhile. A release the
// fleet did not store (no quorum) is tried again by reconcile.
func (f *Fleet) ReleaseEndpoint(ctx context.Context, d schema.Disconnect) error {
	id := d.EndpointID
	f.wmu.Lock()
	kv := f.writeTo
	_, ok := f.written[id]
	delete(f.written, id)
	delete(f.pending, id)
	f.wmu.Unlock()
	if kv == nil || !ok {
		return nil
	}
	err := f.release(ctx, kv, d)
	f.released(d, err)
	return err
}

// released records how a release ended: a failed one is left to
// reconcile, unless the endpoint came back here meanwhile.
func (f *Fleet) released(d schema.Disconnect, err error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if err == nil {
		delete(f.unreleased, d.EndpointID)
		delete(f.orphanSince, d.EndpointID)
	} else if _, back := f.written[d.EndpointID]; !back {
		f.unreleased[d.EndpointID] = d
	}
}

// release marks the bucket's record of d's endpoint disconnected, with
// d's cause, if it still says this sensor holds the connection (compare
// and set on the record's revision; a write landing in between is read
// again).
func (f *Fleet) release(ctx context.Context, kv jetstream.KeyValue, d schema.Disconnect) error {
	id := d.EndpointID
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for {
		e, err := kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil // deleted: revoked
		}
		if err != nil {
			return fmt.Errorf("fleet: release %s: %w", id, err)
		}
		var r EndpointRecord
		if err := json.Unmarshal(e.Value(), &r); err != nil || r.Sensor != f.Name() || !r.Connected {
			return nil // another sensor holds it now, or it is released already
		}
		r.Connected, r.Cause, r.Goodbye = false, uint8(d.Cause), d.Goodbye
		r.Written = f.now()
		b, _ := json.Marshal(r)
		_, err = kv.Update(ctx, id, b, e.Revision())
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("fleet: release %s: %w", id, err)
		}
	}
}

// reconcile mends the bucket's records against what this sensor holds,
// so the records it holds can be vouched for by its registry record
// alone. The watch notes what to look at (noteRecord): a held endpoint
// whose record came back disconnected or different (a release that raced
// a reconnection, a write overtaken by an older one) is written again if
// it still differs after writeSettle; a release that failed is tried
// again; a record that says this sensor holds an endpoint it does not
// (left by its restart) is released once reclaimAfter has passed. It
// does nothing while degraded or before the whole bucket is in.
func (f *Fleet) reconcile(ctx context.Context) {
	now := f.now()
	var rewrite int
	var releases []schema.Disconnect
	f.mu.Lock()
	if f.degraded || !f.synced {
		f.mu.Unlock()
		return
	}
	f.wmu.Lock()
	kv := f.writeTo
	for id := range f.suspect {
		w, held := f.written[id]
		m, ok := f.state[id]
		if !held || ok && m.Connected && (m.Sensor != f.Name() || m.same(w.rec)) {
			delete(f.suspect, id) // let go here, taken over elsewhere, or mended
			continue
		}
		if _, queued := f.pending[id]; queued || now.Sub(w.at) < writeSettle {
			continue // a write of its own may be on its way
		}
		delete(f.suspect, id)
		r := w.rec
		r.Written = now
		f.written[id] = writtenRecord{rec: r, at: now}
		f.pending[id] = r
		rewrite++
	}
	for id, since := range f.orphanSince {
		m, ok := f.state[id]
		if _, held := f.written[id]; held || !ok || !m.Connected || m.Sensor != f.Name() {
			delete(f.orphanSince, id)
			delete(f.unreleased, id)
			continue
		}
		if _, failed := f.unreleased[id]; !failed && now.Sub(since) >= f.reclaimAfter() {
			releases = append(releases, schema.Disconnect{EndpointID: id, Cause: schema.CauseSensorShutdown,
				Message: "not reconnected after a restart of sensor " + f.Name()})
		}
	}
	for id, d := range f.unreleased {
		if _, held := f.written[id]; held {
			delete(f.unreleased, id)
			continue
		}
		releases = append(releases, d)
	}
	f.wmu.Unlock()
	f.mu.Unlock()
	if rewrite > 0 {
		f.log.Info("fleet: endpoint records written again: the bucket differed from what this sensor holds", "records", rewrite)
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
	if len(releases) == 0 || kv == nil || !f.releasing.CompareAndSwap(false, true) {
		return
	}
	f.log.Info("fleet: releasing endpoints this sensor no longer holds", "records", len(releases))
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer f.releasing.Store(false)
		for _, d := range releases {
			f.released(d, f.release(ctx, kv, d))
			if ctx.Err() != nil {
				return
			}
		}
	}()
}

// noteRecord tells reconcile about a record the watch received (nil:
// deleted) that disagrees with what this sensor holds. f.mu is held.
func (f *Fleet) noteRecord(id string, r *EndpointRecord) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if r == nil {
		delete(f.suspect, id)
		delete(f.orphanSince, id)
		return
	}
	w, held := f.written[id]
	switch {
	case held && !(r.Connected && (r.Sensor != f.Name() || r.same(w.rec))):
		f.suspect[id] = struct{}{}
	case !held && r.Connected && r.Sensor == f.Name():
		if _, seen := f.orphanSince[id]; !seen {
			f.orphanSince[id] = r.Received
		}
	default:
		delete(f.orphanSince, id)
	}
}

// DeleteEndpoint deletes a revoked endpoint's shared record.
func (f *Fleet) DeleteEndpoint(ctx context.Context, id string) error {
	f.wmu.Lock()
	kv := f.writeTo
	delete(f.written, id)
	f.wmu.Unlock()
	if kv == nil {
		return errors.New("fleet: the endpoints bucket is not available")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := kv.Delete(ctx, id); err != nil {
		return fmt.Errorf("fleet: delete %s: %w", id, err)
	}
	return nil
}

// goneAfter is how long a registered sensor may stay silent before it no
// longer holds back no_heartbeat verdicts: by then its agents have failed
// over (2 intervals) and every endpoint that was connected to it has a
// record. Only an endpoint that first connects to a sensor partitioned
// from this one for longer could be judged without its record.
const goneAfter = 2 * time.Minute

// Vouchable reports whether this sensor has the fleet's whole heartbeat
// state: the fleet is healthy, the endpoint records are all in, and every
// registered sensor (other than one silent for goneAfter) has been heard
// long enough to have shared its endpoints, so a MAC no record declares
// is declared by no endpoint.
func (f *Fleet) Vouchable() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.degraded || !f.synced {
		return false
	}
	now := f.now()
	// Sensors not registered yet hold endpoints too: while the fleet forms,
	// wait for every sensor this one is configured with or routed to.
	if now.Sub(f.startedAt) < goneAfter {
		if len(f.peers) < len(f.opts.Config.Peers)+1 {
			return false
		}
		for _, name := range f.routed {
			if _, ok := f.peers[name]; !ok {
				return false
			}
		}
	}
	for _, r := range f.peers {
		if r.Name == f.Name() {
			continue
		}
		// A sensor heard only lately may not have rewritten the records of
		// the endpoints it holds yet.
		if now.Sub(r.Received) < goneAfter && !f.heardLocked(r, now) {
			return false
		}
	}
	return true
}

// declared reports whether any endpoint record of the fleet (connected or
// not, this sensor's included) declares m.
func (f *Fleet) declared(m schema.MAC) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.macs[m] > 0
}

// FlushWrites waits until the asynchronous writes are acknowledged.
func (f *Fleet) FlushWrites(ctx context.Context) error {
	select {
	case <-f.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watch follows both buckets into memory.
func (f *Fleet) watch(ctx context.Context) error {
	f.mu.Lock()
	ep, se := f.endpoints, f.sensors
	f.mu.Unlock()
	ew, err := ep.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", BucketEndpoints, err)
	}
	sw, err := se.WatchAll(ctx)
	if err != nil {
		ew.Stop()
		return fmt.Errorf("watch %s: %w", BucketSensors, err)
	}
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		for e := range ew.Updates() {
			if e == nil {
				// The bucket's current records are all in.
				f.mu.Lock()
				f.synced = true
				f.mu.Unlock()
				continue
			}
			f.applyEndpoint(e)
		}
	}()
	go func() {
		defer f.wg.Done()
		for e := range sw.Updates() {
			if e == nil {
				continue
			}
			f.applySensor(e)
		}
	}()
	go func() { <-ctx.Done(); ew.Stop(); sw.Stop() }()
	return nil
}

func (f *Fleet) applyEndpoint(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.index(f.state[e.Key()], -1)
		delete(f.state, e.Key())
		f.noteRecord(e.Key(), nil)
		f.changed[e.Key()] = nil
		return
	}
	// Decoded before taking the lock the heartbeat path's readers share.
	var r EndpointRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.ID != e.Key() {
		f.log.Warn("fleet: endpoint record refused", "key", e.Key(), "err", err)
		return
	}
	r.Received, r.revision = f.now(), e.Revision()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index(f.state[r.ID], -1)
	f.index(r, +1)
	f.state[r.ID] = r
	f.noteRecord(r.ID, &r)
	f.changed[r.ID] = &r
}

// index counts the MACs and addresses a record declares in, or out of,
// the declared indexes. f.mu is held.
func (f *Fleet) index(r EndpointRecord, by int) {
	for _, itf := range r.Interfaces {
		if n := f.macs[itf.MAC] + by; n > 0 {
			f.macs[itf.MAC] = n
		} else {
			delete(f.macs, itf.MAC)
		}
		for _, ip := range itf.IPs {
			if n := f.ips[ip] + by; n > 0 {
				f.ips[ip] = n
			} else {
				delete(f.ips, ip)
			}
		}
	}
}

// DeclaresIP reports whether an endpoint record of the fleet declares ip
// on one of its interfaces.
func (f *Fleet) DeclaresIP(ip netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ips[ip.Unmap()] > 0
}

// takeChanged returns the endpoint records received since the last call,
// by id (nil: deleted).
func (f *Fleet) takeChanged() map[string]*EndpointRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.changed) == 0 {
		return nil
	}
	c := f.changed
	f.changed = map[string]*EndpointRecord{}
	return c
}

func (f *Fleet) applySensor(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		f.mu.Lock()
		delete(f.peers, e.Key())
		f.mu.Unlock()
		return
	}
	var r SensorRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil || r.Name != e.Key() {
		f.log.Warn("fleet: sensor record refused", "key", e.Key(), "err", err)
		return
	}
	r.Skew = r.Written.Sub(e.Created())
	r.Received = f.now()
	if r.Skew > MaxClockSkew || r.Skew < -MaxClockSkew {
		f.log.Warn("fleet: a sensor's clock is off", "sensor", r.Name, "skew", r.Skew.Round(time.Second),
			"fix", "synchronise every sensor's clock with NTP; shared times from it are not trusted")
	}
	f.mu.Lock()
	r.HeardSince = r.Received
	if prev, ok := f.peers[r.Name]; ok && r.Received.Sub(prev.Received) <= f.silentAfter() {
		r.HeardSince = prev.HeardSince
	}
	f.peers[r.Name] = r
	f.mu.Unlock()
}

// register writes this sensor's registry record.
func (f *Fleet) register(ctx context.Context) error {
	f.mu.Lock()
	kv := f.sensors
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	r := SensorRecord{Name: f.Name(), FleetAddr: f.opts.Config.Addr, LAN: f.opts.LAN, Started: f.started(), Written: f.now()}
	b, _ := json.Marshal(r)
	_, err := kv.Put(ctx, r.Name, b)
	return err
}

func (f *Fleet) started() time.Time { return f.startedAt }

// Sensors returns the fleet registry as this sensor last saw it.
func (f *Fleet) Sensors() []SensorRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]SensorRecord, 0, len(f.peers))
	for _, r := range f.peers {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b SensorRecord) int { return cmpString(a.Name, b.Name) })
	return out
}

// ClockSkew returns this sensor's clock offset against the fleet as last
// measured, and whether it is within MaxClockSkew.
func (f *Fleet) ClockSkew() (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.peers[f.Name()]
	if !ok {
		return 0, true
	}
	return r.Skew, r.Skew <= MaxClockSkew && r.Skew >= -MaxClockSkew
}

// LANAddresses returns every live sensor's LAN-zone addresses, this
// sensor's first, for the agents' failover list.
func (f *Fleet) LANAddresses(own []string) []string {
	out := slices.Clone(own)
	for _, r := range f.Sensors() {
		if r.Name == f.Name() || f.now().Sub(r.Received) > 6*registryEvery {
			continue
		}
		for _, a := range r.LAN {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// Endpoints returns the fleet's heartbeat state.
func (f *Fleet) Endpoints() []EndpointRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]EndpointRecord, 0, len(f.state))
	for _, r := range f.state {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b EndpointRecord) int { return cmpString(a.Name, b.Name) })
	return out
}

// Verdict is what the fleet can say about a MAC a sensor sees sending.
type Verdict uint8

const (
	// Unvouched: the fleet is degraded, or the record's holder is not heard
	// now: judge the MAC as unknown, raise no no_heartbeat or missing for it.
	Unvouched Verdict = iota
	// HeldElsewhere: another sensor, heard now, holds the connection of an
	// endpoint with this MAC: it is heartbeating.
	HeldElsewhere
	// NotHeld: the fleet is current and no sensor holds a connected endpoint
	// with this MAC: this sensor's own judgement stands.
	NotHeld
)

// Vouch says whether the fleet vouches for a MAC's heartbeat.
func (f *Fleet) Vouch(m schema.MAC) (Verdict, EndpointRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.degraded {
		return Unvouched, EndpointRecord{}
	}
	now := f.now()
	for _, r := range f.state {
		if r.Sensor == f.opts.Config.Name {
			continue
		}
		for _, itf := range r.Interfaces {
			if itf.MAC != m {
				continue
			}
			if r.Connected && f.heardLocked(f.peers[r.Sensor], now) {
				return HeldElsewhere, r
			}
			if r.Connected {
				return Unvouched, r // held by a sensor not heard now: cannot vouch either way
			}
		}
	}
	return NotHeld, EndpointRecord{}
}

// PublishEvent appends an event to the fleet's event stream with Msg-Id
// sensor/seq, so a resend is stored once.
func (f *Fleet) PublishEvent(ev schema.Event) error {
	b, err := json.Marshal(struct {
		Sensor string `json:"sensor"`
		schema.Event
	}{f.Name(), ev})
	if err != nil {
		return fmt.Errorf("fleet: encode event %d: %w", ev.Seq, err)
	}
	_, err = f.js.PublishAsync(subjEvents+f.Name(), b, jetstream.WithMsgID(fmt.Sprintf("%s/%d", f.Name(), ev.Seq)))
	if err != nil {
		return fmt.Errorf("fleet: publish event %d: %w", ev.Seq, err)
	}
	return nil
}

// FleetEvent is an event with the name of the sensor that raised it.
type FleetEvent struct {
	Sensor string `json:"sensor"`
	schema.Event
}

// LANAddrPorts parses host:port strings, skipping malformed ones.
func LANAddrPorts(in []string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range in {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
