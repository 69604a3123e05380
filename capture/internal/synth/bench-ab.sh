#!/bin/bash
# Alternating A/B of capbench builds at top speed: tcpreplay plays a
# synthetic capture onto one end of a veth pair inside a namespace this
# script creates, and each build in turn captures the other end, ROUNDS
# times. It prints each run's CPU per frame after start-up (and with it,
# and the kernel's drops), then each build's median, minimum and maximum.
# Alternating many short runs is what tells builds apart on a shared,
# noisy machine. The name tcpdump in place of a build runs
# `tcpdump -B 65536 -n -w /dev/null` instead, its start-up read from
# /proc/PID/stat in 10 ms ticks. Run as root from the repository root:
#   capture/internal/synth/bench-ab.sh ROUNDS FILE CAPBENCH|tcpdump...
set -euo pipefail
rounds=$1 file=$2
shift 2
# shellcheck source=capture/internal/synth/veth-ns.sh
. "$(dirname "$0")/veth-ns.sh"
cat "$file" >/dev/null
for r in $(seq "$rounds"); do
	for b in "$@"; do
		if [ "$b" = tcpdump ]; then
			ip netns exec "$ns" /usr/bin/time -o "$work/td.time" -f '%U %S' tcpdump -B 65536 -n -i vcap -w /dev/null 2>"$work/td.log" &
			pid=$!
			sleep 1.5
			tdpid=$(pgrep -P "$pid" tcpdump)
			startup=$(awk '{print ($14+$15)/100}' "/proc/$tdpid/stat")
			inns tcpreplay --topspeed -q -i vsend "$file" >/dev/null 2>&1
			sleep 0.5
			kill -INT "$tdpid"
			wait $pid || true
			got=$(grep -Eo '^[0-9]+ packets received by filter' "$work/td.log" | cut -d' ' -f1)
			drop=$(grep -Eo '^[0-9]+ packets dropped by kernel' "$work/td.log" | cut -d' ' -f1)
			awk -v b="$b" -v r="$r" -v g="$got" -v d="$drop" -v s="$startup" '{
				printf "%s round %s: %.4f us/frame after start-up, %.4f with it, %d dropped\n", b, r, ($1+$2-s)/g*1e6, ($1+$2)/g*1e6, d }' "$work/td.time" | tee -a "$work/runs"
			continue
		fi
		rm -f "$work/ready"
		ip netns exec "$ns" "$b" -i vcap -ready "$work/ready" >"$work/out.json" &
		pid=$!
		while [ ! -f "$work/ready" ]; do sleep 0.05; done
		inns tcpreplay --topspeed -q -i vsend "$file" >/dev/null 2>&1
		sleep 0.5
		kill -INT $pid
		wait $pid
		python3 - "$work/out.json" "$r" "$b" <<'PY' | tee -a "$work/runs"
import json, sys
d = json.load(open(sys.argv[1]))
k = max(d["kernel_packets"], 1)
print(f'{sys.argv[3]} round {sys.argv[2]}: {d["cpu_capture_s"] / k * 1e6:.4f} us/frame after start-up, '
      f'{(d["cpu_user_s"] + d["cpu_sys_s"]) / k * 1e6:.4f} with it, {d["kernel_drops"]} dropped')
PY
	done
done
for b in "$@"; do
	grep "^$b round" "$work/runs" | awk '{print $4}' | sort -n | awk -v b="$b" '
		{ v[NR] = $1 } END { printf "%s: median %.4f us/frame after start-up (min %.4f, max %.4f, %d runs)\n", b, v[int((NR + 1) / 2)], v[1], v[NR], NR }'
done
