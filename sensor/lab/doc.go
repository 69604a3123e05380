// Package lab owns tapbeat's network-namespace lab: a switch with a mirror
// (SPAN) port built from Linux network namespaces, veth pairs, a bridge and
// tc mirred, so the sensor, its capture and the endpoint agents can be run
// and tested against real frames on one machine.
//
// A lab named NAME is made of these namespaces:
//
//   - NAME-switch: the bridge br0 (the switch). Every host port on it has an
//     ingress qdisc with a u32 filter whose mirred action copies each frame
//     entering the switch to the port "span", one end of a veth pair, as a
//     real switch's SPAN port does. IPv6 is disabled there, so the switch
//     itself never sends a frame.
//   - NAME-sensor: the sensor. lan0 is its LAN port on the bridge (the
//     address the LAN-zone listener uses); mirror0 is the capture side of
//     the mirror veth: up, promiscuous, no address, ARP off and IPv6
//     disabled, so the sensor never transmits on it.
//   - NAME-ep1 ... NAME-epN: the endpoints, each with eth0 (and eth1 when
//     multi-homed) on its own bridge port, an IPv4 address in the lab's
//     private subnet and an EUI-64 IPv6 link-local address.
//
// Hosts send wire-sized frames only (gso_max_segs 1) and compute their own
// checksums (ethtool -K IFACE tx off), so the mirror carries what a real
// SPAN port would: no TSO super-frames, no unfilled TCP/UDP checksums.
//
// A Lab runs commands and long-lived processes inside its hosts (Run,
// Command, Start), makes traffic between them (Ping, TCPExchange,
// UDPExchange, any socket opened with Listen, Dial or Do, or raw frames
// with any source MAC or an 802.1Q tag with SendFrames), serves and
// acquires DHCP leases (StartDHCPServer, AcquireLease), pulls the mirror
// cable or a host's port (SetMirrorLink, SetPortLink), and checks that the
// mirror copies every frame exactly once (VerifyMirror).
//
// Several labs make a network of sites, each with its own switch and
// sensor: Join links their switches in a line with trunk ports that carry
// no mirror filter, so a frame is mirrored only on the switch where it
// entered from a host, and routes every lab's subnet on-link in every
// host, so any host reaches any other (the labs need distinct subnets).
// MovePort moves a host's cable to another lab's switch and back;
// Partition cuts a host off from given addresses with nftables, as when a
// WAN link between sites goes down, until its heal function runs.
//
// Up creates a lab, writes a state file describing everything it made,
// and returns once every switch port forwards and every link has its
// carrier, so the first frame sent crosses the switch. Teardown and
// (*Lab).Down remove it again, from the state file or, when that is gone,
// from the name prefix alone. Every operation needs root, the ip, tc and
// bridge programs (iproute2) and ethtool; ping (iputils) is used for pings,
// dnsmasq and busybox for DHCP, nft (nftables) for partitions.
//
// Lab names contain no '-', so "NAME-" is a prefix no other lab's
// namespaces share.
package lab
