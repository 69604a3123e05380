package daemon

import (
	"context"
	"sync"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// eventQueue decouples the engine, which must never block, from the
// pipeline that stores and forwards events. It holds at most limit events;
// past that the oldest are dropped and counted, so a stalled disk costs
// memory only up to a bound.
type eventQueue struct {
	mu      sync.Mutex
	wake    chan struct{}
	items   []schema.Event
	limit   int
	dropped uint64
}

func newEventQueue(limit int) *eventQueue {
	return &eventQueue{wake: make(chan struct{}, 1), limit: limit}
}

// push appends events; it never blocks.
func (q *eventQueue) push(evs []schema.Event) {
	q.mu.Lock()
	q.items = append(q.items, evs...)
	if over := len(q.items) - q.limit; over > 0 {
		q.dropped += uint64(over)
		q.items = append(q.items[:0], q.items[over:]...)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take waits for events and returns all of them, with the count dropped
// since the last call. It returns nil when ctx ends and the queue is empty.
func (q *eventQueue) take(ctx context.Context) ([]schema.Event, uint64) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 || q.dropped > 0 {
			items, dropped := q.items, q.dropped
			q.items, q.dropped = nil, 0
			q.mu.Unlock()
			return items, dropped
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return nil, 0
		}
	}
}

// len returns the number of queued events.
func (q *eventQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
