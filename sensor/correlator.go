package sensor

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// ErrUnknownEndpoint is returned for a heartbeat from an endpoint that has not
// sent a hello.
var ErrUnknownEndpoint = errors.New("unknown endpoint: a hello must come first")

// Correlator applies tapbeat's rules. Inputs go in through its methods; each
// returns the events it caused, numbered in order. See the package comment.
type Correlator struct {
	cfg   *compiled
	clock Clock

	startedAt int64 // unix nanoseconds, as every time kept here (ClockStepped moves them all)
	nextSeq   uint64

	endpoints []*endpoint      // by index; nil where removed
	freeSlots []int32          // removed indices for reuse
	byID      map[string]int32 // endpoint id -> index
	byIP      map[netip.Addr]int32
	macIndex  map[schema.MAC]int32 // MAC -> index into macs
	macs      []macState

	pending    []schema.MAC                   // unclaimed senders waiting for the no-heartbeat verdict
	unmanaged  map[schema.MAC]*schema.Station // the unmanaged inventory
	alerted    map[schema.MAC]struct{}        // MACs reported as no_heartbeat since no endpoint declared them
	hbChannel  map[schema.MAC]int64           // MAC -> last time it carried a heartbeat connection
	hbSource   map[netip.Addr]schema.MAC      // source address -> the MAC its newest heartbeat connection came from
	byRemote   map[netip.Addr]int32
	ipSeen     map[netip.Addr]int32 // IP -> the endpoint whose MAC the wire showed sending from it
	policySeen map[policyKey]int64  // de-duplication: last alert time
	pairSeen   map[pairKey]int64
	lastPrune  int64

	capture     map[string]*captureIface
	captureSeen bool  // a capture interface has reported at all
	lastFrameAt int64 // newest frame any capture reported
	lastHBAt    int64 // newest heartbeat from any endpoint
	degraded    bool
	degradedWhy string
	clearFrom   int64 // when the capture last became healthy
}

type endpoint struct {
	idx         int32
	id, name    string
	org         string
	health      schema.Health
	reasons     []string
	status      schema.Status
	statusSince int64
	lastHB      int64
	connected   bool
	realert     int // ladder steps already alerted while missing
	// slowInterval, when set, is a longer heartbeat interval the endpoint
	// is judged by until it heartbeats at the shorter one now in force.
	slowInterval int64
	interfaces   []schema.Interface
	users        []string
	owned        []int32 // indices into macs of the MACs this endpoint owns
	ips          []netip.Addr
	instance     string // the agent process's instance, from its hello

	// How the agent left, until it says hello again.
	dropAt     int64 // its connection dropped without goodbye; the reconnect grace counts from here
	dropCause  schema.DisconnectCause
	dropJudged bool                 // the dropped-connection rule has judged this drop
	goodbye    schema.GoodbyeReason // the agent said goodbye with this reason
	goodbyeAt  int64
	wokeAt     int64 // an offline endpoint started sending again (wake-up grace)

	// remote is the source address of its LAN-zone connection; wireMAC the
	// MAC the mirror port showed carrying that connection. Both are what
	// the wire says, against which the hello's claims are weighed.
	remote  netip.Addr
	wireMAC schema.MAC
	// contested holds the MACs and IPs it declares that another endpoint
	// holds, already reported as a conflict.
	contested []string
}

type macState struct {
	firstSeen int64
	lastSeen  int64
	packets   uint64
	bytes     uint64
	owner     int32 // endpoint index, -1 when unclaimed
	flags     uint8
}

const (
	macInfra   uint8 = 1 << iota // listed as infrastructure
	macPending                   // queued for the no-heartbeat verdict
)

type policyKey struct {
	rule           int
	srcMAC, dstMAC schema.MAC
	srcIP, dstIP   netip.Addr
	port           uint16
}

type pairKey struct {
	endpoint int32 // the red or missing endpoint
	peerMAC  schema.MAC
	peerIP   netip.Addr
}

