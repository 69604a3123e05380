package web

import (
	"sync"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// Hub fans stored events out to live views. A subscriber that falls behind
// loses events (its page says so and reloads) rather than slowing the
// daemon's pipeline.
type Hub struct {
	mu     sync.Mutex
	subs   map[chan []schema.Event]struct{}
	closed bool
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{subs: map[chan []schema.Event]struct{}{}} }

// maxSubscribers bounds the live connections.
const maxSubscribers = 256

// Subscribe returns a channel of event batches, closed when the hub
// closes or the subscriber fell behind; nil when too many are subscribed.
func (h *Hub) Subscribe() chan []schema.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.subs) >= maxSubscribers {
		return nil
	}
	c := make(chan []schema.Event, 64)
	h.subs[c] = struct{}{}
	return c
}

// Unsubscribe removes c.
func (h *Hub) Unsubscribe(c chan []schema.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[c]; ok {
		delete(h.subs, c)
		close(c)
	}
}

// Publish sends evs to every subscriber without blocking.
func (h *Hub) Publish(evs []schema.Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		select {
		case c <- evs:
		default:
			delete(h.subs, c)
			close(c)
		}
	}
}

// Close ends every subscription.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.subs {
		delete(h.subs, c)
		close(c)
	}
}
