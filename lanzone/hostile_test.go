package lanzone

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// holdFlood keeps n connections from n addresses (each in its own /24) open
// against addr, sending payload (nothing, or one byte) and renewing each one
// as the sensor closes it, until stop closes.
func holdFlood(t *testing.T, addr string, n int, payload []byte, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := netip.AddrFrom4([4]byte{127, 3, byte(i), 1})
			for {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: time.Second}
				c, err := d.Dial("tcp", addr)
				if err == nil {
					c.Write(payload)
					go func() { <-stop; c.Close() }()
					c.SetReadDeadline(time.Now().Add(20 * time.Second))
					c.Read(make([]byte, 1))
					c.Close()
				}
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
	return &wg
}

// TestHandshakeSlotsNotStarved: 40 addresses hold connections open, silent
// or after one byte of a ClientHello, with few handshake slots; an enrolled
// agent that restarts gets back in within an interval either way.
func TestHandshakeSlotsNotStarved(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload []byte
	}{{"silent", nil}, {"one byte", []byte{0x16}}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) {
				o.MaxHandshakes = 8
				o.PreHandshakeTimeout = time.Second
				o.HandshakeTimeout = 10 * time.Second
			})
			b := f.enroll(t, "restarting")
			c := f.connect(t, b, "127.0.0.50", schema.HealthGreen)
			if _, err := c.next(wire.TypeConfig, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			wg := holdFlood(t, f.addr, 40, tc.payload, stop)
			defer func() { close(stop); wg.Wait() }()
			time.Sleep(1500 * time.Millisecond)
			c.c.Close() // the agent restarts
			start := time.Now()
			c2 := f.connect(t, b, "127.0.0.50", schema.HealthGreen)
			if _, err := c2.next(wire.TypeConfig, 5*time.Second); err != nil {
				t.Fatalf("restarted agent not admitted during the flood: %v", err)
			}
			if took := time.Since(start); took > time.Second {
				t.Fatalf("restarted agent took %v to get in, more than one interval", took)
			}
			if tc.payload == nil {
				if st := f.l.Stats(); st.Refused == 0 {
					t.Fatalf("silent connections not refused after the pre-handshake deadline: %+v", st)
				}
			} else if n := len(f.l.admit.shared); n != cap(f.l.admit.shared) {
				t.Fatalf("the flood held %d of %d shared slots: the test did not starve them", n, cap(f.l.admit.shared))
			}
		})
	}
}

func TestHelloBudget(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.HelloBurst = 3; o.HelloEvery = time.Minute })
	b := f.enroll(t, "chatty")
	c := f.connect(t, b, "", schema.HealthGreen) // hello 1
	if _, err := c.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for range 3 { // hellos 2..4: the fourth is one past the budget
		c.send(wire.TypeHello, wire.Hello{Health: schema.HealthGreen})
	}
	fr, err := c.next(wire.TypeError, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := wire.DecodeError(fr.Payload)
	if e.Code != wire.CodeLimit || !strings.Contains(e.Message, "budget") {
		t.Fatalf("error %+v, want limit_exceeded naming the hello budget", e)
	}
	expectClosed(t, c.c)
	// Reconnecting does not refill the budget.
	c2 := f.connect(t, b, "", schema.HealthGreen)
	fr, err = c2.next(wire.TypeError, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := wire.DecodeError(fr.Payload); e.Code != wire.CodeLimit {
		t.Fatalf("reconnect: error %+v", e)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		f.rec.mu.Lock()
		for _, ev := range f.rec.events {
			if ev.Type == schema.EventLimitExceeded && ev.EndpointID == b.ID {
				n++
			}
		}
		f.rec.mu.Unlock()
		if n == 1 {
			if st := f.l.Stats(); st.HelloLimited != 2 {
				t.Fatalf("hello_limited %d, want 2", st.HelloLimited)
			}
			return
		}
		if n > 1 {
			t.Fatalf("%d limit_exceeded events, want 1 (rate-limited)", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no limit_exceeded event")
}

// TestDuplicateIdentity: one bundle connected from two addresses. The first
// connection keeps its place, the second is refused with a reason, one
// duplicate_identity event names both addresses, and once the first goes
// away the second gets in.
func TestDuplicateIdentity(t *testing.T) {
	f := newFixture(t, nil)
	b, stop := f.heartbeater(t, "cloned", "127.0.0.60")
	time.Sleep(1200 * time.Millisecond)
	for i := range 3 {
		c := f.connect(t, b, "127.0.0.61", schema.HealthGreen)
		fr, err := c.next(wire.TypeError, 5*time.Second)
		if err != nil {
			t.Fatalf("clone %d: %v", i, err)
		}
		if e, _ := wire.DecodeError(fr.Payload); e.Code != wire.CodeDuplicate || !strings.Contains(e.Message, "127.0.0.60") {
			t.Fatalf("clone %d: error %+v", i, e)
		}
		c.c.Close()
		time.Sleep(300 * time.Millisecond)
	}
	var dups []schema.Event
	f.rec.mu.Lock()
	for _, ev := range f.rec.events {
		switch ev.Type {
		case schema.EventDuplicateIdentity:
			dups = append(dups, ev)
		case schema.EventEndpointDisconnected:
			t.Errorf("the first connection was knocked off: %+v", ev)
		}
	}
	f.rec.mu.Unlock()
	if len(dups) != 1 {
		t.Fatalf("%d duplicate_identity events, want 1", len(dups))
	}
	if got := fmt.Sprint(dups[0].IPs); got != "[127.0.0.60 127.0.0.61]" {
		t.Fatalf("duplicate_identity addresses %q", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("the first connection broke: %v", err)
	}
	if gap, n := f.rec.maxGap(b.ID); gap > 1500*time.Millisecond || n < 2 {
		t.Fatalf("first connection's heartbeats: longest gap %v over %d", gap, n)
	}
	// The first machine goes away (its connection falls silent): after an
	// interval and a half the second one is admitted.
	time.Sleep(1600 * time.Millisecond)
	c := f.connect(t, b, "127.0.0.61", schema.HealthGreen)
	if _, err := c.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatalf("second machine not admitted once the first fell silent: %v", err)
	}
}
