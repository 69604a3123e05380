package lanzone

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// admission decides which accepted connections may take a TLS handshake
// slot, so that no set of LAN hosts can keep enrolled agents out:
//
//   - every address has a handshake rate (token bucket); addresses that never
//     completed a handshake also share one bucket per network prefix (/24 for
//     IPv4, /64 for IPv6), so many addresses of one network count as one;
//   - a connection takes no slot until its first TLS byte arrives (the
//     pre-handshake deadline), so silent connections hold only a descriptor;
//   - unknown sources may hold only part of the slots, and at most a few per
//     prefix; the rest is reserved for addresses that completed a handshake
//     recently (enrolled agents restarting or resuming).
type admission struct {
	addrRate  rate.Limit
	addrBurst int
	netRate   rate.Limit
	netBurst  int
	perPrefix int           // concurrent connections per prefix from unknown sources
	knownFor  time.Duration // how long a completed handshake makes an address known
	maxKeys   int
	// declared reports addresses enrolled endpoints declared elsewhere
	// (Options.KnownSource); nil: none.
	declared func(netip.Addr) bool

	shared  chan struct{} // slots any source may take
	reserve chan struct{} // slots only known sources may take

	mu     sync.Mutex
	addrs  map[netip.Addr]*rate.Limiter
	nets   map[netip.Prefix]*netState
	known  map[netip.Addr]time.Time
	pruned time.Time
}

type netState struct {
	lim     *rate.Limiter
	pending int // unknown connections of this prefix waiting for or holding a slot
}

func newAdmission(o *Options) *admission {
	reserved := max(1, o.MaxHandshakes*o.ReservedHandshakesPct/100)
	shared := max(1, o.MaxHandshakes-reserved)
	return &admission{
		addrRate: rate.Limit(o.HandshakeRate), addrBurst: o.HandshakeBurst,
		netRate: rate.Limit(o.HandshakeRate * 4), netBurst: o.HandshakeBurst * 2,
		perPrefix: o.HandshakesPerPrefix,
		knownFor:  24 * time.Hour,
		maxKeys:   1 << 16,
		shared:    make(chan struct{}, shared),
		reserve:   make(chan struct{}, reserved),
		addrs:     map[netip.Addr]*rate.Limiter{},
		nets:      map[netip.Prefix]*netState{},
		known:     map[netip.Addr]time.Time{},
		declared:  o.KnownSource,
	}
}

