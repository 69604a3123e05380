package sensor

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
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
	macIndex  map[MAC]int32 // MAC -> index into macs
	macs      []macState

	pending    []MAC               // unclaimed senders waiting for the no-heartbeat verdict
	unmanaged  map[MAC]*Station    // the unmanaged inventory
	alerted    map[MAC]struct{}    // MACs reported as no_heartbeat, ever
	hbChannel  map[MAC]int64       // MAC -> last time it carried a heartbeat connection
	policySeen map[policyKey]int64 // de-duplication: last alert time
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
	health      Health
	reasons     []string
	status      Status
	statusSince int64
	lastHB      int64
	connected   bool
	realert     int // ladder steps already alerted while missing
	// slowInterval, when set, is a longer heartbeat interval the endpoint
	// is judged by until it heartbeats at the shorter one now in force.
	slowInterval int64
	interfaces   []Interface
	users        []string
	owned        []int32 // indices into macs of the MACs this endpoint owns
	ips          []netip.Addr
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
	srcMAC, dstMAC MAC
	srcIP, dstIP   netip.Addr
	port           uint16
}

type pairKey struct {
	endpoint int32 // the red or missing endpoint
	peerMAC  MAC
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
		macIndex:   map[MAC]int32{},
		unmanaged:  map[MAC]*Station{},
		alerted:    map[MAC]struct{}{},
		hbChannel:  map[MAC]int64{},
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

func (c *Correlator) emit(out []Event, ev Event) []Event {
	ev.Seq = c.nextSeq
	c.nextSeq++
	if ev.Time.IsZero() {
		ev.Time = c.clock.Now()
	}
	return append(out, ev)
}

// Record numbers an event raised outside the correlator (auth_failed from the
// LAN zone, alerts_lost from a sink) so that every event shares one sequence.
func (c *Correlator) Record(ev Event) []Event {
	return c.emit(nil, ev)
}

// NextSeq is the sequence number the next event will get.
func (c *Correlator) NextSeq() uint64 { return c.nextSeq }

func (c *Correlator) endpointEvent(e *endpoint, typ EventType, sev Severity) Event {
	ev := Event{
		Type:         typ,
		Severity:     sev,
		EndpointID:   e.id,
		EndpointName: e.name,
		Org:          e.org,
		Status:       e.status,
	}
	for _, i := range e.interfaces {
		ev.MACs = append(ev.MACs, i.MAC.String())
	}
	for _, ip := range e.ips {
		ev.IPs = append(ev.IPs, ip.String())
	}
	return ev
}

// Hello registers or updates an endpoint. A hello counts as a heartbeat.
func (c *Correlator) Hello(h Hello) ([]Event, error) {
	if h.EndpointID == "" {
		return nil, fmt.Errorf("hello: empty endpoint id")
	}
	if !h.Health.Valid() {
		return nil, fmt.Errorf("hello from %s: invalid health %d", h.EndpointID, h.Health)
	}
	now := c.now()
	var out []Event
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
	out = c.claim(out, e, now)

	hello := c.endpointEvent(e, EventEndpointHello, SeverityInfo)
	hello.Reason = "endpoint declared its interfaces and users"
	details := map[string]any{"interfaces": e.interfaces}
	if len(e.users) > 0 {
		details["users"] = e.users
	}
	if h.Remote.IsValid() {
		details["remote"] = h.Remote.String()
	}
	hello.Details = details
	out = c.emit(out, hello)
	return c.heartbeat(out, e, h.Health, h.Reasons, now), nil
}

func cloneInterfaces(in []Interface) []Interface {
	out := make([]Interface, len(in))
	for i, itf := range in {
		out[i] = Interface{Name: itf.Name, MAC: itf.MAC, IPs: slices.Clone(itf.IPs)}
	}
	return out
}

// claim gives e the MACs and IPs it now declares and releases the ones it no
// longer does. A MAC another endpoint owns moves to e with a mac_conflict.
func (c *Correlator) claim(out []Event, e *endpoint, now int64) []Event {
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
	}
	e.ips = e.ips[:0]
	for _, itf := range e.interfaces {
		if itf.MAC.IsZero() || itf.MAC.IsGroup() {
			continue
		}
		mi := c.macSlot(itf.MAC)
		ms := &c.macs[mi]
		if ms.owner >= 0 && ms.owner != e.idx {
			other := c.endpoints[ms.owner]
			ev := c.endpointEvent(e, EventMACConflict, SeverityWarning)
			ev.Reason = fmt.Sprintf("%s declares MAC %s, which %s declared before", e.name, itf.MAC, other.name)
			ev.Details = map[string]any{
				"mac":                 itf.MAC.String(),
				"other_endpoint_id":   other.id,
				"other_endpoint_name": other.name,
			}
			out = c.emit(out, ev)
			other.owned = slices.DeleteFunc(other.owned, func(j int32) bool { return j == mi })
		}
		ms.owner = e.idx
		if !slices.Contains(e.owned, mi) {
			e.owned = append(e.owned, mi)
		}
		delete(c.unmanaged, itf.MAC)
		for _, ip := range itf.IPs {
			ip = ip.Unmap()
			c.byIP[ip] = e.idx
			if !slices.Contains(e.ips, ip) {
				e.ips = append(e.ips, ip)
			}
		}
	}
	return out
}