type captureIface struct {
	up         bool
	reason     string
	lossyUntil int64
	lossyWhy   string
}

// NewCorrelator returns a correlator with the given rules. The clock's
// current time is the sensor's start, from which the startup grace counts.
func NewCorrelator(cfg Config, clock Clock) (*Correlator, error) {
	cc, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	now := clock.Now().UnixNano()
	return &Correlator{
		cfg:        cc,
		clock:      clock,
		startedAt:  now,
		nextSeq:    1,
		byID:       map[string]int32{},
		byIP:       map[netip.Addr]int32{},
		macIndex:   map[schema.MAC]int32{},
		unmanaged:  map[schema.MAC]*schema.Station{},
		alerted:    map[schema.MAC]struct{}{},
		hbChannel:  map[schema.MAC]int64{},
		hbSource:   map[netip.Addr]schema.MAC{},
		byRemote:   map[netip.Addr]int32{},
		ipSeen:     map[netip.Addr]int32{},
		policySeen: map[policyKey]int64{},
		pairSeen:   map[pairKey]int64{},
		capture:    map[string]*captureIface{},
		lastPrune:  now,
		clearFrom:  now,
	}, nil
}

// Reconfigure replaces the rules (policies, infrastructure, timings) without
// losing state.
func (c *Correlator) Reconfigure(cfg Config) error {
	cc, err := compile(cfg)
	if err != nil {
		return err
	}
	c.retime(c.cfg.HeartbeatInterval, cc.HeartbeatInterval)
	c.cfg = cc
	for m, i := range c.macIndex {
		if cc.isInfrastructure(m) {
			c.macs[i].flags |= macInfra
		} else {
			c.macs[i].flags &^= macInfra
		}
	}
	return nil
}

// Config returns the rules in force, defaults filled in.
func (c *Correlator) Config() Config { return c.cfg.Config }

func (c *Correlator) now() int64 { return c.clock.Now().UnixNano() }

func (c *Correlator) emit(out []schema.Event, ev schema.Event) []schema.Event {
	ev.Seq = c.nextSeq
	c.nextSeq++
	if ev.Time.IsZero() {
		ev.Time = c.clock.Now()
	}
	return append(out, ev)
}

// Record numbers an event raised outside the correlator (auth_failed from the
// LAN zone, alerts_lost from a sink) so that every event shares one sequence.
func (c *Correlator) Record(ev schema.Event) []schema.Event {
	return c.emit(nil, ev)
}

// NextSeq is the sequence number the next event will get.
func (c *Correlator) NextSeq() uint64 { return c.nextSeq }

func (c *Correlator) endpointEvent(e *endpoint, typ schema.EventType, sev schema.Severity) schema.Event {
	ev := schema.Event{
		Type:         typ,
		Severity:     sev,
		EndpointID:   e.id,
		EndpointName: e.name,
		Org:          e.org,
		Status:       e.status,
	}
	for _, i := range e.interfaces {
		if c.owns(e, i.MAC) {
			ev.MACs = append(ev.MACs, i.MAC)
		}
	}
	ev.IPs = slices.Clone(e.ips)
	return ev
}

// owns reports whether m is one of e's MACs (declared and not held by
// another endpoint).
func (c *Correlator) owns(e *endpoint, m schema.MAC) bool {
	mi, ok := c.macIndex[m]
	return ok && c.macs[mi].owner == e.idx
}

