#!/bin/bash
# Records the small reference captures in this directory from real Linux
# stacks in throw-away network namespaces, then writes each file's expected
# per-MAC results: NAME.tshark.txt (tshark -n -q -z endpoints,eth) and
# NAME.json (tapbeat replay --format json, to be reviewed before commit).
# Needs root, iproute2, tcpdump, tshark, dnsmasq, busybox; run from the
# repository root: testdata/capture/record.sh
set -euo pipefail
cd "$(dirname "$0")"
tb=${TAPBEAT:-../../bin/tapbeat}
sfx=$$
A=tbrA$sfx B=tbrB$sfx
cleanup() {
	ip netns pids "$A" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns pids "$B" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns del "$A" 2>/dev/null || true
	ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$A"
ip netns add "$B"
ip link add tba$sfx netns "$A" address 02:00:00:00:00:0a type veth peer name tbb$sfx netns "$B" address 02:00:00:00:00:0b
ina() { ip netns exec "$A" "$@"; }
inb() { ip netns exec "$B" "$@"; }
ina ip link set lo up
inb ip link set lo up
ina ip link set tba$sfx up
inb ip link set tbb$sfx up

# record NAME CMD...: capture on A's end while CMD runs.
record() {
	local name=$1
	shift
	ip netns exec "$A" tcpdump -n -U -i tba$sfx -w "$name.pcap" 2>/dev/null &
	local pid=$!
	sleep 1
	"$@"
	sleep 0.5
	kill -INT $pid
	wait $pid || true
}

# IPv4: ARP then ping, both ways.
ina ip addr add 192.0.2.10/24 dev tba$sfx
inb ip addr add 192.0.2.11/24 dev tbb$sfx
ping4() {
	ina ping -n -c 3 -i 0.2 192.0.2.11 >/dev/null
	inb ping -n -c 2 -i 0.2 -s 1400 192.0.2.10 >/dev/null
	inb busybox arping -c 1 -U -I tbb$sfx 192.0.2.11 >/dev/null || true
}
record ping-arp ping4

# TCP and UDP over IPv4 (the neighbours are already known).
tcpudp() {
	inb nc -l -p 8347 >/dev/null &
	local l=$!
	inb nc -u -l 5353 >/dev/null &
	local u=$!
	sleep 0.3
	echo "heartbeat" | ina nc -q 1 192.0.2.11 8347 || true
	echo "datagram" | ina nc -u -w 1 192.0.2.11 5353 || true
	kill $l $u 2>/dev/null || true
}
record tcp-udp tcpudp

# IPv6 neighbour discovery and ping over fixed addresses (no DAD delay).
ndp() {
	ina ip -6 addr add 2001:db8::a/64 dev tba$sfx nodad
	inb ip -6 addr add 2001:db8::b/64 dev tbb$sfx nodad
	sleep 0.5
	ina ping -6 -n -c 3 -i 0.2 2001:db8::b >/dev/null
}
record ndp ndp

# DHCP: dnsmasq serves B's side, busybox udhcpc asks from A with a host name.
ina ip addr flush dev tba$sfx
dhcp() {
	inb dnsmasq --no-daemon --conf-file=/dev/null --port=0 --no-resolv --no-hosts \
		--interface=tbb$sfx --bind-interfaces --dhcp-range=192.0.2.100,192.0.2.150,1h \
		--dhcp-leasefile=/dev/null --pid-file= >/dev/null 2>&1 &
	local d=$!
	sleep 0.5
	ina busybox udhcpc -i tba$sfx -n -q -f -t 5 -x hostname:tb-client -s /bin/true >/dev/null 2>&1
	kill $d
}
record dhcp dhcp

for f in ping-arp tcp-udp ndp dhcp; do
	tshark -n -q -z endpoints,eth -r "$f.pcap" >"$f.tshark.txt"
	"$tb" replay --pcap "$f.pcap" --format json >"$f.json"
done
ls -l *.pcap
