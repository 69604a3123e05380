package capture

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

// LiveConfig describes live capture on one or more mirror ports.
type LiveConfig struct {
	Interfaces []string
	// Workers is the number of sockets per interface, joined in a
	// PACKET_FANOUT_HASH group, each read by its own goroutine (default 1).
	Workers int
	// Ring is the template for every ring; Interface and FanoutGroup are
	// set per socket.
	Ring RingConfig
	// Fallback captures with plain sockets (Socket) instead of rings.
	Fallback bool
	Socket   SocketConfig
	Options  Options
	// Reopen is how often a lost interface is tried again (default 1 s).
	Reopen time.Duration
	Logger *slog.Logger
}

// liveSource is a Source on a live interface.
type liveSource interface {
	Source
	Stats() (SocketStats, error)
	Ifindex() int
}

// Live captures from mirror ports until its context ends. Create it with
// NewLive and call Run once.
type Live struct {
	cfg  LiveConfig
	sink Sink
	log  *slog.Logger
	gen  atomic.Uint64 // bumped every reporting tick; workers flush on change
	// periods carries finished periods from workers to the reporter, free
	// carries emptied ones back.
	periods chan *period
	free    chan *period
	stats   liveCounters
}

type liveCounters struct {
	packets, drops, freezes, reopens atomic.Uint64
}

// LiveStats are counters over a Live's whole run.
type LiveStats struct {
	Packets      uint64 // frames the kernel handled for capture sockets
	Drops        uint64 // frames it dropped
	QueueFreezes uint64
	Reopens      uint64 // times an interface's sockets were opened again
}

// NewLive checks cfg and returns a Live that reports to sink.
func NewLive(cfg LiveConfig, sink Sink) (*Live, error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("live capture: no interfaces configured")
	}
	if sink == nil {
		return nil, errors.New("live capture: no sink")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.Reopen <= 0 {
		cfg.Reopen = time.Second
	}
	cfg.Options = cfg.Options.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Live{
		cfg: cfg, sink: sink, log: log.With("component", "capture"),
		periods: make(chan *period, 4*cfg.Workers*len(cfg.Interfaces)),
		free:    make(chan *period, 4*cfg.Workers*len(cfg.Interfaces)),
	}, nil
}

// Stats returns the counters so far.
func (l *Live) Stats() LiveStats {
	return LiveStats{
		Packets: l.stats.packets.Load(), Drops: l.stats.drops.Load(),
		QueueFreezes: l.stats.freezes.Load(), Reopens: l.stats.reopens.Load(),
	}
}

// Run captures until ctx ends, then returns nil after the last summaries
// were handed to the sink.
func (l *Live) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, name := range l.cfg.Interfaces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.supervise(ctx, name)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	l.report(done)
	return nil
}

// report merges worker periods and emits them every period until done.
func (l *Live) report(done <-chan struct{}) {
	rep := newReporter(l.sink, false)
	tick := time.NewTicker(l.cfg.Options.Period)
	defer tick.Stop()
	rep.release = func(p *period) {
		p.reset()
		select {
		case l.free <- p:
		default:
		}
	}
	recycle := rep.add
	for {
		select {
		case p := <-l.periods:
			recycle(p)
		case <-tick.C:
			rep.emit()
			l.gen.Add(1)
		case <-done:
			for len(l.periods) > 0 {
				recycle(<-l.periods)
			}
			rep.emit()
			return
		}
	}
}

// fanoutGroup picks a group id for an interface's sockets, distinct per
// process and interface.
func fanoutGroup(name string, attempt uint64) uint16 {
	h := fnv.New32a()
	fmt.Fprintf(h, "%d/%s/%d", os.Getpid(), name, attempt)
	return uint16(h.Sum32()) | 1
}

func (l *Live) open(name string, attempt uint64) ([]liveSource, error) {
	var srcs []liveSource
	group := uint16(0)
	if l.cfg.Workers > 1 && !l.cfg.Fallback {
		group = fanoutGroup(name, attempt)
	}
	for range l.cfg.Workers {
		var s liveSource
		var err error
		if l.cfg.Fallback {
			c := l.cfg.Socket
			c.Interface = name
			s, err = OpenSocket(c)
		} else {
			c := l.cfg.Ring
			c.Interface, c.FanoutGroup = name, group
			var r *RingSource
			if r, err = OpenRing(c); err == nil {
				s = r
				if direct, why := r.Direct(); !direct && why != nil {
					l.log.Warn("capture ring read through gopacket", "interface", name, "reason", why)
				}
			}
		}
		if err != nil {
			for _, s := range srcs {
				s.Close()
			}
			return nil, err
		}
		srcs = append(srcs, s)
		if l.cfg.Fallback {
			break // plain sockets do not share traffic: one is enough
		}
	}
	return srcs, nil
}

