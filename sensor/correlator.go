package sensor

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
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

	startedAt int64 // unix nanoseconds, as every time kept here
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
	interfaces  []Interface
	users       []string
	owned       []int32 // indices into macs of the MACs this endpoint owns
	ips         []netip.Addr
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

// Traffic accounts a batch of per-MAC summaries from capture. It is the hot
// input: no allocation for MACs already known.
func (c *Correlator) Traffic(batch []TrafficSummary) []Event {
	for i := range batch {
		s := &batch[i]
		if s.MAC.IsGroup() || s.MAC.IsZero() {
			continue
		}
		mi, ok := c.macIndex[s.MAC]
		if !ok {
			mi = c.macSlot(s.MAC)
		}
		ms := &c.macs[mi]
		first, last := s.FirstSeen.UnixNano(), s.LastSeen.UnixNano()
		if ms.firstSeen == 0 || first < ms.firstSeen {
			ms.firstSeen = first
		}
		if last > ms.lastSeen {
			ms.lastSeen = last
		}
		if last > c.lastFrameAt {
			c.lastFrameAt = last
		}
		ms.packets += s.Packets
		ms.bytes += s.Bytes
		if ms.owner >= 0 || ms.flags&macInfra != 0 {
			continue
		}
		c.noteUnclaimed(s, ms)
	}
	return nil
}

// noteUnclaimed keeps the unmanaged inventory and queues new unclaimed
// senders for the no-heartbeat verdict.
func (c *Correlator) noteUnclaimed(s *TrafficSummary, ms *macState) {
	st, ok := c.unmanaged[s.MAC]
	if !ok {
		if len(c.unmanaged) >= c.cfg.MaxTracked {
			return
		}
		st = &Station{MAC: s.MAC, FirstSeen: s.FirstSeen}
		c.unmanaged[s.MAC] = st
	}
	if s.LastSeen.After(st.LastSeen) {
		st.LastSeen = s.LastSeen
	}
	if s.FirstSeen.Before(st.FirstSeen) {
		st.FirstSeen = s.FirstSeen
	}
	st.Packets += s.Packets
	st.Bytes += s.Bytes
	for _, ip := range s.IPs {
		if len(st.IPs) < 8 && !slices.Contains(st.IPs, ip) {
			st.IPs = append(st.IPs, ip)
		}
	}
	if _, done := c.alerted[s.MAC]; !done && ms.flags&macPending == 0 {
		ms.flags |= macPending
		c.pending = append(c.pending, s.MAC)
	}
}

// CaptureHealth takes a capture interface's report. Down links and drops
// above the threshold make the sensor blind: no missing verdict is raised
// while it cannot see.
func (c *Correlator) CaptureHealth(h CaptureHealth) []Event {
	now := c.now()
	c.captureSeen = true
	ci, ok := c.capture[h.Interface]
	if !ok {
		ci = &captureIface{}
		c.capture[h.Interface] = ci
	}
	ci.up, ci.reason = h.Up, h.Reason
	if h.Packets > 0 {
		at := h.Time.UnixNano()
		if h.Time.IsZero() {
			at = now
		}
		if at > c.lastFrameAt {
			c.lastFrameAt = at
		}
		if float64(h.Drops) > c.cfg.DropThreshold*float64(h.Packets) {
			ci.lossyUntil = now + int64(c.cfg.HeartbeatInterval)
			ci.lossyWhy = fmt.Sprintf("kernel dropped %d of %d frames (%.1f%%, threshold %.1f%%)",
				h.Drops, h.Packets, 100*float64(h.Drops)/float64(h.Packets), 100*c.cfg.DropThreshold)
		}
	}
	return c.updateCapture(nil, now)
}