// Hello registers or updates an endpoint. A hello counts as a heartbeat.
func (c *Correlator) Hello(h schema.Hello) ([]schema.Event, error) {
	if h.EndpointID == "" {
		return nil, fmt.Errorf("hello: empty endpoint id")
	}
	if !h.Health.Valid() {
		return nil, fmt.Errorf("hello from %s: invalid health %d", h.EndpointID, h.Health)
	}
	now := c.now()
	var out []schema.Event
	idx, ok := c.byID[h.EndpointID]
	var e *endpoint
	if ok {
		e = c.endpoints[idx]
	} else {
		e = &endpoint{id: h.EndpointID}
		if n := len(c.freeSlots); n > 0 {
			idx = c.freeSlots[n-1]
			c.freeSlots = c.freeSlots[:n-1]
			c.endpoints[idx] = e
		} else {
			idx = int32(len(c.endpoints))
			c.endpoints = append(c.endpoints, e)
		}
		e.idx = idx
		c.byID[e.id] = idx
	}
	e.name, e.org = h.Name, h.Org
	e.users = slices.Clone(h.Users)
	e.interfaces = cloneInterfaces(h.Interfaces)
	if r := h.Remote.Addr().Unmap(); r.IsValid() && r != e.remote {
		if c.byRemote[e.remote] == e.idx {
			delete(c.byRemote, e.remote)
		}
		e.remote, e.wireMAC = r, schema.MAC{}
	}
	if e.remote.IsValid() {
		if len(c.byRemote) < c.cfg.MaxTracked {
			c.byRemote[e.remote] = e.idx
		}
		if m, ok := c.hbSource[e.remote]; ok {
			e.wireMAC = m
		}
	}
	out = c.claim(out, e, now)
	out = c.agentBack(out, e, h.Instance, now)

	hello := c.endpointEvent(e, schema.EventEndpointHello, schema.SeverityInfo)
	hello.Reason = "endpoint declared its interfaces and users"
	// History records ownership and address bindings from these details:
	// only what the endpoint won goes there; contested claims are listed
	// apart and bind nothing.
	hello.Details = &schema.HelloDetails{Interfaces: c.acceptedInterfaces(e), Contested: slices.Clone(e.contested),
		Users: e.users, Remote: h.Remote}
	out = c.emit(out, hello)
	return c.heartbeat(out, e, h.Health, h.Reasons, now), nil
}

func cloneInterfaces(in []schema.Interface) []schema.Interface {
	out := make([]schema.Interface, len(in))
	for i, itf := range in {
		out[i] = schema.Interface{Name: itf.Name, MAC: itf.MAC, IPs: slices.Clone(itf.IPs)}
	}
	return out
}

