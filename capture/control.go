package capture

import (
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Binding sources, as schema.Binding.Source.
const (
	SourceARP     = "arp"
	SourceDHCP    = "dhcp"
	SourceNDP     = "ndp"
	SourceTraffic = "traffic"
)

// Evidence is what one control-plane frame says about a MAC: the address it
// uses or was given, and for DHCP the host name (option 12) and client
// identifier (option 61) it sent. IP is invalid when the frame names none (a
// DHCPDISCOVER, say).
type Evidence struct {
	MAC      uint64
	IP       netip.Addr
	Hostname string
	ClientID []byte
	Source   string
}

// isControl reports whether the frame h describes goes to the control-plane
// decoder: ARP, DHCPv4 and IPv6 neighbour solicitations and advertisements.
func isControl(h *Header) bool {
	switch {
	case h.EtherType == EtherTypeARP:
		return true
	case h.HasPorts && h.Proto == ProtoUDP:
		return (h.SrcPort == 67 || h.SrcPort == 68) && (h.DstPort == 67 || h.DstPort == 68)
	case h.Proto == ProtoICMPv6 && !h.HasPorts && h.L4Offset > 0:
		return h.ICMPv6Type == 135 || h.ICMPv6Type == 136
	}
	return false
}

// ControlDecoder learns IP<->MAC evidence from ARP, DHCPv4 and IPv6 neighbour
// discovery with gopacket's DecodingLayerParser, reusing its layers from
// frame to frame. It is not safe for concurrent use: each worker has one.
type ControlDecoder struct {
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	ip4     layers.IPv4
	ip6     layers.IPv6
	udp     layers.UDP
	arp     layers.ARP
	dhcp    layers.DHCPv4
	icmp6   layers.ICMPv6
	ns      layers.ICMPv6NeighborSolicitation
	na      layers.ICMPv6NeighborAdvertisement
	parser  *gopacket.DecodingLayerParser
	decoded []gopacket.LayerType
}

// NewControlDecoder returns a decoder for Ethernet frames.
func NewControlDecoder() *ControlDecoder {
	d := &ControlDecoder{decoded: make([]gopacket.LayerType, 0, 8)}
	d.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet)
	// A sparse container finds each next layer's decoder by indexing
	// instead of the default map's hashing; these layer types are small.
	var dlc gopacket.DecodingLayerContainer = gopacket.DecodingLayerSparse(nil)
	for _, l := range []gopacket.DecodingLayer{&d.eth, &d.dot1q, &d.ip4, &d.ip6,
		&d.udp, &d.arp, &d.dhcp, &d.icmp6, &d.ns, &d.na} {
		dlc = dlc.Put(l)
	}
	d.parser.SetDecodingLayerContainer(dlc)
	d.parser.IgnoreUnsupported = true
	return d
}

func macOf(hw net.HardwareAddr) (uint64, bool) {
	if len(hw) != 6 {
		return 0, false
	}
	return mac48(hw), true
}

// bindable reports whether a can stand for one host's address: a unicast,
// specified address.
func bindable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsMulticast()
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	if a.Is4In6() {
		a = a.Unmap()
	}
	return a
}

// Decode appends to out what frame says about MAC<->IP bindings. Frames that
// do not decode add nothing.
func (d *ControlDecoder) Decode(frame []byte, out []Evidence) []Evidence {
	// Errors mean a truncated or malformed frame; whatever decoded before
	// the error is still used.
	_ = d.parser.DecodeLayers(frame, &d.decoded)
	for _, lt := range d.decoded {
		switch lt {
		case layers.LayerTypeARP:
			out = d.fromARP(out)
		case layers.LayerTypeDHCPv4:
			out = d.fromDHCP(out)
		case layers.LayerTypeICMPv6NeighborSolicitation:
			out = d.fromNS(out)
		case layers.LayerTypeICMPv6NeighborAdvertisement:
			out = d.fromNA(out)
		}
	}
	return out
}

