package capture

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// serialize builds a frame with gopacket, checksums and lengths fixed.
func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	for _, l := range ls {
		if nl, ok := l.(interface {
			SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
		}); ok {
			for _, m := range ls {
				if n, ok := m.(gopacket.NetworkLayer); ok {
					nl.SetNetworkLayerForChecksum(n)
				}
			}
		}
	}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseHeader(t *testing.T) {
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IPv4(192, 0, 2, 1), DstIP: net.IPv4(192, 0, 2, 2)}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 8347, SYN: true, Window: 1000}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")}
	udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
	pay := gopacket.Payload("hello")

	cases := []struct {
		name  string
		frame []byte
		check func(t *testing.T, h *Header)
	}{
		{"ipv4-tcp", serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}, ip4, tcp, pay),
			func(t *testing.T, h *Header) {
				if h.IPVersion != 4 || h.Proto != ProtoTCP || !h.HasPorts || h.SrcPort != 40000 || h.DstPort != 8347 ||
					h.TCPFlags&tcpFlagSYN == 0 || addrOf4(h.Src4).String() != "192.0.2.1" || addrOf4(h.Dst4).String() != "192.0.2.2" {
					t.Errorf("%+v", h)
				}
			}},
		{"qinq-ipv6-udp", serialize(t,
			&layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeQinQ},
			&layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeIPv6}, ip6, udp, pay),
			func(t *testing.T, h *Header) {
				if h.Tags != 2 || h.VLAN != [2]uint16{100, 200} || h.EtherType != EtherTypeIPv6 || h.IPVersion != 6 ||
					h.Proto != ProtoUDP || h.SrcPort != 5353 || h.DstPort != 53 ||
					netip.AddrFrom16(h.Src6).String() != "2001:db8::1" || h.L3Offset != 22 {
					t.Errorf("%+v", h)
				}
			}},
		{"arp", serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: macA, SourceProtAddress: []byte{192, 0, 2, 1},
				DstHwAddress: make([]byte, 6), DstProtAddress: []byte{192, 0, 2, 2}}),
			func(t *testing.T, h *Header) {
				if h.EtherType != EtherTypeARP || h.IPVersion != 0 || h.Dst != 0xffffffffffff || h.Src != 0x02000000000a || !isControl(h) {
					t.Errorf("%+v", h)
				}
			}},
		{"ipv4-fragment", serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
			&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, FragOffset: 185,
				SrcIP: net.IPv4(192, 0, 2, 1), DstIP: net.IPv4(192, 0, 2, 2)}, pay),
			func(t *testing.T, h *Header) {
				if !h.NonFirstFragment || h.HasPorts || h.Proto != ProtoUDP {
					t.Errorf("%+v", h)
				}
			}},
		{"ipv6-hop-by-hop-icmpv6", serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6},
			&layers.IPv6{Version: 6, HopLimit: 1, NextHeader: layers.IPProtocolIPv6HopByHop,
				SrcIP: net.ParseIP("fe80::1"), DstIP: net.ParseIP("ff02::16")},
			gopacket.Payload([]byte{58, 0, 5, 2, 0, 0, 1, 0, 143, 0, 0, 0})),
			func(t *testing.T, h *Header) {
				if h.Proto != ProtoICMPv6 || h.ICMPv6Type != 143 || h.HasPorts {
					t.Errorf("%+v", h)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h Header
			if !ParseHeader(c.frame, &h) {
				t.Fatal("ParseHeader refused a whole frame")
			}
			c.check(t, &h)
			// Every cut of the frame parses without panicking and
			// agrees on the MACs.
			for n := range len(c.frame) {
				var hc Header
				if ParseHeader(c.frame[:n], &hc) != (n >= 14) {
					t.Fatalf("cut at %d: wrong verdict", n)
				}
				if n >= 14 && (hc.Src != h.Src || hc.Dst != h.Dst) {
					t.Fatalf("cut at %d: MACs differ", n)
				}
			}
		})
	}
}

func TestParseHeaderAllocatesNothing(t *testing.T) {
	frame := serialize(t, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(192, 0, 2, 1), DstIP: net.IPv4(192, 0, 2, 2)},
		&layers.UDP{SrcPort: 1, DstPort: 2})
	var h Header
	if n := testing.AllocsPerRun(1000, func() { ParseHeader(frame, &h) }); n != 0 {
		t.Errorf("%v allocations per parse", n)
	}
}