// claim gives e the MACs and IPs it now declares and releases the ones it no
// longer does. A hello is a claim, not proof: a MAC or IP another endpoint
// holds stays with it, and the claim is a mac_conflict (reported once per
// contested set), unless the wire shows e's own heartbeat connection coming
// from that MAC and not the holder's. What stays contested is neither
// judged, listed at risk nor written to history as e's.
func (c *Correlator) claim(out []schema.Event, e *endpoint, now int64) []schema.Event {
	for _, mi := range e.owned {
		if c.macs[mi].owner == e.idx {
			c.macs[mi].owner = -1
		}
	}
	e.owned = e.owned[:0]
	for _, ip := range e.ips {
		if c.byIP[ip] == e.idx {
			delete(c.byIP, ip)
		}
		if o, ok := c.ipSeen[ip]; ok && o == e.idx {
			delete(c.ipSeen, ip)
		}
	}
	e.ips = e.ips[:0]
	var contested []string
	var others []string
	var moved []string
	var first *endpoint // the first holder a claim was contested against
	var firstMAC schema.MAC
	for _, itf := range e.interfaces {
		if itf.MAC.IsZero() || itf.MAC.IsGroup() {
			continue
		}
		mi := c.macSlot(itf.MAC)
		ms := &c.macs[mi]
		if ms.owner >= 0 && ms.owner != e.idx {
			other := c.endpoints[ms.owner]
			if first == nil {
				first, firstMAC = other, itf.MAC
			}
			if e.wireMAC != itf.MAC || other.wireMAC == itf.MAC {
				contested = append(contested, itf.MAC.String())
				if !slices.Contains(others, other.name) {
					others = append(others, other.name)
				}
				continue
			}
			// The wire shows e's heartbeat connection on this MAC: it is e's.
			moved = append(moved, fmt.Sprintf("%s from %s", itf.MAC, other.name))
			other.owned = slices.DeleteFunc(other.owned, func(j int32) bool { return j == mi })
		}
		ms.owner = e.idx
		if !slices.Contains(e.owned, mi) {
			e.owned = append(e.owned, mi)
		}
		delete(c.unmanaged, itf.MAC)
		// Reported as a station without heartbeat, if it was: that ends
		// here, and if the endpoint ever lets the MAC go (revoked, the
		// interface gone) while it keeps sending, it is judged again.
		delete(c.alerted, itf.MAC)
		for _, ip := range itf.IPs {
			ip = ip.Unmap()
			if o, held := c.byIP[ip]; held && o != e.idx {
				other := c.endpoints[o]
				if other != nil && e.wireMAC != itf.MAC {
					if first == nil {
						first = other
					}
					contested = append(contested, ip.String())
					if !slices.Contains(others, other.name) {
						others = append(others, other.name)
					}
					continue
				}
			}
			c.byIP[ip] = e.idx
			if !slices.Contains(e.ips, ip) {
				e.ips = append(e.ips, ip)
			}
		}
	}
	if len(moved) > 0 || (len(contested) > 0 && !slices.Equal(contested, e.contested)) {
		ev := c.endpointEvent(e, schema.EventMACConflict, schema.SeverityWarning)
		details := &schema.MACConflictDetails{}
		var why []string
		if len(contested) > 0 {
			why = append(why, fmt.Sprintf("%s declares %s, held by %s; kept with the holder (the wire does not show %s using them)",
				e.name, strings.Join(contested, ", "), strings.Join(others, ", "), e.name))
			details.Contested, details.HeldBy = contested, others
		}
		if len(moved) > 0 {
			why = append(why, fmt.Sprintf("%s's heartbeat connection comes from %s: moved to it", e.name, strings.Join(moved, ", ")))
			details.Moved = moved
		}
		details.WireMAC = e.wireMAC
		if first != nil {
			details.OtherEndpointID, details.OtherEndpointName = first.id, first.name
		}
		details.MAC, details.Remote = firstMAC, e.remote
		ev.Reason = strings.Join(why, "; ")
		ev.Details = details
		out = c.emit(out, ev)
	}
	e.contested = contested
	return out
}

// acceptedInterfaces returns e's declared interfaces cut down to the MACs
// and IPs it holds.
func (c *Correlator) acceptedInterfaces(e *endpoint) []schema.Interface {
	out := make([]schema.Interface, 0, len(e.interfaces))
	for _, itf := range e.interfaces {
		if !c.owns(e, itf.MAC) {
			continue
		}
		a := schema.Interface{Name: itf.Name, MAC: itf.MAC}
		for _, ip := range itf.IPs {
			if c.byIP[ip.Unmap()] == e.idx {
				a.IPs = append(a.IPs, ip)
			}
		}
		out = append(out, a)
	}
	return out
}

// heartbeatSource records the MAC the wire shows carrying a LAN-zone
// connection from src, and weighs the claims of the endpoint connected from
// src again if that changes what it may hold.
func (c *Correlator) heartbeatSource(out []schema.Event, src netip.Addr, m schema.MAC, now int64) []schema.Event {
	src = src.Unmap()
	if !src.IsValid() {
		return out
	}
	if _, known := c.hbSource[src]; known || len(c.hbSource) < c.cfg.MaxTracked {
		c.hbSource[src] = m
	}
	idx, ok := c.byRemote[src]
	if !ok || c.endpoints[idx] == nil {
		return out
	}
	e := c.endpoints[idx]
	if e.remote != src || e.wireMAC == m {
		return out
	}
	e.wireMAC = m
	for _, itf := range e.interfaces {
		if itf.MAC == m && !c.owns(e, m) {
			return c.claim(out, e, now)
		}
	}
	return out
}