// blindReason says why the capture cannot be trusted now, or "".
func (c *Correlator) blindReason(now int64) string {
	if !c.captureSeen {
		return ""
	}
	names := make([]string, 0, len(c.capture))
	for n := range c.capture {
		names = append(names, n)
	}
	sort.Strings(names)
	var why []string
	for _, n := range names {
		ci := c.capture[n]
		switch {
		case !ci.up:
			r := ci.reason
			if r == "" {
				r = "link down"
			}
			why = append(why, fmt.Sprintf("capture interface %s is down: %s", n, r))
		case now < ci.lossyUntil:
			why = append(why, fmt.Sprintf("capture interface %s: %s", n, ci.lossyWhy))
		}
	}
	quiet := int64(c.cfg.QuietAfter)
	if len(why) == 0 && c.lastHBAt > 0 && now-c.lastHBAt < int64(c.cfg.deadline) &&
		now-c.startedAt >= quiet && now-c.lastFrameAt >= quiet {
		why = append(why, fmt.Sprintf("capture saw no frame for %s or more while endpoints heartbeat: check the mirror port and its cabling",
			c.cfg.QuietAfter))
	}
	return strings.Join(why, "; ")
}

func (c *Correlator) updateCapture(out []Event, now int64) []Event {
	why := c.blindReason(now)
	switch {
	case why != "" && (!c.degraded || why != c.degradedWhy):
		c.degraded, c.degradedWhy = true, why
		out = c.emit(out, Event{
			Type: EventCaptureDegraded, Severity: SeverityError,
			Reason:  why + "; missing verdicts are withheld until the capture is healthy",
			Details: map[string]any{"blind": true},
		})
	case why == "" && c.degraded:
		c.degraded, c.degradedWhy = false, ""
		c.clearFrom = now
		out = c.emit(out, Event{
			Type: EventCaptureRestored, Severity: SeverityNotice,
			Reason: "capture healthy again; missing verdicts resume after one clean interval",
		})
	}
	return out
}

// blind reports whether the last interval's traffic cannot be trusted: the
// capture is degraded now or recovered less than an interval ago.
func (c *Correlator) blind(now int64) bool {
	return c.degraded || now-c.clearFrom < int64(c.cfg.HeartbeatInterval)
}

// sentRecently reports whether any MAC of e sent during the last interval.
func (c *Correlator) sentRecently(e *endpoint, now int64) bool {
	since := now - int64(c.cfg.HeartbeatInterval)
	for _, mi := range e.owned {
		if c.macs[mi].lastSeen > since {
			return true
		}
	}
	return false
}

// Tick applies the time-driven rules: missing and offline verdicts, the
// escalation ladder, no-heartbeat verdicts, capture blindness. The daemon
// calls it about once a second.
func (c *Correlator) Tick() []Event {
	now := c.now()
	out := c.updateCapture(nil, now)
	inGrace := now-c.startedAt < int64(c.cfg.HeartbeatInterval)*int64(c.cfg.StartupGrace)
	if !inGrace {
		blind := c.blind(now)
		for _, e := range c.endpoints {
			if e != nil {
				out = c.judge(out, e, now, blind)
			}
		}
		out = c.judgeUnclaimed(out, now)
	}
	if now-c.lastPrune >= int64(c.cfg.DedupWindow) {
		c.prune(now)
	}
	return out
}

