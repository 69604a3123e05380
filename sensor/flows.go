package sensor

import (
	"fmt"
	"net/netip"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// host is one side of a flow as the correlator sees it.
type host struct {
	mac      schema.MAC
	ip       netip.Addr
	endpoint *endpoint // nil: not enrolled
	group    bool      // broadcast or multicast: not a host
}

func (c *Correlator) lookup(m schema.MAC, ip netip.Addr) host {
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

func (h host) status() schema.Status {
	if h.endpoint == nil {
		return schema.StatusNoHeartbeat
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
func (c *Correlator) FlowStart(f schema.Flow) []schema.Event {
	now := c.now()
	if f.Proto == 6 && c.isSensor(f.DstIP, f.DstPort) {
		if _, known := c.hbChannel[f.SrcMAC]; known || len(c.hbChannel) < c.cfg.MaxTracked {
			c.hbChannel[f.SrcMAC] = now
		}
		return c.heartbeatSource(nil, f.SrcIP, f.SrcMAC, now)
	}
	src := c.lookup(f.SrcMAC, f.SrcIP)
	dst := c.lookup(f.DstMAC, f.DstIP)
	if src.group {
		return nil
	}
	var out []schema.Event
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
		out = c.emit(out, c.flowEvent(schema.EventPolicyViolation, schema.SeverityWarning, src, f,
			fmt.Sprintf("policy %s: %s", p.Name, why), schema.FlowDetails{Policy: p.Name}))
		break
	}
	for i, pair := range [2][2]host{{src, dst}, {dst, src}} {
		risky, peer := pair[0], pair[1]
		if risky.endpoint == nil || peer.group || (risky.endpoint.status != schema.StatusRed && risky.endpoint.status != schema.StatusMissing) {
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
		out = c.emit(out, c.flowEvent(schema.EventLateralMovement, schema.SeverityCritical, risky, f,
			fmt.Sprintf("%s endpoint %s talks with %s (%s)", risky.endpoint.status, risky.endpoint.name, peer.describe(), direction),
			schema.FlowDetails{Peer: peer.describe(), PeerStatus: peer.status(), Direction: direction}))
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
	since := now - max(c.intervalOf(e), int64(TrafficLag))
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
func (c *Correlator) flowEvent(typ schema.EventType, sev schema.Severity, subject host, f schema.Flow, reason string, d schema.FlowDetails) schema.Event {
	var ev schema.Event
	if subject.endpoint != nil {
		ev = c.endpointEvent(subject.endpoint, typ, sev)
	} else {
		ev = schema.Event{Type: typ, Severity: sev, Status: subject.status(), MACs: []schema.MAC{subject.mac}}
		if subject.ip.IsValid() {
			ev.IPs = []netip.Addr{subject.ip}
		}
	}
	ev.Reason = reason
	d.SrcMAC, d.DstMAC = f.SrcMAC, f.DstMAC
	d.SrcIP, d.DstIP = f.SrcIP, f.DstIP
	d.Proto = protoName(f.Proto)
	d.DstPort = f.DstPort
	d.SourceStatus = c.lookup(f.SrcMAC, f.SrcIP).status()
	if dst := c.lookup(f.DstMAC, f.DstIP); !dst.group {
		d.DestinationStatus = dst.status()
	}
	ev.Details = &d
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
