package main

import (
	"context"
	"log/syslog"
	"strings"
	"time"
)

// syslogSink forwards log lines to a syslog server. The server is usually
// reachable only once the management NIC has its address, so lines are
// queued (up to a limit, then dropped) and a goroutine dials and redials
// until it gets through; writing never blocks the console.
type syslogSink struct {
	network, addr string
	lines         chan string
}

func newSyslogSink(ctx context.Context, network, addr string) *syslogSink {
	s := &syslogSink{network: network, addr: addr, lines: make(chan string, 4096)}
	go s.run(ctx)
	return s
}

// Write queues one log record (or several lines); it never fails.
func (s *syslogSink) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line == "" {
			continue
		}
		select {
		case s.lines <- line:
		default: // queue full: drop rather than stall the console
		}
	}
	return len(p), nil
}

func (s *syslogSink) run(ctx context.Context) {
	var w *syslog.Writer
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	for {
		var line string
		select {
		case <-ctx.Done():
			return
		case line = <-s.lines:
		}
		for w == nil {
			var err error
			if w, err = syslog.Dial(s.network, s.addr, syslog.LOG_DAEMON|syslog.LOG_INFO, "tapbeat"); err != nil {
				w = nil
				select {
				case <-ctx.Done():
					return
				case <-time.After(2 * time.Second):
				}
			}
		}
		if err := w.Info(line); err != nil {
			// log/syslog reconnects on the next write; this line is lost.
			continue
		}
	}
}