func (c *Correlator) judge(out []Event, e *endpoint, now int64, blind bool) []Event {
	silentFor := now - max(e.lastHB, c.startedAt)
	if silentFor < int64(c.cfg.deadline) {
		return out
	}
	sending := c.sentRecently(e, now)
	switch e.status {
	case StatusMissing:
		ladder := c.cfg.MissingRealert
		silent := time.Duration(now - e.lastHB)
		step := e.realert
		for step < len(ladder) && silent >= ladder[step] {
			step++
		}
		if step > e.realert {
			e.realert = step
			if sending && !blind {
				ev := c.endpointEvent(e, EventHeartbeatMissing, SeverityError)
				ev.Reason = fmt.Sprintf("still no heartbeat after %s while its MACs keep sending", silent.Round(time.Second))
				ev.PreviousStatus = StatusMissing
				ev.Details = map[string]any{"silent_for_seconds": silent.Seconds(), "escalation": step}
				out = c.emit(out, ev)
			}
		}
		return out
	case StatusOffline, StatusUnknown:
		if blind || !sending {
			if e.status == StatusUnknown && !blind {
				return c.setStatus(out, e, StatusOffline, now, "no heartbeat and no traffic")
			}
			return out
		}
	default: // green, yellow, red: the deadline just passed
		if blind {
			return c.setStatus(out, e, StatusUnknown, now, "no heartbeat while the capture is blind: missing or offline cannot be told")
		}
		if !sending {
			return c.setStatus(out, e, StatusOffline, now, "no heartbeat and no traffic")
		}
	}
	// No heartbeat past the deadline and its MACs send: missing.
	prev := e.status
	e.status, e.statusSince = StatusMissing, now
	silent := time.Duration(now - e.lastHB)
	if e.lastHB == 0 {
		silent = time.Duration(now - c.startedAt)
	}
	e.realert = 0
	for e.realert < len(c.cfg.MissingRealert) && silent >= c.cfg.MissingRealert[e.realert] {
		e.realert++
	}
	ev := c.endpointEvent(e, EventHeartbeatMissing, SeverityError)
	ev.PreviousStatus = prev
	ev.Reason = fmt.Sprintf("no heartbeat for %s while its MACs keep sending", silent.Round(time.Second))
	ev.Details = map[string]any{"silent_for_seconds": silent.Seconds(), "escalation": max(e.realert, 1)}
	if c.agentConnectionSeen(e, now) {
		ev.Reason += "; its connection to the LAN zone is still active: agent present but silent"
		ev.Details["agent_connection_seen"] = true
	}
	return c.emit(out, ev)
}

func (c *Correlator) setStatus(out []Event, e *endpoint, s Status, now int64, reason string) []Event {
	if e.status == s {
		return out
	}
	ev := c.endpointEvent(e, EventStatusChanged, SeverityInfo)
	ev.PreviousStatus = e.status
	e.status, e.statusSince = s, now
	ev.Status = s
	ev.Reason = reason
	return c.emit(out, ev)
}

func (c *Correlator) judgeUnclaimed(out []Event, now int64) []Event {
	keep := c.pending[:0]
	for _, m := range c.pending {
		mi := c.macIndex[m]
		ms := &c.macs[mi]
		st := c.unmanaged[m]
		if ms.owner >= 0 || ms.flags&macInfra != 0 || st == nil {
			ms.flags &^= macPending
			continue
		}
		if now-st.FirstSeen.UnixNano() < int64(c.cfg.NoHeartbeatAfter) {
			keep = append(keep, m)
			continue
		}
		ms.flags &^= macPending
		c.alerted[m] = struct{}{}
		ev := Event{
			Type: EventNoHeartbeat, Severity: SeverityWarning,
			MACs:   []string{m.String()},
			Status: StatusNoHeartbeat,
			Reason: fmt.Sprintf("MAC %s sends traffic and belongs to no enrolled endpoint", m),
			Details: map[string]any{
				"first_seen": st.FirstSeen.UTC().Format(time.RFC3339Nano),
				"packets":    st.Packets,
				"bytes":      st.Bytes,
			},
		}
		for _, ip := range st.IPs {
			ev.IPs = append(ev.IPs, ip.String())
		}
		out = c.emit(out, ev)
	}
	clear(c.pending[len(keep):])
	c.pending = keep
	return out
}

func (c *Correlator) prune(now int64) {
	c.lastPrune = now
	window := int64(c.cfg.DedupWindow)
	for k, t := range c.policySeen {
		if now-t >= window {
			delete(c.policySeen, k)
		}
	}
	for k, t := range c.pairSeen {
		if now-t >= window {
			delete(c.pairSeen, k)
		}
	}
	for k, t := range c.hbChannel {
		if now-t >= window {
			delete(c.hbChannel, k)
		}
	}
}