func (d *ControlDecoder) fromARP(out []Evidence) []Evidence {
	a := &d.arp
	if a.AddrType != layers.LinkTypeEthernet || a.Protocol != layers.EthernetTypeIPv4 {
		return out
	}
	mac, ok := macOf(a.SourceHwAddress)
	ip := addrOf(a.SourceProtAddress)
	// An ARP probe (sender 0.0.0.0) claims nothing yet.
	if !ok || !bindable(ip) || mac == 0 {
		return out
	}
	return append(out, Evidence{MAC: mac, IP: ip, Source: SourceARP})
}

func (d *ControlDecoder) fromDHCP(out []Evidence) []Evidence {
	p := &d.dhcp
	mac, ok := macOf(p.ClientHWAddr)
	if !ok || p.HardwareType != layers.LinkTypeEthernet {
		return out
	}
	ev := Evidence{MAC: mac, Source: SourceDHCP}
	var msgType layers.DHCPMsgType
	var requested netip.Addr
	for _, o := range p.Options {
		switch o.Type {
		case layers.DHCPOptMessageType:
			if len(o.Data) == 1 {
				msgType = layers.DHCPMsgType(o.Data[0])
			}
		case layers.DHCPOptHostname:
			ev.Hostname = string(o.Data)
		case layers.DHCPOptClientID:
			ev.ClientID = append([]byte(nil), o.Data...)
		case layers.DHCPOptRequestIP:
			if len(o.Data) == 4 {
				requested = netip.AddrFrom4([4]byte(o.Data))
			}
		}
	}
	switch {
	case p.Operation == layers.DHCPOpReply && msgType == layers.DHCPMsgTypeAck:
		ev.IP = addrOf(p.YourClientIP)
		if !bindable(ev.IP) {
			// An ACK to an INFORM assigns nothing: the client already
			// has ciaddr.
			ev.IP = addrOf(p.ClientIP)
		}
	case p.Operation == layers.DHCPOpReply:
		return out // offers and NAKs bind nothing
	case msgType == layers.DHCPMsgTypeRequest || msgType == layers.DHCPMsgTypeInform:
		ev.IP = requested
		if !ev.IP.IsValid() {
			ev.IP = addrOf(p.ClientIP)
		}
	}
	if !bindable(ev.IP) {
		ev.IP = netip.Addr{}
	}
	if !ev.IP.IsValid() && ev.Hostname == "" && ev.ClientID == nil {
		return out
	}
	return append(out, ev)
}

func (d *ControlDecoder) linkOption(opts layers.ICMPv6Options, typ layers.ICMPv6Opt) (uint64, bool) {
	for _, o := range opts {
		if o.Type == typ {
			return macOf(o.Data)
		}
	}
	return 0, false
}

func (d *ControlDecoder) fromNS(out []Evidence) []Evidence {
	src := addrOf(d.ip6.SrcIP)
	mac, ok := d.linkOption(d.ns.Options, layers.ICMPv6OptSourceAddress)
	if !ok {
		mac, ok = macOf(d.eth.SrcMAC)
	}
	if !ok {
		return out
	}
	if bindable(src) {
		return append(out, Evidence{MAC: mac, IP: src, Source: SourceNDP})
	}
	// Duplicate address detection: the sender is about to use the target.
	if t := addrOf(d.ns.TargetAddress); bindable(t) {
		return append(out, Evidence{MAC: mac, IP: t, Source: SourceNDP})
	}
	return out
}

func (d *ControlDecoder) fromNA(out []Evidence) []Evidence {
	mac, ok := d.linkOption(d.na.Options, layers.ICMPv6OptTargetAddress)
	if !ok {
		mac, ok = macOf(d.eth.SrcMAC)
	}
	t := addrOf(d.na.TargetAddress)
	if !ok || !bindable(t) {
		return out
	}
	return append(out, Evidence{MAC: mac, IP: t, Source: SourceNDP})
}
