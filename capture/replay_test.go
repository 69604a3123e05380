package capture

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tapbeat/tapbeat/capture/internal/synth"
	"github.com/tapbeat/tapbeat/sensor/schema"
	"github.com/tapbeat/tapbeat/sensor/testenv"
)

const testdataDir = "../testdata/capture"

// endpointCounts is one row of tshark's "endpoints,eth" table.
type endpointCounts struct{ tx, txBytes, rx, rxBytes uint64 }

// parseTsharkEndpoints reads the output of tshark -q -z endpoints,eth.
func parseTsharkEndpoints(t *testing.T, out string) map[schema.MAC]endpointCounts {
	t.Helper()
	m := map[schema.MAC]endpointCounts{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 7 {
			continue
		}
		mac, err := schema.ParseMAC(f[0])
		if err != nil {
			continue
		}
		var n [6]uint64
		for i := range n {
			if n[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
				t.Fatalf("tshark line %q: %v", line, err)
			}
		}
		m[mac] = endpointCounts{tx: n[2], txBytes: n[3], rx: n[4], rxBytes: n[5]}
	}
	if len(m) == 0 {
		t.Fatalf("no endpoints in tshark output:\n%s", out)
	}
	return m
}

// agreeWithTshark checks the four figures of every MAC both ways.
func agreeWithTshark(t *testing.T, rep *Report, want map[schema.MAC]endpointCounts) {
	t.Helper()
	got := map[schema.MAC]endpointCounts{}
	for _, m := range rep.MACs {
		got[m.MAC] = endpointCounts{m.Packets, m.Bytes, m.RxPackets, m.RxBytes}
	}
	for mac, w := range want {
		if g := got[mac]; g != w {
			t.Errorf("%s: replay tx %d/%dB rx %d/%dB, tshark tx %d/%dB rx %d/%dB",
				mac, g.tx, g.txBytes, g.rx, g.rxBytes, w.tx, w.txBytes, w.rx, w.rxBytes)
		}
	}
	for mac := range got {
		if _, ok := want[mac]; !ok {
			t.Errorf("%s: in replay, not in tshark's endpoints", mac)
		}
	}
}