// FuzzParseHeader checks the hand-written parser against gopacket's
// decoders on arbitrary frames: it must never panic, and whatever both
// decode must agree.
func FuzzParseHeader(f *testing.F) {
	f.Add(serialize(f, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)},
		&layers.TCP{SrcPort: 1, DstPort: 2, SYN: true}))
	f.Add(serialize(f, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv6},
		&layers.IPv6{Version: 6, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::2")},
		&layers.UDP{SrcPort: 3, DstPort: 4}))
	// Transparent Ethernet bridging: gopacket goes on to decode the inner
	// Ethernet header, whose addresses are not the frame's.
	f.Add(serialize(f, &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeTransparentEthernetBridging},
		&layers.Ethernet{SrcMAC: macB, DstMAC: macA, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)},
		&layers.UDP{SrcPort: 5, DstPort: 6}))
	var (
		outer layers.Ethernet
		eth   layers.Ethernet
		q     layers.Dot1Q
		ip4   layers.IPv4
		ip6   layers.IPv6
		tcp   layers.TCP
		udp   layers.UDP
		lays  []gopacket.LayerType
	)
	p := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &q, &ip4, &ip6, &tcp, &udp)
	p.IgnoreUnsupported = true
	f.Fuzz(func(t *testing.T, frame []byte) {
		var h Header
		if !ParseHeader(frame, &h) {
			if len(frame) >= 14 {
				t.Fatal("refused a frame of 14 bytes or more")
			}
			return
		}
		if h.L3Offset > len(frame) || h.L4Offset > len(frame) {
			t.Fatalf("offsets past the frame: %+v", h)
		}
		_ = p.DecodeLayers(frame, &lays)
		seen := map[gopacket.LayerType]bool{}
		for _, l := range lays {
			seen[l] = true
		}
		// The parser layer may have decoded an inner Ethernet header too,
		// so the frame's own addresses come from a decode of the outer one.
		if err := outer.DecodeFromBytes(frame, gopacket.NilDecodeFeedback); err != nil {
			t.Fatalf("gopacket refused the Ethernet header: %v", err)
		}
		if h.Src != mac48(outer.SrcMAC) || h.Dst != mac48(outer.DstMAC) {
			t.Fatalf("MACs: %x %x vs gopacket %v %v", h.Src, h.Dst, outer.SrcMAC, outer.DstMAC)
		}
		// gopacket decodes only single 802.1Q/802.1ad chains the same way
		// the parser does; compare transport ports when both saw them in
		// an untagged IPv4 frame without options or fragments.
		if h.Tags == 0 && h.IPVersion == 4 && h.HasPorts && seen[layers.LayerTypeIPv4] && ip4.IHL == 5 {
			switch {
			case seen[layers.LayerTypeTCP] && (uint16(tcp.SrcPort) != h.SrcPort || uint16(tcp.DstPort) != h.DstPort):
				t.Fatalf("TCP ports %d>%d vs gopacket %d>%d", h.SrcPort, h.DstPort, tcp.SrcPort, tcp.DstPort)
			case seen[layers.LayerTypeUDP] && (uint16(udp.SrcPort) != h.SrcPort || uint16(udp.DstPort) != h.DstPort):
				t.Fatalf("UDP ports %d>%d vs gopacket %d>%d", h.SrcPort, h.DstPort, udp.SrcPort, udp.DstPort)
			}
		}
	})
}

// FuzzControlDecoder feeds arbitrary frames to the control-plane decoder:
// it must never panic, and every piece of evidence must name a MAC and a
// usable address or a host name.
func FuzzControlDecoder(f *testing.F) {
	for _, name := range []string{"dhcp.pcap", "ping-arp.pcap", "ndp.pcap"} {
		for _, fr := range framesOf(f, "../testdata/capture/"+name) {
			f.Add(fr)
		}
	}
	// Neighbour discovery naming :: or a multicast group as its target.
	for _, target := range []net.IP{net.IPv6zero, net.ParseIP("ff02::1")} {
		ip6 := layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
			SrcIP: net.IPv6unspecified, DstIP: net.ParseIP("ff02::1")}
		icmp := layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
		_ = icmp.SetNetworkLayerForChecksum(&ip6)
		eth := layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv6}
		f.Add(serialize(f, &eth, &ip6, &icmp, &layers.ICMPv6NeighborSolicitation{TargetAddress: target}))
		icmp.TypeCode = layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)
		f.Add(serialize(f, &eth, &ip6, &icmp, &layers.ICMPv6NeighborAdvertisement{TargetAddress: target}))
	}
	d := NewControlDecoder()
	f.Fuzz(func(t *testing.T, frame []byte) {
		evidence := d.Decode(frame, nil)
		checkRepeatedARP(t, d, frame, evidence)
		for _, ev := range evidence {
			if ev.Source == "" {
				t.Fatalf("evidence without a source: %+v", ev)
			}
			if ev.IP.IsValid() && (ev.IP.IsUnspecified() || ev.IP.IsMulticast()) {
				t.Fatalf("unspecified or multicast address as evidence: %+v", ev)
			}
			if !ev.IP.IsValid() && ev.Hostname == "" && ev.ClientID == nil {
				t.Fatalf("empty evidence: %+v", ev)
			}
		}
	})
}

// checkRepeatedARP checks what lets the worker skip decoding a repeated ARP
// claim: for a frame station.repeatsARP takes note of, the evidence depends
// on nothing but the frame up to the ARP sender's address, so any later
// frame that repeats that much gives the same evidence.
func checkRepeatedARP(t *testing.T, d *ControlDecoder, frame []byte, evidence []Evidence) {
	var h Header
	if !ParseHeader(frame, &h) || h.EtherType != EtherTypeARP {
		return
	}
	var s station
	if s.repeatsARP(frame, &h) || s.arpIP == 0 {
		return // not noted: the worker decodes it
	}
	if !s.repeatsARP(frame, &h) {
		t.Fatal("the same ARP frame twice was not taken as a repeat")
	}
	other := slices.Clone(frame)
	for i := h.L3Offset + 18; i < len(other); i++ { // target addresses and anything after them
		other[i] ^= 0x5a
	}
	other[h.L3Offset+6] ^= 0x03 // the operation
	if !s.repeatsARP(other, &h) {
		t.Fatal("an ARP frame with the same sender was not taken as a repeat")
	}
	again := d.Decode(other, nil)
	if !slices.EqualFunc(evidence, again, func(a, b Evidence) bool {
		return a.MAC == b.MAC && a.IP == b.IP && a.Source == b.Source && a.Hostname == b.Hostname
	}) {
		t.Fatalf("a repeated ARP claim gives evidence %+v, the first gave %+v", again, evidence)
	}
}
