package lanzone

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/lanzone/pki"
	"github.com/tapbeat/tapbeat/lanzone/wire"
	"github.com/tapbeat/tapbeat/sensor/schema"
)

// disconnectOf waits for the endpoint_disconnected event of endpoint id and
// returns it.
func (r *recorder) disconnectOf(t *testing.T, id string) schema.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, e := range r.events {
			if e.Type == schema.EventEndpointDisconnected && e.EndpointID == id {
				r.mu.Unlock()
				return e
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no endpoint_disconnected for %s", id)
	return schema.Event{}
}

func (r *recorder) has(typ schema.EventType, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Type == typ && e.EndpointID == id {
			return true
		}
	}
	return false
}

// TestDisconnectCauses ends real TLS connections each way an agent can and
// checks what the LAN zone tells the correlator: a goodbye, a clean
// close_notify, a TCP close without close_notify (a killed process), a TCP
// reset.
func TestDisconnectCauses(t *testing.T) {
	f := newFixture(t, nil)
	cases := []struct {
		name string
		end  func(c *client)
		want schema.DisconnectCause
	}{
		{"goodbye", func(c *client) {
			c.send(wire.TypeGoodbye, wire.Goodbye{Reason: wire.GoodbyeShutdown, Message: "system is going down"})
			c.c.Close()
		}, schema.CauseGoodbye},
		{"close-notify", func(c *client) { c.c.Close() }, schema.CauseCloseNotify},
		{"killed", func(c *client) {
			// A process that dies with unread data makes its kernel answer
			// with a reset: read what the sensor sent first (the at-risk
			// list may follow the config), so the close is a plain FIN.
			_ = c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 4096)
			for {
				if _, err := c.c.Read(buf); err != nil {
					break
				}
			}
			c.c.NetConn().Close()
		}, schema.CauseEOF},
		{"reset", func(c *client) {
			tc := c.c.NetConn().(*net.TCPConn)
			if err := tc.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			tc.Close()
		}, schema.CauseReset},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := f.enroll(t, "ws-"+tc.name+".example")
			c := f.connect(t, b, "", schema.HealthGreen)
			if _, err := c.next(wire.TypeConfig, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			tc.end(c)
			ev := f.rec.disconnectOf(t, b.ID)
			var got string
			if d, ok := ev.Details.(*schema.EndpointDisconnectedDetails); ok {
				got = d.Disconnect
			}
			if got != tc.want.String() {
				t.Errorf("disconnect cause %v, want %s (%s)", got, tc.want, ev.Reason)
			}
			if stopped := f.rec.has(schema.EventAgentStopped, b.ID); stopped != (tc.want == schema.CauseGoodbye) {
				t.Errorf("agent_stopped raised: %v, want it only after a goodbye", stopped)
			}
			if tc.want == schema.CauseGoodbye {
				if d, ok := ev.Details.(*schema.EndpointDisconnectedDetails); !ok || d.Goodbye != "shutdown" || d.Message != "system is going down" {
					t.Errorf("goodbye details %v", ev.Details)
				}
				st, _ := f.rec.Endpoint(b.ID)
				if st.Status != schema.StatusStopped {
					t.Errorf("status after goodbye %s, want stopped", st.Status)
				}
			}
		})
	}
	if n := f.l.Stats().Ended; n["goodbye"] != 1 || n["close_notify"] != 1 || n["eof"] != 1 || n["reset"] != 1 {
		t.Errorf("ended connections by cause %v, want one of each", n)
	}
}

// TestReplacedConnectionIsNoDrop: a newer connection of the same agent
// process from another address (a cable to Wi-Fi switch) replaces the old one, which is then not reported
// as the endpoint's disconnect.
func TestReplacedConnectionIsNoDrop(t *testing.T) {
	f := newFixture(t, nil)
	b := f.enroll(t, "ws-roam.example")
	old := f.connectAs(t, b, "127.0.0.1", schema.HealthGreen, "agent-1")
	if _, err := old.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	fresh := f.connectAs(t, b, "127.0.0.2", schema.HealthGreen, "agent-1")
	if _, err := fresh.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	fr, err := old.next(wire.TypeError, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := wire.DecodeError(fr.Payload); e.Code != wire.CodeReplaced {
		t.Errorf("old connection closed with %q, want replaced", e.Code)
	}
	waitFor(t, "replaced counted", func() bool { return f.l.Stats().Ended["replaced"] == 1 })
	if f.rec.has(schema.EventEndpointDisconnected, b.ID) {
		t.Errorf("the replaced connection was reported as the endpoint's disconnect")
	}
	st, _ := f.rec.Endpoint(b.ID)
	if !st.Connected {
		t.Errorf("endpoint not connected after the newer connection took over")
	}
}

// TestHostileDropsDoNotCount: connections that never authenticated as the
// endpoint, or authenticated but never said hello, and drop (a flood from a
// spoofed address, a stolen certificate probing) never count as the
// endpoint's drop: its own connection stays, and nothing reaches the
// correlator but auth_failed.
func TestHostileDropsDoNotCount(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.HandshakeRate, o.HandshakeBurst = 1000, 1000 })
	b := f.enroll(t, "ws-target.example")
	c := f.connect(t, b, "127.0.0.1", schema.HealthGreen)
	if _, err := c.next(wire.TypeConfig, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ClientConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	noCert := cfg.Clone()
	noCert.Certificates = nil
	for i := range 20 {
		src := fmt.Sprintf("127.0.0.%d", 30+i%10)
		switch i % 3 {
		case 0: // plaintext, then a reset
			nc, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			nc.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
			nc.(*net.TCPConn).SetLinger(0)
			nc.Close()
		case 1: // TLS without a certificate
			if tc, err := dialFrom(t, f.addr, src, noCert); err == nil {
				tc.NetConn().Close()
			}
		case 2: // the endpoint's own certificate, dropped before any hello
			tc, err := dialFrom(t, f.addr, src, cfg)
			if err != nil {
				t.Fatal(err)
			}
			tc.NetConn().Close()
		}
	}
	waitFor(t, "the refusals", func() bool { return f.l.Stats().Refused >= 7 })
	time.Sleep(200 * time.Millisecond)
	if f.rec.has(schema.EventEndpointDisconnected, b.ID) {
		t.Errorf("a hostile connection's drop was reported as the endpoint's")
	}
	st, _ := f.rec.Endpoint(b.ID)
	if !st.Connected || st.Status != schema.StatusGreen {
		t.Errorf("endpoint after the flood: %+v", st)
	}
	c.send(wire.TypeHeartbeat, wire.Heartbeat{Health: schema.HealthGreen})
	if _, err := c.next(wire.TypeAtRisk, 3*time.Second); err != nil && !isTimeout(err) {
		t.Errorf("the endpoint's own connection broke: %v", err)
	}
}