func replayFile(t *testing.T, path string) *Report {
	t.Helper()
	src, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rep, err := Replay(context.Background(), src, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func recordedPcaps(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(testdataDir, "*.pcap"))
	if err != nil || len(files) < 4 {
		t.Fatalf("want the recorded captures in %s, found %v (%v)", testdataDir, files, err)
	}
	return files
}

// The checked-in expectations: NAME.json is the reviewed replay output and
// NAME.tshark.txt what tshark counted on the same file.
func TestReplayRecordedCaptures(t *testing.T) {
	for _, pcap := range recordedPcaps(t) {
		name := strings.TrimSuffix(pcap, ".pcap")
		t.Run(filepath.Base(name), func(t *testing.T) {
			rep := replayFile(t, pcap)
			var got bytes.Buffer
			enc := json.NewEncoder(&got)
			for i := range rep.MACs {
				if err := enc.Encode(&rep.MACs[i]); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(name + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != string(want) {
				t.Errorf("replay differs from %s.json:\ngot:\n%s\nwant:\n%s", name, got.String(), want)
			}
			ts, err := os.ReadFile(name + ".tshark.txt")
			if err != nil {
				t.Fatal(err)
			}
			agreeWithTshark(t, rep, parseTsharkEndpoints(t, string(ts)))
		})
	}
}

func TestReplayLearnsBindings(t *testing.T) {
	rep := replayFile(t, filepath.Join(testdataDir, "dhcp.pcap"))
	client := findMAC(t, rep, "02:00:00:00:00:0a")
	if len(client.Hostnames) != 1 || client.Hostnames[0] != "tb-client" {
		t.Errorf("DHCP host name: got %q, want tb-client", client.Hostnames)
	}
	if len(client.IPs) != 1 || client.IPs[0].String() != "192.0.2.103" {
		t.Errorf("DHCP assigned address: got %v, want 192.0.2.103", client.IPs)
	}
	rep = replayFile(t, filepath.Join(testdataDir, "ndp.pcap"))
	if ips := findMAC(t, rep, "02:00:00:00:00:0b").IPs; len(ips) != 2 || ips[0].String() != "2001:db8::b" {
		t.Errorf("NDP addresses: got %v", ips)
	}
}

func findMAC(t *testing.T, rep *Report, s string) MACReport {
	t.Helper()
	mac := schema.MustParseMAC(s)
	for _, m := range rep.MACs {
		if m.MAC == mac {
			return m
		}
	}
	t.Fatalf("%s not in report", s)
	return MACReport{}
}

// TestReplayAgreesWithTsharkLive runs tshark itself on every recorded
// capture and on a synthetic one with VLAN tags, jumbo, cut and runt frames.
func TestReplayAgreesWithTsharkLive(t *testing.T) {
	testenv.RequireCommands(t, "tshark")
	files := recordedPcaps(t)
	odd := filepath.Join(t.TempDir(), "odd.pcap")
	writeOddFrames(t, odd)
	many := filepath.Join(t.TempDir(), "synthetic.pcap")
	f, err := os.Create(many)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Write(f, synth.Config{Frames: 50_000, MACs: 500}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, f := range append(files, odd, many) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := exec.Command("tshark", "-n", "-q", "-z", "endpoints,eth", "-r", f).Output()
			if err != nil {
				t.Fatalf("tshark: %v", err)
			}
			agreeWithTshark(t, replayFile(t, f), parseTsharkEndpoints(t, string(out)))
		})
	}
}

// writeOddFrames writes a capture with 802.1Q, 802.1ad double tags, a
// jumbo frame, snaplen-cut frames and a 10-byte runt.
func writeOddFrames(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriterNanos(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	a, b := schema.MustParseMAC("02:00:00:00:01:01"), schema.MustParseMAC("02:00:00:00:01:02")
	frames := [][]byte{
		testFrame(a, b, nil, 64),
		testFrame(a, b, []uint16{EtherTypeVLAN, 10}, 100),
		testFrame(b, a, []uint16{EtherTypeQinQ, 20, EtherTypeVLAN, 30}, 200),
		testFrame(b, a, nil, 9000),
		testFrame(a, schema.MustParseMAC("ff:ff:ff:ff:ff:ff"), nil, 60),
	}
	for i, fr := range frames {
		writeFrame(t, w, int64(i), fr, len(fr))
	}
	big := testFrame(a, b, nil, 1500)
	writeFrame(t, w, 10, big[:96], len(big)) // cut at a snap length of 96
	writeFrame(t, w, 11, big[:10], 60)       // too short to name its MACs
}

func writeFrame(t *testing.T, w *pcapgo.Writer, sec int64, data []byte, wire int) {
	t.Helper()
	ci := captureInfo(sec, len(data), wire)
	if err := w.WritePacket(ci, data); err != nil {
		t.Fatal(err)
	}
}

// testFrame builds an IPv4/UDP frame of total length n from src to dst,
// with tags given as (TPID, VLAN id) pairs.
func testFrame(src, dst schema.MAC, tags []uint16, n int) []byte {
	b := make([]byte, 0, n)
	b = append(b, dst[:]...)
	b = append(b, src[:]...)
	for i := 0; i+1 < len(tags); i += 2 {
		b = binary.BigEndian.AppendUint16(b, tags[i])
		b = binary.BigEndian.AppendUint16(b, tags[i+1])
	}
	b = binary.BigEndian.AppendUint16(b, EtherTypeIPv4)
	ipLen := n - len(b)
	ip := make([]byte, 28)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen))
	ip[8], ip[9] = 64, ProtoUDP
	copy(ip[12:], []byte{198, 51, 100, src[5]})
	copy(ip[16:], []byte{198, 51, 100, dst[5]})
	binary.BigEndian.PutUint16(ip[20:], 40000)
	binary.BigEndian.PutUint16(ip[22:], 9999)
	binary.BigEndian.PutUint16(ip[24:], uint16(ipLen-20))
	b = append(b, ip...)
	for len(b) < n {
		b = append(b, 0)
	}
	return b
}

