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
}

func lineHash(l []byte) string {
	s := sha256.Sum256(l)
	return hex.EncodeToString(s[:])
}

func startTrustSync(ctx context.Context, f *Fleet) (*trustSync, error) {
	t := &trustSync{f: f, known: map[string]bool{}, inStream: map[string]bool{}}
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
	return t, nil
}

// receive appends a line from the fleet to the local journal.
func (t *trustSync) receive(line []byte) {
	h := lineHash(line)
	t.mu.Lock()
	t.inStream[h] = true
	if t.known[h] {
		t.mu.Unlock()
		return
	}
	t.known[h] = true
	t.mu.Unlock()
	if err := pki.AppendJournal(t.f.opts.Dir, [][]byte{line}); err != nil {
		t.f.log.Warn("fleet: trust record refused", "err", err)
		return
	}
	if t.f.opts.OnTrust != nil {
		t.f.opts.OnTrust()
	}
}

// tail publishes the local journal's new lines.
func (t *trustSync) tail(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines, off, err := pki.JournalLines(t.f.opts.Dir, t.offset)
	if err != nil {
		t.f.log.Warn("fleet: read trust store", "err", err)
		return
	}
	t.offset = off
	for _, l := range lines {
		if h := lineHash(l); !t.known[h] {
			t.known[h] = true
			t.pending = append(t.pending, l)
		}
	}
	if !t.caughtUp || len(t.pending) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for len(t.pending) > 0 {
		l := t.pending[0]
		if t.inStream[lineHash(l)] {
			t.pending = t.pending[1:]
			continue
		}
		if _, err := t.f.js.Publish(cctx, subjTrust, l, jetstream.WithMsgID(lineHash(l))); err != nil {
			t.f.log.Warn("fleet: publish trust record; will retry", "err", err)
			return
		}
		t.pending = t.pending[1:]
	}
}

func (t *trustSync) stop() {
	if t.cons != nil {
		t.cons.Stop()
	}
}