// host is one side of a flow as the correlator sees it.
type host struct {
	mac      MAC
	ip       netip.Addr
	endpoint *endpoint // nil: not enrolled
	group    bool      // broadcast or multicast: not a host
}

func (c *Correlator) lookup(m MAC, ip netip.Addr) host {
	h := host{mac: m, ip: ip.Unmap()}
	if m.IsGroup() || (h.ip.IsValid() && (h.ip.IsMulticast() || h.ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}))) {
		h.group = true
		return h
	}
	if mi, ok := c.macIndex[m]; ok && c.macs[mi].flags&macInfra == 0 {
		if o := c.macs[mi].owner; o >= 0 {
			h.endpoint = c.endpoints[o]
			return h
		}
	}
	// Routed traffic carries the gateway's MAC: fall back to declared IPs.
	if h.ip.IsValid() {
		if o, ok := c.byIP[h.ip]; ok {
			h.endpoint = c.endpoints[o]
		}
	}
	return h
}

func (h host) status() Status {
	if h.endpoint == nil {
		return StatusNoHeartbeat
	}
	return h.endpoint.status
}

func (h host) describe() string {
	if h.endpoint != nil {
		return h.endpoint.name
	}
	if h.ip.IsValid() {
		return h.ip.String()
	}
	return h.mac.String()
}

// FlowStart checks a new flow against the heartbeat policies and the
// lateral-movement rule.
func (c *Correlator) FlowStart(f Flow) []Event {
	now := c.now()
	if f.Proto == 6 && c.isSensor(f.DstIP, f.DstPort) {
		if _, known := c.hbChannel[f.SrcMAC]; known || len(c.hbChannel) < c.cfg.MaxTracked {
			c.hbChannel[f.SrcMAC] = now
		}
		return nil
	}
	src := c.lookup(f.SrcMAC, f.SrcIP)
	dst := c.lookup(f.DstMAC, f.DstIP)
	if src.group {
		return nil
	}
	var out []Event
	for i := range c.cfg.policies {
		p := &c.cfg.policies[i]
		if !matchAddr(p.src, src.ip) || !matchAddr(p.dst, dst.ip) {
			continue
		}
		if p.ports != nil {
			if _, ok := p.ports[f.DstPort]; !ok || (f.Proto != 6 && f.Proto != 17) {
				continue
			}
		}
		why := violation(p, src, dst)
		if why == "" {
			break
		}
		key := policyKey{rule: i, srcMAC: src.mac, dstMAC: dst.mac, srcIP: src.ip, dstIP: dst.ip, port: f.DstPort}
		if t, seen := c.policySeen[key]; seen && now-t < int64(c.cfg.DedupWindow) {
			break
		}
		if len(c.policySeen) < c.cfg.MaxTracked {
			c.policySeen[key] = now
		}
		out = c.emit(out, c.flowEvent(EventPolicyViolation, SeverityWarning, src, f,
			fmt.Sprintf("policy %s: %s", p.Name, why), map[string]any{"policy": p.Name}))
		break
	}
	for i, pair := range [2][2]host{{src, dst}, {dst, src}} {
		risky, peer := pair[0], pair[1]
		if risky.endpoint == nil || peer.group || (risky.endpoint.status != StatusRed && risky.endpoint.status != StatusMissing) {
			continue
		}
		if peer.endpoint == risky.endpoint {
			continue
		}
		key := pairKey{endpoint: risky.endpoint.idx, peerMAC: peer.mac, peerIP: peer.ip}
		if t, seen := c.pairSeen[key]; seen && now-t < int64(c.cfg.DedupWindow) {
			continue
		}
		if len(c.pairSeen) < c.cfg.MaxTracked {
			c.pairSeen[key] = now
		}
		direction := "outbound"
		if i == 1 {
			direction = "inbound"
		}
		out = c.emit(out, c.flowEvent(EventLateralMovement, SeverityCritical, risky, f,
			fmt.Sprintf("%s endpoint %s talks with %s (%s)", risky.endpoint.status, risky.endpoint.name, peer.describe(), direction),
			map[string]any{"peer": peer.describe(), "peer_status": string(peer.status()), "direction": direction}))
	}
	return out
}