// macSlot returns the index of m in macs, adding it if new.
func (c *Correlator) macSlot(m schema.MAC) int32 {
	if i, ok := c.macIndex[m]; ok {
		return i
	}
	i := int32(len(c.macs))
	ms := macState{owner: -1}
	if c.cfg.isInfrastructure(m) {
		ms.flags |= macInfra
	}
	c.macs = append(c.macs, ms)
	c.macIndex[m] = i
	return i
}

// Heartbeat records an endpoint's proof of life and reported health.
func (c *Correlator) Heartbeat(hb schema.Heartbeat) ([]schema.Event, error) {
	idx, ok := c.byID[hb.EndpointID]
	if !ok {
		return nil, fmt.Errorf("heartbeat from %s: %w", hb.EndpointID, ErrUnknownEndpoint)
	}
	if !hb.Health.Valid() {
		return nil, fmt.Errorf("heartbeat from %s: invalid health %d", hb.EndpointID, hb.Health)
	}
	return c.heartbeat(nil, c.endpoints[idx], hb.Health, hb.Reasons, c.now()), nil
}

func (c *Correlator) heartbeat(out []schema.Event, e *endpoint, h schema.Health, reasons []string, now int64) []schema.Event {
	prevStatus := e.status
	prevHealth := e.health
	silentSince, missingSince := e.lastHB, e.statusSince
	c.paced(e, now)
	e.lastHB = now
	c.lastHBAt = now
	e.connected = true
	// Heartbeating again answers for how the agent last left.
	e.dropAt, e.dropCause, e.dropJudged = 0, 0, false
	e.goodbye, e.goodbyeAt = "", 0
	e.wokeAt = 0
	e.health = h
	if !slices.Equal(e.reasons, reasons) {
		e.reasons = slices.Clone(reasons)
	}
	next := schema.StatusOf(h)
	if prevStatus == next {
		return out
	}
	e.status, e.statusSince = next, now
	e.realert = 0
	var ev schema.Event
	if prevStatus == schema.StatusMissing {
		ev = c.endpointEvent(e, schema.EventHeartbeatRestored, schema.SeverityNotice)
		missingFor := time.Duration(now - missingSince)
		silentFor := time.Duration(now - silentSince)
		ev.Reason = fmt.Sprintf("heartbeat restored after %s missing (%s since the previous heartbeat)",
			missingFor.Round(time.Second), silentFor.Round(time.Second))
		ev.Details = &schema.HeartbeatRestoredDetails{
			MissingForSeconds: missingFor.Seconds(),
			SilentForSeconds:  silentFor.Seconds(),
			Health:            h,
		}
	} else {
		sev := schema.SeverityInfo
		switch {
		case next == schema.StatusRed:
			sev = schema.SeverityError
		case next == schema.StatusYellow:
			sev = schema.SeverityWarning
		case prevHealth != 0 && prevHealth != schema.HealthGreen && (prevStatus == schema.StatusYellow || prevStatus == schema.StatusRed):
			sev = schema.SeverityNotice // back to green from a bad health
		}
		ev = c.endpointEvent(e, schema.EventStatusChanged, sev)
		ev.Reason = "reported health " + h.String()
		if len(reasons) > 0 {
			ev.Reason += ": " + strings.Join(reasons, "; ")
		}
	}
	ev.PreviousStatus = prevStatus
	ev.Transition = true
	return c.emit(out, ev)
}