func TestReplayReadsGzipAndPcapng(t *testing.T) {
	src := filepath.Join(testdataDir, "ping-arp.pcap")
	want := replayFile(t, src)
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	gz := filepath.Join(dir, "ping-arp.pcap.gz")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(gz, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	ng := filepath.Join(dir, "ping-arp.pcapng")
	r, err := pcapgo.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(ng)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := pcapgo.NewNgWriter(f, layers.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := nw.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	nw.Flush()
	f.Close()

	for _, p := range []string{gz, ng} {
		got := replayFile(t, p)
		if len(got.MACs) != len(want.MACs) {
			t.Fatalf("%s: %d MACs, want %d", p, len(got.MACs), len(want.MACs))
		}
		for i := range want.MACs {
			g, w := got.MACs[i], want.MACs[i]
			if g.MAC != w.MAC || g.Packets != w.Packets || g.Bytes != w.Bytes || g.RxPackets != w.RxPackets ||
				g.RxBytes != w.RxBytes || !g.LastSeen.Equal(w.LastSeen) {
				t.Errorf("%s: %+v, want %+v", filepath.Base(p), g, w)
			}
		}
	}
}

// recordOffsets returns the byte offset of every record in a pcap file.
func recordOffsets(t *testing.T, raw []byte) []int {
	t.Helper()
	var offs []int
	for off := 24; off+16 <= len(raw); {
		offs = append(offs, off)
		off += 16 + int(binary.LittleEndian.Uint32(raw[off+8:]))
	}
	return offs
}

func TestReplayTruncatedAndCorruptFiles(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testdataDir, "ping-arp.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	offs := recordOffsets(t, raw)
	const keep = 7 // records before the damage
	dir := t.TempDir()
	cases := []struct {
		name, want string
		data       []byte
		gzip       bool
	}{
		{"cut-in-record", "truncated", raw[:offs[keep]+20], false},
		{"cut-in-header", "truncated", raw[:offs[keep]+5], false},
		{"cut-gzip", "truncated", raw[:offs[keep]+20], true},
		{"bad-length", "corrupt", func() []byte {
			b := bytes.Clone(raw)
			binary.LittleEndian.PutUint32(b[offs[keep]+8:], 0x7fffffff)
			return b
		}(), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name+".pcap")
			data := c.data
			if c.gzip {
				var buf bytes.Buffer
				zw := gzip.NewWriter(&buf)
				zw.Write(data)
				zw.Close()
				// A truncated gzip file: cut the compressed stream too.
				data = buf.Bytes()[:buf.Len()-8]
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			src, err := OpenFile(p)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			rep, err := Replay(context.Background(), src, nil, Options{})
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("want a *FileError, got %v", err)
			}
			if !c.gzip && fe.Offset != int64(offs[keep]) {
				t.Errorf("offset %d, want %d: %v", fe.Offset, offs[keep], err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "byte offset") {
				t.Errorf("error %q should say %q and name the byte offset", err, c.want)
			}
			if !c.gzip && rep.Records != keep {
				t.Errorf("kept %d records, want %d", rep.Records, keep)
			}
			if c.gzip && rep.Records < keep {
				t.Errorf("kept %d records, want at least %d", rep.Records, keep)
			}
			var pkts uint64
			for _, m := range rep.MACs {
				pkts += m.Packets
			}
			if pkts != rep.Records {
				t.Errorf("per-MAC packets add up to %d, want the %d records read", pkts, rep.Records)
			}
		})
	}
}

func TestOpenFileRejectsNonCaptures(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"empty": nil,
		"text":  []byte("this is not a capture file at all, not even close\n"),
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		if _, err := OpenFile(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: want an error naming the file, got %v", name, err)
		}
	}
	// Linux cooked capture (tcpdump -i any) is refused with advice.
	p := filepath.Join(dir, "sll.pcap")
	f, _ := os.Create(p)
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65535, layers.LinkTypeLinuxSLL)
	f.Close()
	if _, err := OpenFile(p); err == nil || !strings.Contains(err.Error(), "only Ethernet") {
		t.Errorf("cooked capture: got %v", err)
	}
}

// recordingSink keeps what Replay hands to a sink.
type recordingSink struct {
	traffic []schema.TrafficSummary
	flows   []schema.Flow
	binds   []schema.Binding
}

func (s *recordingSink) Traffic(b []schema.TrafficSummary) {
	for _, t := range b {
		t.IPs = slices.Clone(t.IPs)
		s.traffic = append(s.traffic, t)
	}
}
func (s *recordingSink) FlowStarts(f []schema.Flow)         { s.flows = append(s.flows, f...) }
func (s *recordingSink) CaptureHealth(schema.CaptureHealth) {}
func (s *recordingSink) Bindings(b []schema.Binding)        { s.binds = append(s.binds, b...) }

// packetSource replays frames held in memory with the given timestamps.
type packetSource struct {
	frames [][]byte
	times  []int64
	i      int
}

func (p *packetSource) Read(pkt *Packet) error {
	if p.i == len(p.frames) {
		return io.EOF
	}
	pkt.Data, pkt.WireLen, pkt.Time = p.frames[p.i], len(p.frames[p.i]), p.times[p.i]
	p.i++
	return nil
}

func (p *packetSource) Close() error { return nil }