// prefixOf returns the network a source address is accounted to.
func prefixOf(a netip.Addr) netip.Prefix {
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// ticket is an admitted connection's claim on the limits; release it once.
type ticket struct {
	a      *admission
	prefix netip.Prefix
	known  bool
	slot   chan struct{} // the semaphore a slot was taken from, if any
	done   bool
}

// enter applies the rate limits to a new connection from src. It returns a
// refusal reason, or a ticket to wait for a handshake slot with.
func (a *admission) enter(src netip.Addr, now time.Time) (*ticket, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prune(now)
	t := &ticket{a: a, prefix: prefixOf(src)}
	if at, ok := a.known[src]; ok && now.Sub(at) < a.knownFor {
		t.known = true
	} else if a.declared != nil && a.declared(src) {
		t.known = true
	}
	al := a.addrs[src]
	if al == nil {
		if len(a.addrs) >= a.maxKeys {
			return nil, "too many sources handshaking at once (sensor busy)"
		}
		al = rate.NewLimiter(a.addrRate, a.addrBurst)
		a.addrs[src] = al
	}
	if !al.AllowN(now, 1) {
		return nil, "too many handshakes from this address"
	}
	if t.known {
		return t, ""
	}
	ns := a.nets[t.prefix]
	if ns == nil {
		if len(a.nets) >= a.maxKeys {
			return nil, "too many networks handshaking at once (sensor busy)"
		}
		ns = &netState{lim: rate.NewLimiter(a.netRate, a.netBurst)}
		a.nets[t.prefix] = ns
	}
	if ns.pending >= a.perPrefix {
		return nil, fmt.Sprintf("too many unfinished handshakes from %s", t.prefix)
	}
	if !ns.lim.AllowN(now, 1) {
		return nil, fmt.Sprintf("too many handshakes from %s", t.prefix)
	}
	ns.pending++
	return t, ""
}

// slotWait waits for a handshake slot until ctx ends. Known sources may take a
// reserved slot; unknown ones only a shared one.
func (t *ticket) slotWait(ctx context.Context) bool {
	if t.known {
		select {
		case t.a.shared <- struct{}{}:
			t.slot = t.a.shared
		case t.a.reserve <- struct{}{}:
			t.slot = t.a.reserve
		case <-ctx.Done():
			return false
		}
		return true
	}
	select {
	case t.a.shared <- struct{}{}:
		t.slot = t.a.shared
		return true
	case <-ctx.Done():
		return false
	}
}

// release gives back the slot and the prefix count.
func (t *ticket) release() {
	if t.done {
		return
	}
	t.done = true
	if t.slot != nil {
		<-t.slot
		t.slot = nil
	}
	if t.known {
		return
	}
	t.a.mu.Lock()
	if ns := t.a.nets[t.prefix]; ns != nil && ns.pending > 0 {
		ns.pending--
	}
	t.a.mu.Unlock()
}

// completed marks src as known: it presented a certificate the sensor holds.
func (a *admission) completed(src netip.Addr, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.known[src]; ok || len(a.known) < a.maxKeys {
		a.known[src] = now
	}
}

// prune drops idle limiters and expired known addresses once a minute.
func (a *admission) prune(now time.Time) {
	if now.Sub(a.pruned) < time.Minute {
		return
	}
	a.pruned = now
	for k, l := range a.addrs {
		if l.TokensAt(now) >= float64(a.addrBurst) {
			delete(a.addrs, k)
		}
	}
	for k, ns := range a.nets {
		if ns.pending == 0 && ns.lim.TokensAt(now) >= float64(a.netBurst) {
			delete(a.nets, k)
		}
	}
	for k, at := range a.known {
		if now.Sub(at) >= a.knownFor {
			delete(a.known, k)
		}
	}
}

// eventLimiter rate-limits auth_failed events: one per (source, reason) per
// window, and at most perSecond in total. What it holds back is counted and
// reported in the next event that goes out.
type eventLimiter struct {
	window    time.Duration
	perSecond int
	maxKeys   int

	mu         sync.Mutex
	last       map[eventKey]time.Time
	held       map[eventKey]int
	second     time.Time
	inSecond   int
	heldGlobal int
}

type eventKey struct {
	src    netip.Addr
	reason string
}

func newEventLimiter(window time.Duration, perSecond int) *eventLimiter {
	return &eventLimiter{window: window, perSecond: perSecond, maxKeys: 10000, last: map[eventKey]time.Time{}, held: map[eventKey]int{}}
}

// admit reports whether an event for (src, reason) may go out now, and if so
// how many similar events were held back since the previous one (for this
// key, and in total because of the global cap).
func (l *eventLimiter) admit(src netip.Addr, reason string, now time.Time) (ok bool, heldKey, heldGlobal int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := eventKey{src, reason}
	if t, seen := l.last[k]; seen && now.Sub(t) < l.window {
		l.held[k]++
		return false, 0, 0
	}
	if now.Sub(l.second) >= time.Second {
		l.second, l.inSecond = now, 0
	}
	if l.inSecond >= l.perSecond {
		l.heldGlobal++
		return false, 0, 0
	}
	if len(l.last) >= l.maxKeys {
		for key, t := range l.last {
			if now.Sub(t) >= l.window {
				delete(l.last, key)
				delete(l.held, key)
			}
		}
		if len(l.last) >= l.maxKeys {
			l.heldGlobal++
			return false, 0, 0
		}
	}
	l.inSecond++
	l.last[k] = now
	heldKey, heldGlobal = l.held[k], l.heldGlobal
	delete(l.held, k)
	l.heldGlobal = 0
	return true, heldKey, heldGlobal
}
