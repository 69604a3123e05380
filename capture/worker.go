package capture

import (
	"net/netip"
	"time"
)

// DefaultLANPort is the TCP port of the sensor's LAN zone, where agents
// keep their heartbeat connections.
const DefaultLANPort = 8347

// Options tune the per-packet work. The zero value means the defaults.
type Options struct {
	// LANPort is the sensor's own LAN-zone TCP port. Every TCP connection
	// to it is reported as a flow start the first time it is seen (not only
	// on its SYN) and then every LANRefresh while it is active, so the correlator learns which MAC carries each
	// endpoint's heartbeat connection even when capture started after the
	// connection did. 0 means DefaultLANPort; -1 turns this off.
	LANPort int
	// LANRefresh is how often an ongoing heartbeat-channel connection is
	// reported again as a flow start, so the correlator's evidence of which
	// MAC carries it stays fresh (default 10 s).
	LANRefresh time.Duration
	// FlowTableSize bounds the UDP / heartbeat-channel 5-tuples remembered
	// per worker (default 262144, rounded up to a power of two; 16 bytes
	// each).
	FlowTableSize int
	// FlowIdle is how long a 5-tuple must be silent before its next packet
	// starts a new flow (default 2 minutes).
	FlowIdle time.Duration
	// MaxFlowsPerPeriod bounds the flow starts one worker reports per
	// period (default 16384); the excess is counted, not reported.
	MaxFlowsPerPeriod int
	// Period is how often summaries go to the sink (default 250 ms, which
	// is also the shortest allowed).
	Period time.Duration
}

func (o Options) withDefaults() Options {
	if o.LANPort == 0 {
		o.LANPort = DefaultLANPort
	}
	if o.LANRefresh <= 0 {
		o.LANRefresh = 10 * time.Second
	}
	if o.FlowTableSize <= 0 {
		o.FlowTableSize = 1 << 18
	}
	if o.FlowIdle <= 0 {
		o.FlowIdle = 2 * time.Minute
	}
	if o.MaxFlowsPerPeriod <= 0 {
		o.MaxFlowsPerPeriod = 16384
	}
	if o.Period < 250*time.Millisecond {
		o.Period = 250 * time.Millisecond
	}
	return o
}

// period is one worker's accounting between two reporting ticks.
type period struct {
	macs         *macTable
	flows        []flowRec
	evidence     []timedEvidence
	packets      uint64 // frames handled
	bytes        uint64 // their wire length
	runts        uint64 // frames too short for an Ethernet header
	flowsDropped uint64 // flow starts over MaxFlowsPerPeriod
	first, last  int64  // packet time span, Unix nanoseconds
}

type timedEvidence struct {
	Evidence
	Time int64
}

func newPeriod() *period { return &period{macs: newMACTable(256)} }

func (p *period) reset() {
	p.macs.reset()
	p.flows = p.flows[:0]
	p.evidence = p.evidence[:0]
	p.packets, p.bytes, p.runts, p.flowsDropped, p.first, p.last = 0, 0, 0, 0, 0, 0
}

// worker accounts frames from one source. Everything it touches per packet
// is its own: no locks, no channels.
type worker struct {
	opts    Options
	lanPort uint16
	h       Header
	cur     *period
	flows   *flowTable
	ctl     *ControlDecoder
	ev      []Evidence
	hb      *flowTable // heartbeat connections and when each was last reported
	// fold puts control-plane evidence straight into the MAC table instead
	// of queueing it for a sink (offline replay without one).
	fold bool
}

func newWorker(o Options) *worker {
	o = o.withDefaults()
	w := &worker{
		opts:  o,
		cur:   newPeriod(),
		flows: newFlowTable(o.FlowTableSize, o.FlowIdle),
		ctl:   NewControlDecoder(),
		hb:    newFlowTable(maxHeartbeatChannels, o.LANRefresh),
	}
	if o.LANPort > 0 && o.LANPort < 65536 {
		w.lanPort = uint16(o.LANPort)
	}
	return w
}

// packet accounts one frame: data as captured (possibly cut at the snap
// length), wireLen its length on the wire, ts its time in Unix nanoseconds.
func (w *worker) packet(data []byte, wireLen int, ts int64) {
	if !ParseHeader(data, &w.h) {
		w.cur.runts++
		return
	}
	w.account(&w.h, data, wireLen, ts)
}

