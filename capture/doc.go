// Package capture is the sensor's view of the mirror port. It reads frames
// from a Source (a TPACKET_V3 ring, a plain AF_PACKET socket or a pcap /
// pcapng file), accounts every frame per MAC with a hand-written header parse
// that allocates nothing per packet, extracts flow starts and IP<->MAC
// bindings (ARP, DHCPv4, IPv6 neighbour discovery, traffic), measures what
// the kernel dropped, and hands all of it to a Sink at most every 250 ms.
//
// Live capture runs one worker per socket of a PACKET_FANOUT_HASH group;
// each worker keeps its own tables and hands over the stations active in the
// period on the reporting tick, so the per-packet path takes no lock and does
// no channel operation.
// Replay runs the same worker over a file with packet timestamps as the
// clock.
package capture