// isSensor reports whether ip:port is one of the LAN-zone listener's.
func (c *Correlator) isSensor(ip netip.Addr, port uint16) bool {
	ip = ip.Unmap()
	for _, a := range c.cfg.SensorAddrs {
		if a.Port() == port && (a.Addr().Unmap() == ip || a.Addr().IsUnspecified()) {
			return true
		}
	}
	return false
}

// agentConnectionSeen reports whether one of e's MACs carried a TCP
// connection to the LAN zone during the last interval: the agent is there
// but does not heartbeat.
func (c *Correlator) agentConnectionSeen(e *endpoint, now int64) bool {
	since := now - int64(c.cfg.HeartbeatInterval)
	for _, itf := range e.interfaces {
		if t, ok := c.hbChannel[itf.MAC]; ok && t > since {
			return true
		}
	}
	return false
}

func violation(p *compiledPolicy, src, dst host) string {
	check := func(side string, h host, min MinHealth, alertWithout bool) string {
		if h.group {
			return ""
		}
		if h.endpoint == nil {
			if alertWithout {
				return fmt.Sprintf("%s %s has no heartbeat", side, h.describe())
			}
			return ""
		}
		if h.endpoint.status.Rank() < min.rank() {
			return fmt.Sprintf("%s %s is %s, minimum %s", side, h.describe(), h.endpoint.status, min)
		}
		return ""
	}
	if why := check("source", src, p.MinSourceHealth, p.AlertSourceWithoutHeartbeat); why != "" {
		return why
	}
	return check("destination", dst, p.MinDestinationHealth, p.AlertDestinationWithoutHeartbeat)
}

// flowEvent builds an event about a flow, attributed to the first host.
func (c *Correlator) flowEvent(typ EventType, sev Severity, subject host, f Flow, reason string, details map[string]any) Event {
	var ev Event
	if subject.endpoint != nil {
		ev = c.endpointEvent(subject.endpoint, typ, sev)
	} else {
		ev = Event{Type: typ, Severity: sev, Status: subject.status(), MACs: []string{subject.mac.String()}}
		if subject.ip.IsValid() {
			ev.IPs = []string{subject.ip.String()}
		}
	}
	ev.Reason = reason
	details["src_mac"] = f.SrcMAC.String()
	details["dst_mac"] = f.DstMAC.String()
	if f.SrcIP.IsValid() {
		details["src_ip"] = f.SrcIP.String()
	}
	if f.DstIP.IsValid() {
		details["dst_ip"] = f.DstIP.String()
	}
	details["proto"] = protoName(f.Proto)
	if f.DstPort != 0 {
		details["dst_port"] = f.DstPort
	}
	details["source_status"] = string(c.lookup(f.SrcMAC, f.SrcIP).status())
	if dst := c.lookup(f.DstMAC, f.DstIP); !dst.group {
		details["destination_status"] = string(dst.status())
	}
	ev.Details = details
	return ev
}

func protoName(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "icmpv6"
	}
	return fmt.Sprintf("ip-proto-%d", p)
}