func TestReplayHeartbeatChannelRefreshAndSinkPeriods(t *testing.T) {
	agent := schema.MustParseMAC("02:00:00:00:02:01")
	sensorMAC := schema.MustParseMAC("02:00:00:00:02:02")
	ack := testFrame(agent, sensorMAC, nil, 66)
	ack[14+9] = ProtoTCP
	binary.BigEndian.PutUint16(ack[14+22:], DefaultLANPort)
	ack[14+20+12], ack[14+20+13] = 5<<4, tcpFlagACK
	src := &packetSource{}
	base := int64(1_700_000_000) * 1e9
	// One packet a second for 25 s on one established connection.
	for i := range 25 {
		src.frames = append(src.frames, ack)
		src.times = append(src.times, base+int64(i)*1e9)
	}
	sink := &recordingSink{}
	rep, err := Replay(context.Background(), src, sink, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sink.flows) != 3 { // at 0 s, 10 s and 20 s
		t.Errorf("%d heartbeat-channel flow starts, want 3: %+v", len(sink.flows), sink.flows)
	}
	for _, f := range sink.flows {
		if f.SrcMAC != agent || f.DstPort != DefaultLANPort || f.Proto != ProtoTCP || !f.SrcIP.Is4() {
			t.Errorf("flow %+v", f)
		}
	}
	var pkts uint64
	for _, s := range sink.traffic {
		if s.MAC == agent {
			pkts += s.Packets
			if s.LastSeen.Before(s.FirstSeen) || s.LastSeen.UnixNano() < base {
				t.Errorf("summary times %v..%v are not packet times", s.FirstSeen, s.LastSeen)
			}
		}
	}
	if pkts != 25 || len(sink.traffic) < 20 {
		t.Errorf("sink got %d packets in %d summaries, want 25 in one summary per packet-time period", pkts, len(sink.traffic))
	}
	if got := findMAC(t, rep, agent.String()).Packets; got != 25 {
		t.Errorf("report counts %d packets, want 25", got)
	}
	traffic := 0
	for _, b := range sink.binds {
		if b.Source == SourceTraffic && b.MAC == agent {
			traffic++
		}
	}
	if traffic != 1 {
		t.Errorf("%d traffic bindings for one address, want 1 (refresh is 5 minutes)", traffic)
	}
}

// callSink keeps each call's batch apart.
type callSink struct {
	recordingSink
	trafficCalls [][]schema.TrafficSummary
	flowCalls    [][]schema.Flow
}

func (s *callSink) Traffic(b []schema.TrafficSummary) {
	s.trafficCalls = append(s.trafficCalls, slices.Clone(b))
}
func (s *callSink) FlowStarts(f []schema.Flow) { s.flowCalls = append(s.flowCalls, slices.Clone(f)) }

func TestReplayFlowStartsEveryPeriodTrafficEverySecond(t *testing.T) {
	src := &packetSource{}
	base := int64(1_700_000_000) * 1e9
	const step = 100 * time.Millisecond
	for i := range 30 { // a new UDP 5-tuple every 100 ms for 3 s
		ip := layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(192, 0, 2, 1), DstIP: net.IPv4(192, 0, 2, 2)}
		src.frames = append(src.frames, serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
			&ip, &layers.UDP{SrcPort: layers.UDPPort(1000 + i), DstPort: 53}))
		src.times = append(src.times, base+int64(i)*int64(step))
	}
	sink := &callSink{}
	if _, err := Replay(context.Background(), src, sink, Options{}); err != nil {
		t.Fatal(err)
	}
	flows := 0
	for _, call := range sink.flowCalls {
		flows += len(call)
		if span := call[len(call)-1].Time.Sub(call[0].Time); span >= 250*time.Millisecond {
			t.Errorf("one batch of flow starts spans %v, more than a 250 ms period", span)
		}
	}
	if flows != 30 || len(sink.flowCalls) < 11 {
		t.Errorf("%d flow starts in %d batches, want 30 in one batch per 250 ms", flows, len(sink.flowCalls))
	}
	var packets uint64
	for _, call := range sink.trafficCalls {
		if len(call) != 1 || call[0].MAC != schema.MACFromUint64(mac48(macA)) {
			t.Fatalf("traffic batch %+v, want macA's summary alone", call)
		}
		s := call[0]
		packets += s.Packets
		if span := s.LastSeen.Sub(s.FirstSeen); span >= time.Second {
			t.Errorf("one summary spans %v, more than a second", span)
		}
	}
	if packets != 30 || len(sink.trafficCalls) < 3 || len(sink.trafficCalls) > 4 {
		t.Errorf("%d packets in %d traffic summaries, want 30 in one summary per second", packets, len(sink.trafficCalls))
	}
}