// batchSize is the most frames a ring reader hands out at once.
const batchSize = 32

// batch accounts frames handed out together (a run of one ring block).
// A two-pass variant that parsed a batch and loaded its table slots before
// accounting it, to overlap the cache misses, measured no faster here
// (BenchmarkWorkerBatch against BenchmarkWorkerPacket, and the live
// benchmark), so this is a plain loop.
func (w *worker) batch(ps []Packet) {
	for i := range ps {
		w.packet(ps[i].Data, ps[i].WireLen, ps[i].Time)
	}
}

// account adds one parsed frame to the period.
func (w *worker) account(h *Header, data []byte, wireLen int, ts int64) {
	p := w.cur
	if p.packets == 0 || ts < p.first {
		p.first = ts
	}
	if ts > p.last {
		p.last = ts
	}
	p.packets++
	p.bytes += uint64(wireLen)

	t := p.macs
	si := t.index(h.Src)
	di := t.index(h.Dst)
	s := &t.entries[si]
	if s.txPackets == 0 || ts < s.txFirst {
		s.txFirst = ts
	}
	if ts > s.txLast {
		s.txLast = ts
	}
	s.txPackets++
	s.txBytes += uint64(wireLen)
	d := &t.entries[di]
	if d.rxPackets == 0 || ts < d.rxFirst {
		d.rxFirst = ts
	}
	if ts > d.rxLast {
		d.rxLast = ts
	}
	d.rxPackets++
	d.rxBytes += uint64(wireLen)

	if h.Src&(1<<40) == 0 { // a unicast sender: note its source address
		switch h.IPVersion {
		case 4:
			if h.Src4 != 0 && (!s.hasIP4 || s.lastIP4 != h.Src4) {
				s.hasIP4, s.lastIP4 = true, h.Src4
				s.addIP(addrOf4(h.Src4))
			}
		case 6:
			if (!s.hasIP6 || s.lastIP6 != h.Src6) && h.Src6 != ([16]byte{}) {
				s.hasIP6, s.lastIP6 = true, h.Src6
				s.addIP(netip.AddrFrom16(h.Src6))
			}
		}
	}

	if h.HasPorts {
		w.flow(h, ts)
	}
	if isControl(h) {
		w.control(data, ts)
	}
}

func (w *worker) flow(h *Header, ts int64) {
	start := false
	switch h.Proto {
	case ProtoTCP:
		syn := h.TCPFlags&(tcpFlagSYN|tcpFlagACK) == tcpFlagSYN
		if w.lanPort != 0 && h.DstPort == w.lanPort {
			start = w.heartbeatChannel(flowHash(h), ts) || syn
		} else {
			start = syn
		}
	case ProtoUDP:
		start = w.flows.seen(flowHash(h), ts)
	}
	if !start {
		return
	}
	if len(w.cur.flows) >= w.opts.MaxFlowsPerPeriod {
		w.cur.flowsDropped++
		return
	}
	w.cur.flows = append(w.cur.flows, recordFlow(h, ts))
}

// maxHeartbeatChannels is the size of the table of heartbeat connections
// one worker remembers; a connection pushed out of it by others is reported
// once more.
const maxHeartbeatChannels = 1 << 16

// heartbeatChannel reports a connection to the LAN-zone port the first time
// it is seen and then every LANRefresh while it carries packets; k is its
// flowHash.
func (w *worker) heartbeatChannel(k uint64, ts int64) bool {
	return w.hb.due(k, ts)
}

// control runs the control-plane decoder on a frame the parser flagged.
func (w *worker) control(data []byte, ts int64) {
	w.ev = w.ctl.Decode(data, w.ev[:0])
	for _, e := range w.ev {
		if !w.fold {
			w.cur.evidence = append(w.cur.evidence, timedEvidence{Evidence: e, Time: ts})
		}
		if e.Hostname != "" || (w.fold && e.IP.IsValid()) {
			m := &w.cur.macs.entries[w.cur.macs.index(e.MAC)]
			m.addHostname(e.Hostname)
			if w.fold && e.IP.IsValid() {
				m.addIP(e.IP)
			}
		}
	}
}

// take hands over the current period and starts a fresh one, recycled from
// spare when it has one.
func (w *worker) take(spare *period) *period {
	p := w.cur
	if spare == nil {
		spare = newPeriod()
	}
	w.cur = spare
	return p
}
