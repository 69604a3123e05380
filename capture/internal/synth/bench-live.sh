#!/bin/bash
# Live capture benchmark, tapbeat's capture against tcpdump in the same
# invocation. tcpreplay plays a synthetic 2M-frame capture onto one end of a
# veth pair inside a namespace this script creates; the capture program
# listens on the other end. Each round runs both programs at top speed and
# at a paced 100 kpps (1M frames), and prints CPU per packet, kernel drops
# and the share of one core, for the whole run and after start-up (process
# start and ring setup, which both programs pay).
# Run as root from the repository root:
#   capture/internal/synth/bench-live.sh [FILE] [ROUNDS]
# CAPBENCH names another capbench binary to run (e.g. one built from an
# earlier commit); CAPBENCH_FLAGS adds flags to every capbench run (e.g. "-gopacket" for the
# gopacket ring); PROFILE_DIR, when set, keeps a CPU profile of each capbench
# run there (top-1.prof, 100k-1.prof, ...).
set -euo pipefail
file=${1:-build/synth-2m.pcap}
rounds=${2:-2}
if [ ! -f "$file" ]; then
	mkdir -p "$(dirname "$file")"
	go run ./capture/internal/synth/pcapgen -o "$file" -frames 2000000 -macs 5000
fi
mkdir -p build
capbench=${CAPBENCH:-build/capbench}
if [ -z "${CAPBENCH:-}" ]; then
	go build -pgo=cmd/tapbeat/default.pgo -o build/capbench ./capture/internal/capbench
fi
# shellcheck source=capture/internal/synth/veth-ns.sh
. "$(dirname "$0")/veth-ns.sh"
cat "$file" >/dev/null

replay() { # replay MODE: top speed or 100 kpps for 1M frames
	if [ "$1" = top ]; then
		inns tcpreplay --topspeed -q -i vsend "$file" >"$work/replay.log" 2>&1
	else
		inns tcpreplay --pps 100000 --limit 1000000 -q -i vsend "$file" >"$work/replay.log" 2>&1
	fi
	grep -Eo 'Actual: [0-9]+ packets .* seconds|Rated: .*pps' "$work/replay.log" | tr '\n' ' '
}

run_tapbeat() {
	rm -f "$work/ready"
	local prof=()
	if [ -n "${PROFILE_DIR:-}" ]; then
		mkdir -p "$PROFILE_DIR"
		prof=(-cpuprofile "$PROFILE_DIR/$1-$round.prof")
	fi
	# shellcheck disable=SC2086
	ip netns exec "$ns" "$capbench" -i vcap -ready "$work/ready" ${CAPBENCH_FLAGS:-} "${prof[@]}" >"$work/tb.json" &
	local pid=$!
	while [ ! -f "$work/ready" ]; do sleep 0.05; done
	local r
	r=$(replay "$1")
	sleep 1
	kill -INT $pid
	wait $pid
	python3 - "$work/tb.json" "$1" "$r" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
cpu = d["cpu_user_s"] + d["cpu_sys_s"]
cap = d["cpu_capture_s"]
k = d["kernel_packets"]
print(f"tapbeat {sys.argv[2]:>4}: {k} frames seen by the kernel, {d['packets']} counted, {d['kernel_drops']} dropped, "
      f"cpu {cpu:.3f}s (user {d['cpu_user_s']:.3f}s, sys {d['cpu_sys_s']:.3f}s) = {cpu / max(k, 1) * 1e6:.3f} us/packet (after start-up {cap:.3f}s = {cap / max(k, 1) * 1e6:.3f} us/packet); replay {sys.argv[3]}")
with open(sys.argv[1] + ".cpu", "w") as f:
    f.write(f"{cpu / max(k, 1) * 1e6} {k} {d['kernel_drops']} {cpu} {cap}\n")
PY
}

run_tcpdump() {
	ip netns exec "$ns" /usr/bin/time -o "$work/td.time" -f '%U %S %e' tcpdump -B 65536 -n -i vcap -w /dev/null 2>"$work/td.log" &
	local pid=$!
	sleep 1.5
	# CPU tcpdump used before the replay: start-up and ring setup, in clock
	# ticks of 10 ms (fields 14 and 15 of /proc/PID/stat).
	local tdpid startup
	tdpid=$(pgrep -P "$pid" tcpdump)
	startup=$(awk '{print ($14+$15)/100}' "/proc/$tdpid/stat")
	local r
	r=$(replay "$1")
	sleep 1
	pkill -INT -P $pid tcpdump
	wait $pid || true
	local got drop cpu
	got=$(grep -Eo '^[0-9]+ packets received by filter' "$work/td.log" | cut -d' ' -f1)
	drop=$(grep -Eo '^[0-9]+ packets dropped by kernel' "$work/td.log" | cut -d' ' -f1)
	cpu=$(awk '{print $1+$2}' "$work/td.time")
	awk -v m="$1" -v g="$got" -v d="$drop" -v c="$cpu" -v s="$startup" -v r="$r" 'BEGIN {
		printf "tcpdump %4s: %d frames received by filter, %d dropped, cpu %.3fs = %.3f us/packet (after start-up %.2fs = %.3f us/packet); replay %s\n", m, g, d, c, c/g*1e6, c-s, (c-s)/g*1e6, r }'
	awk -v g="$got" -v d="$drop" -v c="$cpu" -v s="$startup" 'BEGIN { print c/g*1e6, g, d, c, (c-s)/g*1e6 }' >"$work/td.cpu"
}

for round in $(seq "$rounds"); do
	echo "round $round"
	for mode in top 100k; do
		run_tapbeat $mode
		run_tcpdump $mode
		read -r tbu k _ tbc tbcap <"$work/tb.json.cpu"
		read -r tdu _ _ tdc tds <"$work/td.cpu"
		awk -v a="$tbu" -v b="$tdu" -v m=$mode -v c="$tbc" -v cap="$tbcap" -v k="$k" -v bs="$tds" 'BEGIN {
			printf "  %s: cpu per packet tcpdump/tapbeat = %.2f (after start-up %.2f)", m, b/a, bs/(cap/k*1e6)
			if (m == "100k") printf "; tapbeat used %.1f%% of one core over the 10 s replay (%.1f%% after start-up)", c/10*100, cap/10*100
			printf "\n" }'
	done
done
