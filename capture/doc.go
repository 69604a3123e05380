// Package capture is the sensor's view of the mirror port. It reads frames
// from a Source (a TPACKET_V3 ring, a plain AF_PACKET socket or a pcap /
// pcapng file), accounts every frame per MAC with a hand-written header parse
// that allocates nothing per packet, extracts flow starts and IP<->MAC
// bindings (ARP, DHCPv4, IPv6 neighbour discovery, traffic), measures what
// the kernel dropped, and hands it to a Sink: flow starts and bindings every
// 250 ms, per-MAC traffic every second (Options).
//
// Live capture runs one worker per socket of a PACKET_FANOUT_HASH group;
// each worker keeps its own tables and hands over its flow starts on every
// reporting tick and the stations active in the traffic period on every
// fourth, so the per-packet path takes no lock and does no channel
// operation.
// Replay runs the same worker over a file with packet timestamps as the
// clock.
package capture
