package alert

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/alert/syslog"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// countingCollector is a minimal octet-counting TCP syslog receiver that
// counts messages.
type countingCollector struct {
	l net.Listener
	n atomic.Int64
}

func newCountingCollector(b testing.TB) *countingCollector {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c := &countingCollector{l: l}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go c.serve(conn)
		}
	}()
	return c
}

func (c *countingCollector) serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 1<<20)
	for {
		ls, err := r.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(ls[:len(ls)-1])
		if err != nil {
			return
		}
		if _, err := r.Discard(n); err != nil {
			return
		}
		c.n.Add(1)
	}
}

func (c *countingCollector) wait(b *testing.B, want int64) {
	deadline := time.Now().Add(time.Minute)
	for c.n.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("collector has %d of %d messages after a minute", c.n.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkDeliveryTCP measures alerts per second from staging in the
// outbox (a history batch, 256 alerts per batch, as the daemon writes
// them) to receipt by a TCP collector. "reference" sends the same
// pre-formatted messages straight over one TCP connection, with no outbox.
func BenchmarkDeliveryTCP(b *testing.B) {
	evs := testEvents(1, 256)
	b.Run("reference", func(b *testing.B) {
		col := newCountingCollector(b)
		conn, err := net.Dial("tcp", col.l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		f := Formatter{Format: FormatRFC5424, Hostname: "sensor-1"}
		var frame, msg []byte
		for i := range evs {
			msg, _ = f.Append(msg[:0], &evs[i], uint32(i+1))
			frame = syslog.AppendOctetCounted(frame, msg)
		}
		b.ResetTimer()
		for sent := 0; sent < b.N; sent += len(evs) {
			k := min(len(evs), b.N-sent)
			if k == len(evs) {
				_, err = conn.Write(frame)
			} else {
				for i := range evs[:k] {
					msg, _ = f.Append(msg[:0], &evs[i], uint32(i+1))
					_, err = conn.Write(syslog.AppendOctetCounted(nil, msg))
				}
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		col.wait(b, int64(b.N))
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
	})
	for _, format := range []Format{FormatRFC5424, FormatCEF, FormatJSON} {
		b.Run("outbox/"+string(format), func(b *testing.B) {
			col := newCountingCollector(b)
			db := testDB(b, b.TempDir())
			run := startDispatcher(b, db, OutboxOptions{Destinations: []Destination{
				mustDest(b, "tcp://"+col.l.Addr().String()+"?format="+string(format))}},
				DispatcherOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			batch := make([]schema.Event, len(evs))
			b.ResetTimer()
			var seq uint64
			for sent := 0; sent < b.N; sent += len(evs) {
				k := min(len(evs), b.N-sent)
				for i := range batch[:k] {
					seq++
					batch[i] = evs[i]
					batch[i].Seq = seq
				}
				stageOnly(b, db, run.ob, batch[:k])
			}
			staged := b.Elapsed()
			col.wait(b, int64(b.N))
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
			b.StopTimer()
			b.Logf("N=%d staged in %v, received in %v", b.N, staged, b.Elapsed())
			run.stop(b)
		})
	}
}

// BenchmarkStage measures the caller's cost: staging alerts in a batch and
// applying it.
func BenchmarkStage(b *testing.B) {
	db := testDB(b, b.TempDir())
	ob, err := NewOutbox(space(b, db), OutboxOptions{Destinations: []Destination{mustDest(b, "tcp://127.0.0.1:9")}})
	if err != nil {
		b.Fatal(err)
	}
	evs := testEvents(1, 256)
	var seq uint64
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += len(evs) {
		k := min(len(evs), b.N-sent)
		for i := range evs[:k] {
			seq++
			evs[i].Seq = seq
		}
		stageOnly(b, db, ob, evs[:k])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
}

// lineCounter counts the lines rsyslog has written to its output file.
type lineCounter struct {
	f *os.File
	n int64
	b []byte
}

func (c *lineCounter) count() int64 {
	if c.b == nil {
		c.b = make([]byte, 1<<20)
	}
	for {
		k, _ := c.f.Read(c.b)
		if k == 0 {
			return c.n
		}
		c.n += int64(bytes.Count(c.b[:k], []byte{'\n'}))
	}
}

// BenchmarkDeliveryRsyslog measures alerts per second from the outbox to a
// real rsyslog writing every message to a file, over tcp and over relp
// (which waits for rsyslog's acknowledgement of every message).
func BenchmarkDeliveryRsyslog(b *testing.B) {
	evs := testEvents(1, 256)
	for _, scheme := range []string{"tcp", "relp"} {
		b.Run(scheme, func(b *testing.B) {
			r := startRsyslogWith(b, nil, scheme == "relp")
			port := r.TCP
			if scheme == "relp" {
				port = r.RELP
			}
			db := testDB(b, b.TempDir())
			run := startDispatcher(b, db, OutboxOptions{Destinations: []Destination{
				mustDest(b, fmt.Sprintf("%s://127.0.0.1:%d", scheme, port))}},
				DispatcherOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			var lc *lineCounter
			batch := make([]schema.Event, len(evs))
			b.ResetTimer()
			var seq uint64
			for sent := 0; sent < b.N; sent += len(evs) {
				k := min(len(evs), b.N-sent)
				for i := range batch[:k] {
					seq++
					batch[i] = evs[i]
					batch[i].Seq = seq
				}
				stageOnly(b, db, run.ob, batch[:k])
			}
			deadline := time.Now().Add(2 * time.Minute)
			for {
				if lc == nil {
					if f, err := os.Open(r.out); err == nil {
						defer f.Close()
						lc = &lineCounter{f: f}
					}
				}
				if lc != nil && lc.count() >= int64(b.N) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("rsyslog wrote too few messages for %d alerts", b.N)
				}
				time.Sleep(2 * time.Millisecond)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
			b.StopTimer()
			run.stop(b)
		})
	}
}
