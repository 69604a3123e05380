#!/bin/bash
# Offline replay against tcpdump merely copying the same file, in one
# invocation. Generates a 4M-frame, 5,000-station capture (kept out of git)
# unless it exists, then alternates the two programs RUNS times and prints
# the CPU seconds (user+sys) and wall seconds of each run and the ratios of
# the medians: tcpdump / tapbeat (>= 1.0 means tapbeat is at least as fast).
# Run from the repository root after `make build`:
#   capture/internal/synth/bench-offline.sh [FILE] [RUNS]
set -euo pipefail
file=${1:-build/synth-4m.pcap}
runs=${2:-5}
tb=${TAPBEAT:-bin/tapbeat}
if [ ! -f "$file" ]; then
	mkdir -p "$(dirname "$file")"
	go run ./capture/internal/synth/pcapgen -o "$file" -frames 4000000 -macs 5000
fi
cat "$file" >/dev/null # into the page cache
cpu() { # prints "cpu wall" seconds of the command
	/usr/bin/time -o /tmp/bench-offline-time.$$ -f '%U %S %e' "$@" >/dev/null 2>&1
	awk '{printf "%.3f %.3f\n", $1+$2, $3}' /tmp/bench-offline-time.$$
}
: >/tmp/bench-offline.$$
for i in $(seq "$runs"); do
	read -r tc tw < <(cpu tcpdump -n -r "$file" -w /dev/null)
	read -r rc rw < <(cpu "$tb" replay --pcap "$file" --format json)
	echo "run $i: tcpdump cpu ${tc}s wall ${tw}s; tapbeat replay cpu ${rc}s wall ${rw}s"
	echo "$tc $tw $rc $rw" >>/tmp/bench-offline.$$
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mtc=$(cut -d' ' -f1 /tmp/bench-offline.$$ | median)
mtw=$(cut -d' ' -f2 /tmp/bench-offline.$$ | median)
mrc=$(cut -d' ' -f3 /tmp/bench-offline.$$ | median)
mrw=$(cut -d' ' -f4 /tmp/bench-offline.$$ | median)
rm -f /tmp/bench-offline.$$ /tmp/bench-offline-time.$$
awk -v tc="$mtc" -v tw="$mtw" -v rc="$mrc" -v rw="$mrw" 'BEGIN {
	printf "median cpu: tcpdump %.3fs, tapbeat %.3fs, ratio tcpdump/tapbeat %.2f\n", tc, rc, tc/rc
	printf "median wall: tcpdump %.3fs, tapbeat %.3fs, ratio tcpdump/tapbeat %.2f\n", tw, rw, tw/rw
}'
