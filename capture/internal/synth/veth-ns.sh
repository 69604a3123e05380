# Sourced by the live benchmarks: creates a network namespace ($ns) with a
# veth pair, vsend (where tcpreplay plays) and vcap (where the capture
# program listens), IPv6 off so the kernel adds no frames of its own, and a
# scratch directory ($work); both go away when the script exits. inns runs
# a command inside the namespace.
ns=tbbench$$
work=$(mktemp -d)
cleanup() {
	ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
inns() { ip netns exec "$ns" "$@"; }
inns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
inns ip link add vsend type veth peer name vcap
inns ip link set vsend up
inns ip link set vcap up
inns ip link set lo up
