package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tapbeat/tapbeat/lanzone/pki"
)

// trustSync keeps the local trust-store journal and the fleet's journal
// stream in step. Lines are identified by their SHA-256: a line the stream
// holds is appended locally once; a local line (enroll, revoke on this
// sensor) is published once, with its hash as Msg-Id. The local listener
// re-reads the journal every second, so a revocation made anywhere closes
// the endpoint's connection here within about two seconds.
type trustSync struct {
	f        *Fleet
	cons     jetstream.ConsumeContext
	mu       sync.Mutex
	known    map[string]bool // hashes of lines in the local journal or the stream
	offset   int64           // local journal read position
	caughtUp bool            // the stream was read up to where it stood at start
	pending  [][]byte
	inStream map[string]bool // hashes the stream is known to hold
	incoming [][]byte        // lines from the stream waiting for the flusher
	wake     chan struct{}   // incoming has lines
	quit     chan struct{}   // stop closes it
	flushed  chan struct{}   // closed when the flusher has returned
}

func lineHash(l []byte) string {
	s := sha256.Sum256(l)
	return hex.EncodeToString(s[:])
}

func startTrustSync(ctx context.Context, f *Fleet) (*trustSync, error) {
	t := &trustSync{f: f, known: map[string]bool{}, inStream: map[string]bool{},
		wake: make(chan struct{}, 1), quit: make(chan struct{}), flushed: make(chan struct{})}
	lines, off, err := pki.JournalLines(f.opts.Dir, 0)
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		t.known[lineHash(l)] = true
	}
	// Local lines are published after the stream has been read, so a line
	// already in the stream is not published again.
	t.pending, t.offset = lines, off
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := f.js.Stream(cctx, StreamTrust)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamTrust, err)
	}
	info, err := st.Info(cctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", StreamTrust, err)
	}
	last := info.State.LastSeq
	if last == 0 {
		t.caughtUp = true
	}
	c, err := st.OrderedConsumer(cctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("stream %s: consumer: %w", StreamTrust, err)
	}
	t.cons, err = c.Consume(func(m jetstream.Msg) {
		t.receive(m.Data())
		if md, err := m.Metadata(); err == nil && md.Sequence.Stream >= last {
			t.mu.Lock()
			t.caughtUp = true
			t.mu.Unlock()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: consume: %w", StreamTrust, err)
	}
	go t.flush()
	return t, nil
}

// receive queues a line from the fleet for the local journal; the flusher
// appends what has queued in one write (one fsync per batch, not per line:
// a bulk enrollment elsewhere arrives as thousands of lines).
func (t *trustSync) receive(line []byte) {
	h := lineHash(line)
	t.mu.Lock()
	t.inStream[h] = true
	if t.known[h] {
		t.mu.Unlock()
		return
	}
	t.known[h] = true
	t.incoming = append(t.incoming, line)
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// flush appends the queued lines to the local journal until quit closes.
func (t *trustSync) flush() {
	defer close(t.flushed)
	for {
		select {
		case <-t.quit:
			return
		case <-t.wake:
		}
		t.mu.Lock()
		batch := t.incoming
		t.incoming = nil
		t.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		if err := pki.AppendJournal(t.f.opts.Dir, batch); err != nil {
			// One bad record refuses the batch: append the others alone.
			for _, l := range batch {
				if err := pki.AppendJournal(t.f.opts.Dir, [][]byte{l}); err != nil {
					t.f.log.Warn("fleet: trust record refused", "err", err)
				}
			}
		}
		if t.f.opts.OnTrust != nil {
			t.f.opts.OnTrust()
		}
	}
}

// tail publishes the local journal's new lines, asynchronously in batches
// (the Msg-Id drops a line the stream already holds, so a line whose
// acknowledgement did not come is simply published again next time).
func (t *trustSync) tail(ctx context.Context) {
	lines, off, err := pki.JournalLines(t.f.opts.Dir, t.offset)
	if err != nil {
		t.f.log.Warn("fleet: read trust store", "err", err)
		return
	}
	t.mu.Lock()
	t.offset = off
	for _, l := range lines {
		if h := lineHash(l); !t.known[h] {
			t.known[h] = true
			t.pending = append(t.pending, l)
		}
	}
	if !t.caughtUp || len(t.pending) == 0 {
		t.mu.Unlock()
		return
	}
	todo := make([][]byte, 0, len(t.pending))
	for _, l := range t.pending {
		if !t.inStream[lineHash(l)] {
			todo = append(todo, l)
		}
	}
	t.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var retry [][]byte
	for len(todo) > 0 && cctx.Err() == nil {
		batch := todo[:min(len(todo), trustBatch)]
		todo = todo[len(batch):]
		futs := make([]jetstream.PubAckFuture, 0, len(batch))
		for _, l := range batch {
			fut, err := t.f.js.PublishAsync(subjTrust, l, jetstream.WithMsgID(lineHash(l)))
			if err != nil {
				retry = append(retry, l)
				continue
			}
			futs = append(futs, fut)
		}
		for _, fut := range futs {
			select {
			case <-fut.Ok():
			case <-fut.Err():
				retry = append(retry, fut.Msg().Data)
			case <-cctx.Done():
				retry = append(retry, fut.Msg().Data)
			}
		}
	}
	retry = append(retry, todo...)
	if len(retry) > 0 {
		t.f.log.Warn("fleet: publish trust records; will retry", "records", len(retry), "err", cctx.Err())
	}
	t.mu.Lock()
	t.pending = retry
	t.mu.Unlock()
}

// trustBatch is how many trust records are in flight at once.
const trustBatch = 1000

func (t *trustSync) stop() {
	if t.cons != nil {
		t.cons.Stop()
	}
	close(t.quit)
	<-t.flushed
}
