package capture

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
)

// ipv4Frame builds an untagged IPv4 frame of n bytes (at least 38) with a
// header of ihl bytes, protocol proto, the given fragment field and, from
// the transport header on, source and destination ports.
func ipv4Frame(n, ihl int, proto uint8, frag uint16, sport, dport uint16) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b[12:], EtherTypeIPv4)
	b[14] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[20:], frag)
	b[23] = proto
	if l4 := 14 + ihl; n >= l4+4 {
		binary.BigEndian.PutUint16(b[l4:], sport)
		binary.BigEndian.PutUint16(b[l4+2:], dport)
	}
	return b
}

func etherFrame(n int, etherType uint16, byte20 uint8) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b[12:], etherType)
	if n > 20 {
		b[20] = byte20
	}
	return b
}

// TestHeaderRulesKeepControlFramesWhole runs the built-in filter's rules in
// a BPF interpreter: ordinary TCP and UDP frames are cut after the first
// transportBytes of their transport header, anything the control-plane
// decoder reads or the rules cannot judge stays whole, and no frame is
// dropped (a cBPF load past the end of a frame would drop it).
func TestHeaderRulesKeepControlFramesWhole(t *testing.T) {
	vm, err := bpf.NewVM(headerRules())
	if err != nil {
		t.Fatal(err)
	}
	const whole = -1
	cut4 := func(ihl int) int { return 14 + ihl + transportBytes }
	cases := []struct {
		name  string
		frame []byte
		want  int // bytes kept, or whole
	}{
		{"IPv4 TCP", ipv4Frame(600, 20, ProtoTCP, 0, 40000, 443), cut4(20)},
		{"IPv4 TCP with options", ipv4Frame(600, 60, ProtoTCP, 0, 40000, 443), cut4(60)},
		{"IPv4 TCP to the LAN-zone port", ipv4Frame(300, 20, ProtoTCP, 0, 40000, DefaultLANPort), cut4(20)},
		{"IPv4 UDP (DNS)", ipv4Frame(300, 20, ProtoUDP, 0, 40000, 53), cut4(20)},
		{"IPv4 UDP with options", ipv4Frame(300, 24, ProtoUDP, 0, 40000, 53), cut4(24)},
		{"short IPv4 TCP, under the snap length", ipv4Frame(40, 20, ProtoTCP, 0, 40000, 22), 40},
		{"DHCP request", ipv4Frame(400, 20, ProtoUDP, 0, 68, 67), whole},
		{"DHCP reply", ipv4Frame(400, 20, ProtoUDP, 0, 67, 68), whole},
		{"DHCP to port 67 from elsewhere", ipv4Frame(400, 20, ProtoUDP, 0, 40000, 67), whole},
		{"DHCP behind IPv4 options", ipv4Frame(400, 24, ProtoUDP, 0, 40000, 68), whole},
		{"later IPv4 fragment of UDP", ipv4Frame(400, 20, ProtoUDP, 0x00b9, 0, 0), whole},
		{"IPv4 UDP cut before its ports", ipv4Frame(40, 60, ProtoUDP, 0, 0, 0), whole},
		{"IPv4 ICMP", ipv4Frame(300, 20, 1, 0, 0, 0), whole},
		{"ARP", etherFrame(60, EtherTypeARP, 0), whole},
		{"IPv6 TCP", etherFrame(300, EtherTypeIPv6, ProtoTCP), ipv6HeaderSnap},
		{"IPv6 UDP", etherFrame(300, EtherTypeIPv6, ProtoUDP), ipv6HeaderSnap},
		{"IPv6 neighbour discovery", etherFrame(300, EtherTypeIPv6, ProtoICMPv6), whole},
		{"IPv6 with a hop-by-hop header", etherFrame(300, EtherTypeIPv6, 0), whole},
		{"inner VLAN tag left in the frame", etherFrame(300, EtherTypeVLAN, 0), whole},
		{"runt claiming IPv4", etherFrame(20, EtherTypeIPv4, 0), whole},
		{"runt claiming IPv6", etherFrame(21, EtherTypeIPv6, ProtoTCP), whole},
		{"bare Ethernet header", etherFrame(14, EtherTypeIPv4, 0), whole},
	}
	var h Header
	for _, c := range cases {
		want := len(c.frame)
		if c.want != whole {
			want = c.want
		}
		verdict, err := vm.Run(c.frame)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := min(verdict, len(c.frame)) // the kernel keeps no more than the frame
		if c.want == whole && verdict != fullFrame {
			t.Errorf("%s: verdict %d, want %d (the whole frame)", c.name, verdict, fullFrame)
		}
		if got != want {
			t.Errorf("%s (%d bytes): filter keeps %d bytes, want %d", c.name, len(c.frame), got, want)
		}
		// What is kept of a cut frame still gives the parser its ports
		// and TCP flags.
		if c.want != whole && len(c.frame) > got {
			var full Header
			if ParseHeader(c.frame, &full) != ParseHeader(c.frame[:got], &h) || h != full {
				t.Errorf("%s: the cut frame parses as %+v, the whole one as %+v", c.name, h, full)
			}
		}
	}
}
