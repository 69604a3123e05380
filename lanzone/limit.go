package lanzone

import (
	"net/netip"
	"sync"
	"time"
)

// sourceLimiter is a token bucket per source address for TLS handshakes.
type sourceLimiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	pruned  time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newSourceLimiter(rate float64, burst int) *sourceLimiter {
	return &sourceLimiter{rate: rate, burst: float64(burst), buckets: map[netip.Addr]*bucket{}}
}

// allow takes a token for src, reporting false when its bucket is empty.
func (l *sourceLimiter) allow(src netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.pruned) > time.Minute {
		full := time.Duration(l.burst / l.rate * float64(time.Second))
		for a, b := range l.buckets {
			if now.Sub(b.last) > full {
				delete(l.buckets, a)
			}
		}
		l.pruned = now
	}
	b, ok := l.buckets[src]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[src] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * l.rate
	if b.tokens > l.burst {
		b.tokens = l.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
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