// linkState tells whether name is up and running, and why not.
func linkState(name string, ifindex int) (bool, string) {
	ifi, err := net.InterfaceByName(name)
	switch {
	case err != nil:
		return false, fmt.Sprintf("interface %s is gone: %v", name, err)
	case ifindex != 0 && ifi.Index != ifindex:
		return false, fmt.Sprintf("interface %s was replaced (index %d, was %d)", name, ifi.Index, ifindex)
	case ifi.Flags&net.FlagUp == 0:
		return false, fmt.Sprintf("interface %s is administratively down", name)
	case ifi.Flags&net.FlagRunning == 0:
		return false, fmt.Sprintf("interface %s has no link (carrier down)", name)
	}
	return true, ""
}

// supervise keeps name captured: it opens the sockets, runs a worker on
// each, reports health every period, and when the link goes down or a
// socket fails, reports the interface down and reopens it once it is back.
func (l *Live) supervise(ctx context.Context, name string) {
	period := l.cfg.Options.Period
	var attempt uint64
	var downSince time.Time
	var downReason string
	report := func(h schema.CaptureHealth) {
		h.Interface, h.Time = name, time.Now().UTC()
		l.sink.CaptureHealth(h)
	}
	for ctx.Err() == nil {
		up, why := linkState(name, 0)
		var srcs []liveSource
		if up {
			var err error
			if srcs, err = l.open(name, attempt); err != nil {
				up, why = false, err.Error()
			}
		}
		attempt++
		if !up {
			if downSince.IsZero() || why != downReason {
				l.log.Warn("capture interface down", "interface", name, "reason", why)
			}
			if downSince.IsZero() {
				downSince = time.Now()
			}
			downReason = why
			report(schema.CaptureHealth{Up: false, Reason: why})
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(l.cfg.Reopen, period)):
			}
			continue
		}
		if !downSince.IsZero() {
			l.stats.reopens.Add(1)
			l.log.Info("capture interface back", "interface", name, "gap", time.Since(downSince).Round(time.Millisecond))
			downSince = time.Time{}
		}
		why = l.capture(ctx, name, srcs, report)
		if why != "" {
			downSince, downReason = time.Now(), why
			l.log.Warn("capture interface down", "interface", name, "reason", why)
			report(schema.CaptureHealth{Up: false, Reason: why})
		}
	}
}

// capture runs workers on srcs until ctx ends or the interface fails; it
// returns why it failed ("" when ctx ended). The sources are closed after
// every worker stopped reading.
func (l *Live) capture(ctx context.Context, name string, srcs []liveSource, report func(schema.CaptureHealth)) string {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	failed := make(chan error, len(srcs))
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.work(wctx, s); err != nil {
				failed <- err
			}
		}()
	}
	ifindex := srcs[0].Ifindex()
	tick := time.NewTicker(l.cfg.Options.Period)
	defer tick.Stop()
	why := ""
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-failed:
			why = err.Error()
			break loop
		case <-tick.C:
			var h schema.CaptureHealth
			for _, s := range srcs {
				st, err := s.Stats()
				if err != nil {
					why = err.Error()
					break loop
				}
				h.Packets += st.Packets
				h.Drops += st.Drops
				l.stats.packets.Add(st.Packets)
				l.stats.drops.Add(st.Drops)
				l.stats.freezes.Add(st.QueueFreezes)
				if st.QueueFreezes > 0 {
					l.log.Warn("capture ring froze", "interface", name, "freezes", st.QueueFreezes)
				}
			}
			if up, reason := linkState(name, ifindex); !up {
				why = reason
				break loop
			}
			h.Up = true
			report(h)
		}
	}
	stop()
	wg.Wait() // readers are out of the rings before they are unmapped
	for _, s := range srcs {
		if st, err := s.Stats(); err == nil {
			l.stats.packets.Add(st.Packets)
			l.stats.drops.Add(st.Drops)
		}
		s.Close()
	}
	return why
}

// work reads s until ctx ends or s fails. It flushes its period to the
// reporter whenever the reporting generation changes (every Period; every
// TrafficPeriod with the stations' traffic), and once more on the way out,
// traffic included, so nothing it counted is lost.
func (l *Live) work(ctx context.Context, s liveSource) error {
	w := newWorker(l.cfg.Options)
	every := w.opts.trafficEvery()
	gen := l.gen.Load()
	flush := func(traffic bool) {
		var spare *period
		select {
		case spare = <-l.free:
		default:
		}
		l.periods <- w.take(spare, traffic)
	}
	// next flushes the period when the reporting generation has moved on
	// to g, with the stations' traffic when a traffic period ended in
	// between.
	next := func(g uint64) {
		traffic := g/every != gen/every
		gen = g
		flush(traffic)
	}
	defer flush(true)
	var pkts [batchSize]Packet
	br, batched := s.(batchReader)
	for {
		var n int
		var err error
		if batched {
			n, err = br.readBatch(pkts[:])
		} else if err = s.Read(&pkts[0]); err == nil {
			n = 1
		}
		if n > 0 {
			if n == 1 {
				w.packet(pkts[0].Data, pkts[0].WireLen, pkts[0].Time)
			} else {
				w.batch(pkts[:n])
			}
			if g := l.gen.Load(); g != gen {
				next(g)
				if ctx.Err() != nil {
					return nil
				}
			}
			if err == nil {
				continue
			}
		}
		if !errors.Is(err, ErrNoPacket) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if g := l.gen.Load(); g != gen {
			next(g)
		}
	}
}
