package capture

import (
	"slices"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Sink receives what capture learns. sensor.Engine provides the first three
// methods; the daemon's fan-out adds Bindings for the history. Live capture
// calls Traffic, FlowStarts and Bindings from one goroutine and
// CaptureHealth from one goroutine per interface, so a Sink must be safe
// for concurrent use. Slices passed in (and those inside their elements,
// such as TrafficSummary.IPs) are valid only during the call: capture
// reuses them, and a Sink copies what it keeps.
type Sink interface {
	// Traffic gets per-MAC summaries every Options.TrafficPeriod (1 s by
	// default), merged from all workers. LastSeen comes from packet
	// timestamps.
	Traffic([]schema.TrafficSummary)
	// FlowStarts gets, every Options.Period (250 ms by default) in
	// batches of at most flowBatch, TCP SYNs, first UDP datagrams of a
	// 5-tuple after an idle period, and every TCP connection to the
	// LAN-zone port when first seen and again every Options.LANRefresh
	// while it is active.
	FlowStarts([]schema.Flow)
	// CaptureHealth gets each interface's report every tick.
	CaptureHealth(schema.CaptureHealth)
	// Bindings gets IP<->MAC evidence from ARP, DHCP, NDP and traffic,
	// every Options.Period.
	Bindings([]schema.Binding)
}

// trafficRefresh is how often a MAC's use of a source address is reported
// again as a "traffic" binding while it goes on. Each worker keeps this
// memory in its station table, so with several workers a binding may be
// reported once by each of them.
const trafficRefresh = 5 * time.Minute

// aggregate is the periods of every worker merged for one report.
type aggregate struct {
	macs     *macTable
	flows    []flowRec
	evidence []timedEvidence
	merged   bool // a period was merged since the last reset
}

func (a *aggregate) reset() {
	a.macs.reset()
	a.flows = a.flows[:0]
	a.evidence = a.evidence[:0]
	a.merged = false
}

// reporter merges worker periods and hands the result to a Sink.
type reporter struct {
	sink Sink
	agg  *aggregate
	// held is the report's only period so far, not merged into agg: with
	// one worker (the usual case) a report goes out straight from the
	// period, and merging costs nothing.
	held *period
	// release, when set, gets every period once the reporter is done
	// with it.
	release func(*period)
	// Buffers handed to the sink, reused from one report to the next.
	traffic []schema.TrafficSummary
	binds   []schema.Binding
	flowBuf []schema.Flow
	// total, when set, accumulates every period for a final report.
	total *macTable
	// Counters over the reporter's life.
	packets, bytes, runts, flows, flowsDropped uint64
}

func newReporter(sink Sink, keepTotal bool) *reporter {
	r := &reporter{sink: sink, agg: &aggregate{macs: newMACTable(256)}}
	if keepTotal {
		r.total = newMACTable(1024)
	}
	return r
}

// add merges a worker's period into the pending report.
func (r *reporter) add(p *period) {
	a := r.agg
	if r.total != nil {
		r.total.mergeStations(p.stations)
	}
	keep := false
	switch {
	case r.held == nil && !a.merged:
		r.held, keep = p, true
	case r.held != nil:
		a.merge(r.held)
		r.done(r.held)
		r.held = nil
		fallthrough
	default:
		a.merge(p)
	}
	r.packets += p.packets
	r.bytes += p.bytes
	r.runts += p.runts
	r.flows += uint64(len(p.flows))
	r.flowsDropped += p.flowsDropped
	if !keep {
		r.done(p)
	}
}

// merge adds p to a.
func (a *aggregate) merge(p *period) {
	a.merged = true
	a.macs.mergeStations(p.stations)
	a.flows = append(a.flows, p.flows...)
	a.evidence = append(a.evidence, p.evidence...)
}

func (r *reporter) done(p *period) {
	if r.release != nil {
		r.release(p)
	}
}

// flowBatch is the most flow starts handed to Sink.FlowStarts at once: a
// period's flow starts are converted and handed over a batch at a time, so
// the converted batch is still in the cache when the sink reads it.
const flowBatch = 512

// emit hands the pending report to the sink and starts a new one.
func (r *reporter) emit() {
	a := r.agg
	stations, flows, evidence := a.macs.entries, a.flows, a.evidence
	if r.held != nil {
		stations, flows, evidence = r.held.stations, r.held.flows, r.held.evidence
	}
	defer func() {
		if r.held != nil {
			r.done(r.held)
			r.held = nil
		}
		a.reset()
	}()
	if r.sink == nil {
		return
	}
	traffic, binds := r.traffic[:0], r.binds[:0]
	for i := range stations {
		e := &stations[i]
		mac := e.mac()
		if e.txPackets == 0 || mac&(1<<40) != 0 {
			continue
		}
		ts := schema.TrafficSummary{
			MAC:       schema.MACFromUint64(mac),
			Packets:   e.txPackets,
			Bytes:     e.txBytes,
			FirstSeen: time.Unix(0, e.txFirst).UTC(),
			LastSeen:  time.Unix(0, e.txLast).UTC(),
		}
		if len(e.ips) > 0 {
			ts.IPs = e.ips // valid until the report is reset, after the sink's calls
		}
		traffic = append(traffic, ts)
	}
	for _, ev := range evidence {
		if !ev.IP.IsValid() {
			continue
		}
		binds = append(binds, schema.Binding{
			MAC: schema.MACFromUint64(ev.MAC), IP: ev.IP, Hostname: ev.Hostname,
			Source: ev.Source, Time: time.Unix(0, ev.Time).UTC(),
		})
	}
	if len(traffic) > 0 {
		r.sink.Traffic(traffic)
	}
	for len(flows) > 0 {
		n := min(len(flows), flowBatch)
		out := slices.Grow(r.flowBuf[:0], n)[:n]
		for i := range out {
			out[i] = flows[i].flow()
		}
		r.sink.FlowStarts(out)
		r.flowBuf, flows = out, flows[n:]
	}
	if len(binds) > 0 {
		r.sink.Bindings(binds)
	}
	r.traffic, r.binds = traffic, binds
}
