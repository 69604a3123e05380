package capture

import (
	"math/rand/v2"
	"net/netip"
	"time"
	"unsafe"

	"github.com/tapbeat/tapbeat/lanzone/wire"
)

// DefaultLANPort is the TCP port of the sensor's LAN zone, where agents
// keep their heartbeat connections.
const DefaultLANPort = wire.DefaultPort

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
	// Period is how often flow starts and bindings go to the sink (default
	// 250 ms, which is also the shortest allowed).
	Period time.Duration
	// TrafficPeriod is how often per-MAC traffic summaries go to the sink
	// (default 1 s, rounded up to a whole number of Periods). A summary
	// costs a pass over every active MAC however little it sent, while flow
	// starts and bindings cost only what happened, so the latter, which
	// policy alerts wait for, go out more often.
	TrafficPeriod time.Duration
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
	if o.TrafficPeriod <= 0 {
		o.TrafficPeriod = time.Second
	}
	o.TrafficPeriod = time.Duration(o.trafficEvery()) * o.Period
	return o
}

// trafficEvery is how many Periods make a TrafficPeriod (at least one).
func (o Options) trafficEvery() uint64 {
	return uint64(max(1, (o.TrafficPeriod+o.Period-1)/o.Period))
}

// period is one worker's accounting between two reporting ticks, as handed
// to the reporter; stations is empty except at the end of a traffic period.
type period struct {
	stations     []macStats   // every station active in the period
	ips          []netip.Addr // the stations' addresses, shared by their ips slices
	flows        []flowRec
	evidence     []timedEvidence // control-plane evidence and traffic bindings due
	packets      uint64          // frames handled
	bytes        uint64          // their wire length
	runts        uint64          // frames too short for an Ethernet header
	flowsDropped uint64          // flow starts over MaxFlowsPerPeriod
	first, last  int64           // packet time span, Unix nanoseconds
}

type timedEvidence struct {
	Evidence
	Time int64
}

func (p *period) reset() {
	clear(p.stations) // drop references to addresses and host names
	p.stations = p.stations[:0]
	p.ips = p.ips[:0]
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
	hs      [batchSize]Header // a batch's headers, parsed ahead
	ok      [batchSize]bool   // hs[i] holds a parsed header
	hashes  [batchSize]uint64 // flowHash of hs[i] when keyed, else 0
	// lines holds the cache lines batch asks for ahead of accounting.
	lines   [3 * batchSize]unsafe.Pointer
	touched uint64 // keeps the loading fallback of prefetchLines from being optimised away
	cur     *period
	macs    *stationTable
	// rx also counts frames by destination MAC; only replay reports them.
	rx    bool
	flows *flowTable
	// seed keys flowHash, so no host can pick 5-tuples that share a flow
	// bucket (and push each other out) or a tag.
	seed uint64
	ctl  *ControlDecoder
	ev   []Evidence
	hb   *flowTable // heartbeat connections and when each was last reported
	// fold puts control-plane evidence straight into the MAC table instead
	// of queueing it for a sink (offline replay without one).
	fold bool
}

// initialStations is how many stations a worker's table holds before it
// first grows: a few thousand MACs, a large office LAN, at 3 MiB.
const initialStations = 8192

// initialEvidence is the evidence a new period has room for before it
// grows.
const initialEvidence = 1024

func newWorker(o Options) *worker {
	o = o.withDefaults()
	w := &worker{
		opts:  o,
		macs:  newStationTable(initialStations),
		flows: newFlowTable(o.FlowTableSize, o.FlowIdle),
		ctl:   NewControlDecoder(),
		hb:    newFlowTable(maxHeartbeatChannels, o.LANRefresh),
		seed:  rand.Uint64(),
	}
	w.cur = w.newPeriod()
	if o.LANPort > 0 && o.LANPort < 65536 {
		w.lanPort = uint16(o.LANPort)
	}
	// The tables are sized from the start (the station table for
	// initialStations), so their pages are mapped now rather than a
	// fault at a time while the first frames arrive.
	touch(w.flows.buckets)
	touch(w.hb.buckets)
	touch(w.macs.hot)
	touch(w.macs.cold)
	return w
}

