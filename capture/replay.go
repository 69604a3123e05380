package capture

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// MACReport is what a replay saw of one MAC: frames it sent (by source
// MAC) and frames addressed to it, counted at wire length.
type MACReport struct {
	MAC       schema.MAC   `json:"mac"`
	Packets   uint64       `json:"packets"`
	Bytes     uint64       `json:"bytes"`
	RxPackets uint64       `json:"rx_packets"`
	RxBytes   uint64       `json:"rx_bytes"`
	IPs       []netip.Addr `json:"ips"`
	// IPsNotListed counts source addresses beyond the 16 kept per MAC.
	IPsNotListed uint64 `json:"ips_not_listed,omitempty"`
	// FirstSeen and LastSeen span every frame from or to the MAC.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Hostnames []string  `json:"hostnames"`
}

// Report is the result of a replay.
type Report struct {
	MACs    []MACReport // sorted by MAC
	Records uint64      // records read
	Packets uint64      // frames accounted (records less runts)
	Bytes   uint64      // their wire length
	Runts   uint64      // records shorter than an Ethernet header
	Flows   uint64      // flow starts seen
}

// Replay runs src through the capture pipeline with packet timestamps as the
// clock. When sink is not nil it gets what live capture would report, every
// opts.Period of packet time (traffic summaries every opts.TrafficPeriod).
// The report covers every record read, even when src ends with an error,
// which Replay then returns alongside.
func Replay(ctx context.Context, src Source, sink Sink, opts Options) (*Report, error) {
	w := newWorker(opts)
	w.fold = sink == nil
	w.rx = true
	var rep *reporter
	var spare *period // a period the reporter is done with, for the next
	if sink != nil {
		rep = newReporter(sink, true)
		rep.release = func(p *period) { p.reset(); spare = p }
	}
	take := func(traffic bool) *period {
		p := w.take(spare, traffic)
		spare = nil
		return p
	}
	period, trafficPeriod := int64(w.opts.Period), int64(w.opts.TrafficPeriod)
	var next, nextTraffic int64
	var ps [batchSize]Packet
	br, batched := src.(batchReader)
	var records, n uint64
	var err error
	for {
		if n++; n&127 == 0 {
			if err = ctx.Err(); err != nil {
				break
			}
		}
		k := 0
		if batched {
			k, err = br.readBatch(ps[:])
		} else if err = src.Read(&ps[0]); err == nil {
			k = 1
		}
		records += uint64(k)
		start := 0
		if rep != nil {
			// A period ends at the first frame past it.
			for i := range k {
				if next == 0 {
					next, nextTraffic = ps[i].Time+period, ps[i].Time+trafficPeriod
				}
				traffic := ps[i].Time >= nextTraffic
				if traffic || ps[i].Time >= next {
					w.batch(ps[start:i])
					rep.add(take(traffic))
					rep.emit()
					next, start = ps[i].Time+period, i
					if traffic {
						nextTraffic = ps[i].Time + trafficPeriod
					}
				}
			}
		}
		w.batch(ps[start:k])
		if err != nil {
			break
		}
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	var final []macStats
	r := &Report{Records: records}
	if rep != nil {
		rep.add(take(true))
		rep.emit()
		final = rep.total.entries
		r.Packets, r.Bytes, r.Runts, r.Flows = rep.packets, rep.bytes, rep.runts, rep.flows
	} else {
		final, _ = w.macs.handOver(nil, nil)
		r.Packets, r.Bytes, r.Runts, r.Flows = w.cur.packets, w.cur.bytes, w.cur.runts, uint64(len(w.cur.flows))+w.cur.flowsDropped
	}
	r.MACs = macReports(final)
	if err != nil {
		return r, fmt.Errorf("replay: %w", err)
	}
	return r, nil
}

func macReports(stations []macStats) []MACReport {
	out := make([]MACReport, 0, len(stations))
	for i := range stations {
		e := &stations[i]
		if e.txPackets == 0 && e.rxPackets == 0 {
			continue
		}
		m := MACReport{
			MAC:     schema.MACFromUint64(e.mac()),
			Packets: e.txPackets, Bytes: e.txBytes,
			RxPackets: e.rxPackets, RxBytes: e.rxBytes,
			IPs:          slices.Clone(e.ips),
			IPsNotListed: e.ipOverflow,
			Hostnames:    slices.Clone(e.hostnames),
		}
		if m.IPs == nil {
			m.IPs = []netip.Addr{}
		}
		if m.Hostnames == nil {
			m.Hostnames = []string{}
		}
		slices.SortFunc(m.IPs, func(a, b netip.Addr) int { return a.Compare(b) })
		first, last := e.txFirst, e.txLast
		if e.txPackets == 0 {
			first, last = e.rxFirst, e.rxLast
		} else if e.rxPackets > 0 {
			first, last = min(first, e.rxFirst), max(last, e.rxLast)
		}
		m.FirstSeen, m.LastSeen = time.Unix(0, first).UTC(), time.Unix(0, last).UTC()
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b MACReport) int {
		return cmp.Compare(a.MAC.Uint64(), b.MAC.Uint64())
	})
	return out
}
