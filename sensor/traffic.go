package sensor

import (
	"fmt"
	"slices"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Traffic accounts a batch of per-MAC summaries from capture. It is the hot
// input: no allocation for MACs already known.
func (c *Correlator) Traffic(batch []schema.TrafficSummary) []schema.Event {
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
		if ms.owner >= 0 {
			// Wire evidence for the at-risk list: addresses this endpoint's
			// MAC was seen sending from.
			for _, ip := range s.IPs {
				if o, ok := c.byIP[ip]; ok && o == ms.owner {
					c.ipSeen[ip] = o
				}
			}
			continue
		}
		if ms.flags&macInfra != 0 {
			continue
		}
		c.noteUnclaimed(s, ms)
	}
	return nil
}

// noteUnclaimed keeps the unmanaged inventory and queues new unclaimed
// senders for the no-heartbeat verdict.
func (c *Correlator) noteUnclaimed(s *schema.TrafficSummary, ms *macState) {
	st, ok := c.unmanaged[s.MAC]
	if !ok {
		if len(c.unmanaged) >= c.cfg.MaxTracked {
			return
		}
		st = &schema.Station{MAC: s.MAC, FirstSeen: s.FirstSeen}
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

func (c *Correlator) judgeUnclaimed(out []schema.Event, now int64) []schema.Event {
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
		ev := schema.Event{
			Type: schema.EventNoHeartbeat, Severity: schema.SeverityWarning,
			MACs:    []schema.MAC{m},
			Status:  schema.StatusNoHeartbeat,
			Reason:  fmt.Sprintf("MAC %s sends traffic and belongs to no enrolled endpoint", m),
			Details: &schema.NoHeartbeatDetails{FirstSeen: st.FirstSeen.UTC(), Packets: st.Packets, Bytes: st.Bytes},
			IPs:     slices.Clone(st.IPs),
		}
		out = c.emit(out, ev)
	}
	clear(c.pending[len(keep):])
	c.pending = keep
	return out
}