// newPeriod returns an empty period with room, already mapped, for a full
// period's flow starts and some evidence.
func (w *worker) newPeriod() *period {
	p := &period{
		flows:    make([]flowRec, 0, w.opts.MaxFlowsPerPeriod),
		evidence: make([]timedEvidence, 0, initialEvidence),
	}
	touch(p.flows)
	touch(p.evidence)
	return p
}

// packet accounts one frame: data as captured (possibly cut at the snap
// length), wireLen its length on the wire, ts its time in Unix nanoseconds.
func (w *worker) packet(data []byte, wireLen int, ts int64) {
	if !ParseHeader(data, &w.h) {
		w.cur.runts++
		return
	}
	var hash uint64
	if w.keyed(&w.h) {
		hash = flowHash(&w.h, w.seed)
	}
	w.account(&w.h, data, wireLen, ts, hash)
}

// batchSize is the most frames a ring reader hands out at once.
const batchSize = 32

// aheadBytes is how far a reader of frames laid end to end (a ring block, a
// mapped pcap) asks for ahead before walking them: about a batch of small
// frames.
const aheadBytes = 16 << 10

// prefetchAhead asks for the cache lines of the aheadBytes of b from off on,
// before a reader walks the frames or records laid end to end there. Each
// one says where the next begins, so walking them would wait for their
// cache lines one at a time; requested together, they arrive together.
// done is how far earlier calls have asked for: lines before it are not
// asked for again (the caller resets it to 0 when b changes).
func prefetchAhead(b []byte, off int, done *int) byte {
	from := max(off, *done)
	stop := min(len(b), off+aheadBytes)
	if from >= stop {
		return 0
	}
	*done = stop
	return prefetchBytes(b[from:stop])
}

// batch accounts frames handed out together (a run of one ring block) in
// two passes. The first parses every frame and asks for the cache lines
// the second will need (the sender's station, the receiver's when counting
// by receiver, and the flow bucket of a UDP or heartbeat-channel frame)
// without waiting for them, so their misses overlap with each other and
// with the accounting instead of coming one after another; the second does
// the accounting.
func (w *worker) batch(ps []Packet) {
	hs, t := &w.hs, w.macs
	lines := w.lines[:0]
	for i := range ps {
		h := &hs[i]
		ok := ParseHeader(ps[i].Data, h)
		w.ok[i], w.hashes[i] = ok, 0
		lines = append(lines, unsafe.Pointer(&t.hot[t.slot(h.Src|macPresent)]))
		if w.rx {
			rx := t.slot(h.Dst | macPresent)
			lines = append(lines, unsafe.Pointer(&t.hot[rx]), unsafe.Pointer(&t.cold[rx].rxPackets))
		}
		if ok && w.keyed(h) {
			hash := flowHash(h, w.seed)
			w.hashes[i] = hash
			if h.Proto == ProtoUDP {
				lines = append(lines, unsafe.Pointer(&w.flows.buckets[w.flows.bucket(hash)]))
			} else {
				lines = append(lines, unsafe.Pointer(&w.hb.buckets[w.hb.bucket(hash)]))
			}
		}
	}
	w.touched += uint64(prefetchLines(lines))
	for i := range ps {
		if !w.ok[i] {
			w.cur.runts++
			continue
		}
		w.account(&hs[i], ps[i].Data, ps[i].WireLen, ps[i].Time, w.hashes[i])
	}
}

// keyed tells whether a frame's 5-tuple is looked up in a flow table: UDP
// datagrams and TCP segments to the LAN-zone port.
func (w *worker) keyed(h *Header) bool {
	return h.HasPorts && (h.Proto == ProtoUDP || h.Proto == ProtoTCP && w.lanPort != 0 && h.DstPort == w.lanPort)
}

