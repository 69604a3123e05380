package sensor

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// AtRisk returns the current red, yellow and missing endpoints, ordered by
// name, with the MACs and IPs each was seen to use: a MAC it holds that sent
// traffic or carried its heartbeat connection, an IP it holds that one of
// its MACs sent from or its connection came from. A hello's word alone puts
// nothing on the list, so no endpoint can have another isolated by
// declaring its addresses. A sensor with no capture at all has no wire to
// weigh claims against: it lists the MACs and IPs the endpoint holds
// uncontested.
func (c *Correlator) AtRisk() schema.AtRiskList {
	noWire := !c.captureSeen
	list := schema.AtRiskList{Generated: c.clock.Now(), Endpoints: []schema.AtRiskEndpoint{}}
	for _, e := range c.endpoints {
		if e == nil || (e.status != schema.StatusRed && e.status != schema.StatusYellow && e.status != schema.StatusMissing) {
			continue
		}
		a := schema.AtRiskEndpoint{EndpointID: e.id, Name: e.name, Status: e.status}
		for _, itf := range e.interfaces {
			mi, ok := c.macIndex[itf.MAC]
			if !ok || c.macs[mi].owner != e.idx || slices.Contains(a.MACs, itf.MAC) {
				continue
			}
			if noWire || c.macs[mi].lastSeen > 0 || itf.MAC == e.wireMAC {
				a.MACs = append(a.MACs, itf.MAC)
			}
		}
		for _, ip := range e.ips {
			if o, ok := c.ipSeen[ip]; noWire || (ok && o == e.idx) || ip == e.remote {
				a.IPs = append(a.IPs, ip)
			}
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
func (c *Correlator) Endpoints() []schema.EndpointState {
	out := c.endpointStates()
	sortStates(out)
	return out
}

// endpointStates returns every enrolled endpoint's state, unordered.
func (c *Correlator) endpointStates() []schema.EndpointState {
	out := make([]schema.EndpointState, 0, len(c.byID))
	for _, e := range c.endpoints {
		if e != nil {
			out = append(out, c.stateOf(e))
		}
	}
	return out
}

func sortStates(s []schema.EndpointState) {
	slices.SortFunc(s, func(a, b schema.EndpointState) int { return strings.Compare(a.ID, b.ID) })
}

// Endpoint returns one endpoint's state.
func (c *Correlator) Endpoint(id string) (schema.EndpointState, bool) {
	idx, ok := c.byID[id]
	if !ok {
		return schema.EndpointState{}, false
	}
	return c.stateOf(c.endpoints[idx]), true
}

func (c *Correlator) stateOf(e *endpoint) schema.EndpointState {
	s := schema.EndpointState{
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
func (c *Correlator) Unmanaged() []schema.Station {
	out := make([]schema.Station, 0, len(c.unmanaged))
	for _, st := range c.unmanaged {
		s := *st
		s.IPs = slices.Clone(st.IPs)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC.Uint64() < out[j].MAC.Uint64() })
	return out
}

// Snapshot returns the state worth keeping across a restart: endpoints
// ordered by id, alerted MACs by value.
func (c *Correlator) Snapshot() Snapshot {
	s := c.snapshot()
	s.sort()
	return s
}

// snapshot is Snapshot unordered.
func (c *Correlator) snapshot() Snapshot {
	s := Snapshot{NextSeq: c.nextSeq, Endpoints: c.endpointStates(), HeartbeatInterval: c.cfg.HeartbeatInterval}
	s.Alerted = make([]schema.MAC, 0, len(c.alerted))
	for m := range c.alerted {
		s.Alerted = append(s.Alerted, m)
	}
	return s
}

func (s *Snapshot) sort() {
	sortStates(s.Endpoints)
	slices.SortFunc(s.Alerted, func(a, b schema.MAC) int { return cmp.Compare(a.Uint64(), b.Uint64()) })
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
		if s.HeartbeatInterval > c.cfg.HeartbeatInterval {
			e.slowInterval = int64(s.HeartbeatInterval)
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

// StatusCounts returns how many enrolled endpoints are in each status,
// without copying their state.
func (c *Correlator) StatusCounts() map[schema.Status]int {
	out := map[schema.Status]int{}
	for _, e := range c.endpoints {
		if e != nil {
			out[e.status]++
		}
	}
	return out
}