// agentBack notes a hello after the agent left. A new agent process after a
// dropped connection is a restart, worth an event (not an alert): an agent
// that crashed and was restarted by its service manager, or one killed and
// started again. A reconnect of the same process, or a return after a
// goodbye, is not.
func (c *Correlator) agentBack(out []schema.Event, e *endpoint, instance string, now int64) []schema.Event {
	if e.dropAt != 0 && e.goodbye == "" && (instance == "" || instance != e.instance) {
		down := time.Duration(now - e.dropAt)
		ev := c.endpointEvent(e, schema.EventAgentRestarted, schema.SeverityInfo)
		ev.Reason = fmt.Sprintf("agent restarted %s after its connection dropped without goodbye (%s)",
			down.Round(time.Millisecond), e.dropCause.Text())
		d := &schema.AgentRestartedDetails{DownForSeconds: down.Seconds(), Disconnect: e.dropCause.String()}
		if instance == "" {
			d.Instance = "not reported by this agent"
		}
		ev.Details = d
		out = c.emit(out, ev)
	}
	e.instance = instance
	e.dropAt, e.dropCause, e.dropJudged = 0, 0, false
	e.goodbye, e.goodbyeAt = "", 0
	return out
}

// Disconnect records that an endpoint's authenticated LAN-zone connection
// ended and how. A goodbye makes the endpoint stopped (agent_stopped); a
// drop starts the reconnect grace, after which Tick judges it; any other end
// leaves the status to the missing deadline.
func (c *Correlator) Disconnect(d schema.Disconnect) []schema.Event {
	idx, ok := c.byID[d.EndpointID]
	if !ok {
		return nil
	}
	e := c.endpoints[idx]
	if !e.connected {
		return nil
	}
	now := c.now()
	e.connected = false
	ev := c.endpointEvent(e, schema.EventEndpointDisconnected, schema.SeverityInfo)
	ev.Reason = "LAN-zone connection closed: " + d.Cause.Text()
	dd := &schema.EndpointDisconnectedDetails{Disconnect: d.Cause.String(), Message: d.Message}
	if d.Cause == schema.CauseGoodbye {
		dd.Goodbye = string(d.Goodbye)
	}
	ev.Details = dd
	out := c.emit(nil, ev)
	switch {
	case d.Cause == schema.CauseGoodbye:
		e.goodbye, e.goodbyeAt = d.Goodbye, now
		if e.goodbye == "" {
			e.goodbye = schema.GoodbyeStop
		}
		e.dropAt, e.dropCause, e.dropJudged = 0, 0, false
		stopped := c.endpointEvent(e, schema.EventAgentStopped, schema.SeverityInfo)
		stopped.PreviousStatus = e.status
		stopped.Reason = fmt.Sprintf("agent stopped on purpose (goodbye: %s)", e.goodbye)
		if d.Message != "" {
			stopped.Reason += ": " + d.Message
		}
		stopped.Details = &schema.AgentStoppedDetails{Goodbye: string(e.goodbye)}
		// A missing endpoint stays missing: a goodbye clears nothing.
		if e.status != schema.StatusMissing {
			e.status, e.statusSince = schema.StatusStopped, now
		}
		stopped.Status = e.status
		stopped.Transition = stopped.Status != stopped.PreviousStatus
		out = c.emit(out, stopped)
	case d.Cause.Dropped():
		e.dropAt, e.dropCause, e.dropJudged = now, d.Cause, false
	}
	return out
}

// Remove forgets an endpoint whose certificate was revoked. Its MACs are
// unclaimed from now on: if they keep sending they have no heartbeat.
func (c *Correlator) Remove(id string) []schema.Event {
	idx, ok := c.byID[id]
	if !ok {
		return nil
	}
	e := c.endpoints[idx]
	ev := c.endpointEvent(e, schema.EventEndpointRemoved, schema.SeverityNotice)
	ev.Reason = "endpoint certificate revoked"
	ev.PreviousStatus = e.status
	ev.Status = ""
	ev.Transition = true
	e.interfaces = nil
	out := c.claim(nil, e, c.now())
	delete(c.byID, id)
	c.endpoints[idx] = nil
	c.freeSlots = append(c.freeSlots, idx)
	return c.emit(out, ev)
}
