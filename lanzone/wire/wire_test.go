package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tapbeat/tapbeat/sensor/schema"
)

func TestRoundTrip(t *testing.T) {
	h := Hello{
		Health:     schema.HealthYellow,
		Reasons:    []string{"signatures 30h old"},
		Interfaces: []Interface{{Name: "eth0", MAC: schema.MustParseMAC("02:00:00:00:00:01"), IPs: []netip.Addr{netip.MustParseAddr("10.0.0.5")}}},
		Users:      []string{"alice"},
		Agent:      "tapbeat-agent test",
	}
	f, err := Marshal(TypeHello, h)
	if err != nil {
		t.Fatal(err)
	}
	fr, err := ReadFrame(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if fr.Type != TypeHello || fr.Major != Major {
		t.Fatalf("frame %+v", fr)
	}
	got, err := DecodeHello(fr.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if got.Interfaces[0].MAC != h.Interfaces[0].MAC || got.Health != h.Health || got.Users[0] != "alice" {
		t.Fatalf("decoded %+v", got)
	}
}

func TestUnknownFieldsIgnored(t *testing.T) {
	hb, err := DecodeHeartbeat([]byte(`{"health":"green","future":{"x":1},"seq":3}`))
	if err != nil || hb.Seq != 3 || hb.Health != schema.HealthGreen {
		t.Fatalf("%+v %v", hb, err)
	}
}

func TestLimits(t *testing.T) {
	frame := func(n uint32, major byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, n)
		return append(b, major, 0, byte(TypeHeartbeat))
	}
	if _, err := ReadFrame(bytes.NewReader(frame(MaxFrame, Major))); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if _, err := ReadFrame(bytes.NewReader(frame(1, Major))); !errors.Is(err, ErrShortFrame) {
		t.Fatalf("short: %v", err)
	}
	var ve *VersionError
	if _, err := ReadFrame(bytes.NewReader(frame(3, 2))); !errors.As(err, &ve) || ve.Major != 2 {
		t.Fatalf("version: %v", err)
	}
	if _, err := ReadFrame(bytes.NewReader(frame(10, Major))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := AppendFrame(nil, TypeHello, make([]byte, MaxPayload+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("encode oversized: %v", err)
	}
	if _, err := AppendFrame(nil, TypeHello, make([]byte, MaxPayload)); err != nil {
		t.Fatalf("encode max: %v", err)
	}
	many := Hello{Health: schema.HealthGreen}
	for i := 0; i <= MaxInterfaces; i++ {
		many.Interfaces = append(many.Interfaces, Interface{Name: fmt.Sprint("e", i)})
	}
	if err := many.Check(); err == nil || !strings.Contains(err.Error(), "interfaces") {
		t.Fatalf("interfaces: %v", err)
	}
	users := Hello{Health: schema.HealthGreen, Users: make([]string, MaxUsers+1)}
	if err := users.Check(); err == nil {
		t.Fatal("65 users accepted")
	}
	long := Hello{Health: schema.HealthGreen, Users: []string{strings.Repeat("u", MaxString+1)}}
	if err := long.Check(); err == nil {
		t.Fatal("257-byte string accepted")
	}
	if _, err := DecodeHello([]byte(`{"interfaces":[]}`)); err == nil {
		t.Fatal("hello without health accepted")
	}
	if _, err := DecodeConfig([]byte(`{"heartbeat_interval_ms":5,"addresses":[]}`)); err == nil {
		t.Fatal("5 ms interval accepted")
	}
}

func TestAtRiskSplitAndAssemble(t *testing.T) {
	var list schema.AtRiskList
	list.Generated = time.Now()
	for i := 0; i < 2000; i++ {
		list.Endpoints = append(list.Endpoints, schema.AtRiskEndpoint{
			EndpointID: fmt.Sprintf("ep-%05d", i), Name: fmt.Sprintf("host-%05d.example", i), Status: schema.StatusRed,
			MACs: []schema.MAC{schema.MACFromUint64(uint64(i) + 0x020000000000)},
			IPs:  []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})},
		})
	}
	frames, err := EncodeAtRisk(list, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) < 2 {
		t.Fatalf("2000 endpoints fit in %d frame(s)?", len(frames))
	}
	var asm AtRiskAssembler
	var got []AtRiskEndpoint
	for i, f := range frames {
		if len(f) > MaxFrame {
			t.Fatalf("frame %d is %d bytes", i, len(f))
		}
		fr, err := ReadFrame(bytes.NewReader(f))
		if err != nil {
			t.Fatal(err)
		}
		p, err := DecodeAtRisk(fr.Payload)
		if err != nil {
			t.Fatal(err)
		}
		eps, done := asm.Add(p)
		if done != (i == len(frames)-1) {
			t.Fatalf("part %d done=%v", i, done)
		}
		got = eps
	}
	if len(got) != 2000 || got[1999].EndpointID != "ep-01999" {
		t.Fatalf("assembled %d", len(got))
	}
	empty, _ := EncodeAtRisk(schema.AtRiskList{}, 8)
	fr, _ := ReadFrame(bytes.NewReader(empty[0]))
	p, err := DecodeAtRisk(fr.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if eps, done := asm.Add(p); !done || eps == nil || len(eps) != 0 {
		t.Fatalf("empty list: %v %v", eps, done)
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader and the message
// decoders: nothing may panic, no frame may exceed the limit, and every
// accepted hello must respect the limits and survive a re-encode.
func FuzzReadFrame(f *testing.F) {
	seed := func(t Type, v any) {
		b, err := Marshal(t, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(TypeHello, Hello{Health: schema.HealthGreen, Interfaces: []Interface{{Name: "eth0", MAC: schema.MustParseMAC("02:00:00:00:00:01"), IPs: []netip.Addr{netip.MustParseAddr("fe80::1")}}}, Users: []string{"root"}})
	seed(TypeHeartbeat, Heartbeat{Health: schema.HealthRed, Reasons: []string{"av stopped"}, Seq: 9})
	seed(TypeConfig, Config{HeartbeatIntervalMS: 15000, Addresses: []string{"10.0.0.2:8347"}})
	seed(TypeAtRisk, AtRisk{Generation: 1, Part: 1, Parts: 1, Endpoints: []AtRiskEndpoint{{EndpointID: "ep-1", Status: schema.StatusMissing}}})
	seed(TypeError, Error{Code: CodeProtocol, Message: "x"})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0, 0, 0, 3, 2, 0, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			fr, err := ReadFrame(r)
			if err != nil {
				return
			}
			if len(fr.Payload)+HeaderLen > MaxFrame {
				t.Fatalf("frame of %d bytes accepted", len(fr.Payload)+HeaderLen)
			}
			switch fr.Type {
			case TypeHello:
				h, err := DecodeHello(fr.Payload)
				if err != nil {
					continue
				}
				if len(h.Interfaces) > MaxInterfaces || len(h.Users) > MaxUsers {
					t.Fatalf("limits not enforced: %d interfaces %d users", len(h.Interfaces), len(h.Users))
				}
				b, err := Marshal(TypeHello, h)
				if err != nil {
					t.Fatalf("re-encode accepted hello: %v", err)
				}
				fr2, err := ReadFrame(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := DecodeHello(fr2.Payload); err != nil {
					t.Fatalf("re-encoded hello refused: %v", err)
				}
			case TypeHeartbeat:
				_, _ = DecodeHeartbeat(fr.Payload)
			case TypeConfig:
				_, _ = DecodeConfig(fr.Payload)
			case TypeAtRisk:
				if p, err := DecodeAtRisk(fr.Payload); err == nil {
					var a AtRiskAssembler
					a.Add(p)
				}
			case TypeError:
				_, _ = DecodeError(fr.Payload)
			}
		}
	})
}

// BenchmarkHeartbeatFrame is the per-heartbeat protocol cost on the sensor:
// read one frame and decode the heartbeat. BenchmarkReadFrameOnly is its
// reference (framing without JSON).
func BenchmarkHeartbeatFrame(b *testing.B) {
	f, _ := Marshal(TypeHeartbeat, Heartbeat{Health: schema.HealthGreen, Seq: 12345, SentAt: time.Now().UnixNano()})
	r := bytes.NewReader(nil)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(f)
		fr, err := ReadFrame(r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := DecodeHeartbeat(fr.Payload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadFrameOnly(b *testing.B) {
	f, _ := Marshal(TypeHeartbeat, Heartbeat{Health: schema.HealthGreen, Seq: 12345, SentAt: time.Now().UnixNano()})
	r := bytes.NewReader(nil)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(f)
		if _, err := ReadFrame(r); err != nil {
			b.Fatal(err)
		}
	}
}

func TestGoodbye(t *testing.T) {
	f, err := Marshal(TypeGoodbye, Goodbye{Reason: GoodbyeUpgrade, Message: "1.3.0 replaces 1.2.0"})
	if err != nil {
		t.Fatal(err)
	}
	fr, err := ReadFrame(bytes.NewReader(f))
	if err != nil || fr.Type != TypeGoodbye || fr.Minor != Minor {
		t.Fatalf("frame %+v, %v", fr, err)
	}
	g, err := DecodeGoodbye(fr.Payload)
	if err != nil || g.Reason != GoodbyeUpgrade || g.Message != "1.3.0 replaces 1.2.0" {
		t.Fatalf("goodbye %+v, %v", g, err)
	}
	for _, bad := range []string{`{}`, `{"reason":""}`, `{"reason":"stop","message":"` + strings.Repeat("x", MaxString+1) + `"}`, `[]`} {
		if _, err := DecodeGoodbye([]byte(bad)); err == nil {
			t.Errorf("goodbye %.40s accepted", bad)
		}
	}
	// A reason this side does not know is kept as sent.
	if g, err := DecodeGoodbye([]byte(`{"reason":"hibernate"}`)); err != nil || g.Reason != "hibernate" {
		t.Errorf("unknown reason: %+v, %v", g, err)
	}
}