// macSlot returns the index of m in macs, adding it if new.
func (c *Correlator) macSlot(m MAC) int32 {
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
func (c *Correlator) Heartbeat(hb Heartbeat) ([]Event, error) {
	idx, ok := c.byID[hb.EndpointID]
	if !ok {
		return nil, fmt.Errorf("heartbeat from %s: %w", hb.EndpointID, ErrUnknownEndpoint)
	}
	if !hb.Health.Valid() {
		return nil, fmt.Errorf("heartbeat from %s: invalid health %d", hb.EndpointID, hb.Health)
	}
	return c.heartbeat(nil, c.endpoints[idx], hb.Health, hb.Reasons, c.now()), nil
}

func (c *Correlator) heartbeat(out []Event, e *endpoint, h Health, reasons []string, now int64) []Event {
	prevStatus := e.status
	prevHealth := e.health
	silentSince, missingSince := e.lastHB, e.statusSince
	c.paced(e, now)
	e.lastHB = now
	c.lastHBAt = now
	e.connected = true
	e.health = h
	if !slices.Equal(e.reasons, reasons) {
		e.reasons = slices.Clone(reasons)
	}
	next := statusOf(h)
	if prevStatus == next {
		return out
	}
	e.status, e.statusSince = next, now
	e.realert = 0
	var ev Event
	if prevStatus == StatusMissing {
		ev = c.endpointEvent(e, EventHeartbeatRestored, SeverityNotice)
		missingFor := time.Duration(now - missingSince)
		silentFor := time.Duration(now - silentSince)
		ev.Reason = fmt.Sprintf("heartbeat restored after %s missing (%s since the previous heartbeat)",
			missingFor.Round(time.Second), silentFor.Round(time.Second))
		ev.Details = map[string]any{
			"missing_for_seconds": missingFor.Seconds(),
			"silent_for_seconds":  silentFor.Seconds(),
			"health":              h.String(),
		}
	} else {
		sev := SeverityInfo
		switch {
		case next == StatusRed:
			sev = SeverityError
		case next == StatusYellow:
			sev = SeverityWarning
		case prevHealth != 0 && prevHealth != HealthGreen && (prevStatus == StatusYellow || prevStatus == StatusRed):
			sev = SeverityNotice // back to green from a bad health
		}
		ev = c.endpointEvent(e, EventStatusChanged, sev)
		ev.Reason = "reported health " + h.String()
		if len(reasons) > 0 {
			ev.Reason += ": " + strings.Join(reasons, "; ")
		}
	}
	ev.PreviousStatus = prevStatus
	return c.emit(out, ev)
}

// Disconnect records that an endpoint's LAN-zone connection closed. Its
// status stands until the missing deadline judges it.
func (c *Correlator) Disconnect(id string) []Event {
	idx, ok := c.byID[id]
	if !ok {
		return nil
	}
	e := c.endpoints[idx]
	if !e.connected {
		return nil
	}
	e.connected = false
	ev := c.endpointEvent(e, EventEndpointDisconnected, SeverityInfo)
	ev.Reason = "LAN-zone connection closed"
	return c.emit(nil, ev)
}

// Remove forgets an endpoint whose certificate was revoked. Its MACs are
// unclaimed from now on: if they keep sending they have no heartbeat.
func (c *Correlator) Remove(id string) []Event {
	idx, ok := c.byID[id]
	if !ok {
		return nil
	}
	e := c.endpoints[idx]
	ev := c.endpointEvent(e, EventEndpointRemoved, SeverityNotice)
	ev.Reason = "endpoint certificate revoked"
	ev.PreviousStatus = e.status
	ev.Status = ""
	e.interfaces = nil
	out := c.claim(nil, e, c.now())
	delete(c.byID, id)
	c.endpoints[idx] = nil
	c.freeSlots = append(c.freeSlots, idx)
	return c.emit(out, ev)
}