// AtRisk returns the current red, yellow and missing endpoints, ordered by
// name, with their MACs and IPs.
func (c *Correlator) AtRisk() AtRiskList {
	list := AtRiskList{Generated: c.clock.Now(), Endpoints: []AtRiskEndpoint{}}
	for _, e := range c.endpoints {
		if e == nil || (e.status != StatusRed && e.status != StatusYellow && e.status != StatusMissing) {
			continue
		}
		a := AtRiskEndpoint{EndpointID: e.id, Name: e.name, Status: e.status, IPs: slices.Clone(e.ips)}
		for _, itf := range e.interfaces {
			a.MACs = append(a.MACs, itf.MAC)
		}
		list.Endpoints = append(list.Endpoints, a)
	}
	sort.Slice(list.Endpoints, func(i, j int) bool {
		a, b := list.Endpoints[i], list.Endpoints[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.EndpointID < b.EndpointID
	})
	return list
}

// Endpoints returns every enrolled endpoint's state, ordered by id.
func (c *Correlator) Endpoints() []EndpointState {
	out := make([]EndpointState, 0, len(c.byID))
	for _, e := range c.endpoints {
		if e != nil {
			out = append(out, c.stateOf(e))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Endpoint returns one endpoint's state.
func (c *Correlator) Endpoint(id string) (EndpointState, bool) {
	idx, ok := c.byID[id]
	if !ok {
		return EndpointState{}, false
	}
	return c.stateOf(c.endpoints[idx]), true
}

func (c *Correlator) stateOf(e *endpoint) EndpointState {
	s := EndpointState{
		ID: e.id, Name: e.name, Org: e.org, Health: e.health,
		Reasons: slices.Clone(e.reasons), Status: e.status,
		Connected:  e.connected,
		Interfaces: cloneInterfaces(e.interfaces),
		Users:      slices.Clone(e.users),
	}
	if e.statusSince != 0 {
		s.StatusSince = time.Unix(0, e.statusSince).UTC()
	}
	if e.lastHB != 0 {
		s.LastHeartbeat = time.Unix(0, e.lastHB).UTC()
	}
	return s
}

// Unmanaged returns the unmanaged inventory, ordered by MAC.
func (c *Correlator) Unmanaged() []Station {
	out := make([]Station, 0, len(c.unmanaged))
	for _, st := range c.unmanaged {
		s := *st
		s.IPs = slices.Clone(st.IPs)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC.Uint64() < out[j].MAC.Uint64() })
	return out
}

// Snapshot returns the state worth keeping across a restart.
func (c *Correlator) Snapshot() Snapshot {
	s := Snapshot{NextSeq: c.nextSeq, Endpoints: c.Endpoints()}
	for m := range c.alerted {
		s.Alerted = append(s.Alerted, m)
	}
	sort.Slice(s.Alerted, func(i, j int) bool { return s.Alerted[i].Uint64() < s.Alerted[j].Uint64() })
	return s
}

// Restore loads a snapshot into a fresh correlator, before any input. The
// endpoints come back disconnected; the startup grace gives their agents time
// to reconnect before any missing verdict.
func (c *Correlator) Restore(s Snapshot) error {
	if len(c.byID) > 0 || c.nextSeq != 1 {
		return errors.New("restore: the correlator already has state")
	}
	if s.NextSeq > 0 {
		c.nextSeq = s.NextSeq
	}
	for _, st := range s.Endpoints {
		if st.ID == "" {
			return errors.New("restore: endpoint with an empty id")
		}
		if _, dup := c.byID[st.ID]; dup {
			return fmt.Errorf("restore: endpoint %s appears twice", st.ID)
		}
		e := &endpoint{
			idx: int32(len(c.endpoints)), id: st.ID, name: st.Name, org: st.Org,
			health: st.Health, reasons: slices.Clone(st.Reasons), status: st.Status,
			interfaces: cloneInterfaces(st.Interfaces), users: slices.Clone(st.Users),
		}
		if !st.StatusSince.IsZero() {
			e.statusSince = st.StatusSince.UnixNano()
		}
		if !st.LastHeartbeat.IsZero() {
			e.lastHB = st.LastHeartbeat.UnixNano()
		}
		c.endpoints = append(c.endpoints, e)
		c.byID[e.id] = e.idx
		c.claim(nil, e, 0)
	}
	for _, m := range s.Alerted {
		c.alerted[m] = struct{}{}
	}
	return nil
}