// account adds one parsed frame to the period; hash is its flowHash when
// keyed.
func (w *worker) account(h *Header, data []byte, wireLen int, ts int64, hash uint64) {
	p := w.cur
	if p.packets == 0 || ts < p.first {
		p.first = ts
	}
	if ts > p.last {
		p.last = ts
	}
	p.packets++
	p.bytes += uint64(wireLen)

	t := w.macs
	si := t.list(h.Src, ts)
	s := &t.hot[si]
	s.count(wireLen, ts)

	if h.Src&(1<<40) == 0 { // a unicast sender: note its source address
		switch h.IPVersion {
		case 4:
			if m := ipMark4(h.Src4); h.Src4 != 0 && s.lastIP != m {
				s.lastIP = m
				w.noteSource(si, h.Src, m, addrOf4(h.Src4), ts)
			}
		case 6:
			if h.Src6 != ([16]byte{}) {
				if m := ipMark6(&h.Src6, t.seed); s.lastIP != m {
					s.lastIP = m
					w.noteSource(si, h.Src, m, netip.AddrFrom16(h.Src6), ts)
				}
			}
		}
	}
	decode := isControl(h) && !(h.EtherType == EtherTypeARP && s.repeatsARP(data, h))
	if w.rx { // after the last use of s: this may move the stations
		w.received(h.Dst, wireLen, ts)
	}

	if h.HasPorts {
		w.flow(h, ts, hash)
	}
	if decode {
		w.control(data, ts)
	}
}

// noteSource records that the station at index si (MAC mac) sent from
// addr, marked m, at ts: the address joins the station's period, and the
// use becomes a traffic binding when due. It runs only when a frame's
// source address differs from the last one the station used in the
// traffic period, not for every frame.
func (w *worker) noteSource(si int, mac, m uint64, addr netip.Addr, ts int64) {
	c := &w.macs.cold[si]
	c.addIP(addr)
	if !w.fold && c.bindingDue(m, ts) {
		w.cur.evidence = append(w.cur.evidence, timedEvidence{
			Evidence: Evidence{MAC: mac, IP: addr, Source: SourceTraffic}, Time: ts})
	}
}

// received counts a frame addressed to dst.
func (w *worker) received(dst uint64, wireLen int, ts int64) {
	t := w.macs
	c := &t.cold[t.list(dst, ts)]
	if c.rxPackets == 0 || ts < c.rxFirst {
		c.rxFirst = ts
	}
	if ts > c.rxLast {
		c.rxLast = ts
	}
	c.rxPackets++
	c.rxBytes += uint64(wireLen)
}

func (w *worker) flow(h *Header, ts int64, hash uint64) {
	start := false
	switch h.Proto {
	case ProtoTCP:
		syn := h.TCPFlags&(tcpFlagSYN|tcpFlagACK) == tcpFlagSYN
		if w.lanPort != 0 && h.DstPort == w.lanPort {
			start = w.heartbeatChannel(hash, ts) || syn
		} else {
			start = syn
		}
	case ProtoUDP:
		start = w.flows.seen(hash, ts)
	}
	if !start {
		return
	}
	if len(w.cur.flows) >= w.opts.MaxFlowsPerPeriod {
		w.cur.flowsDropped++
		return
	}
	w.cur.flows = appendFlow(w.cur.flows, h, ts)
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
			i := w.macs.list(e.MAC, ts)
			w.macs.cold[i].addHostname(e.Hostname)
			if w.fold && e.IP.IsValid() {
				w.macs.cold[i].addIP(e.IP)
			}
		}
	}
}

// take hands over the current period and starts a fresh one, recycled from
// spare when it has one. The period carries the stations' traffic only when
// traffic is set; otherwise they go on counting into the next.
func (w *worker) take(spare *period, traffic bool) *period {
	p := w.cur
	if traffic {
		p.stations, p.ips = w.macs.handOver(p.stations, p.ips)
	}
	if spare == nil {
		spare = w.newPeriod()
	}
	w.cur = spare
	return p
}
