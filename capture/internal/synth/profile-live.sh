#!/bin/bash
# Records the CPU profile that builds of tapbeat are optimised with
# (profile-guided optimisation, `go build -pgo`): capbench, built without
# a profile, captures LOOPS top-speed tcpreplay passes of a synthetic
# capture on one end of a veth pair inside a namespace this script
# creates, and its CPU profile is written to OUT (by default
# cmd/tapbeat/default.pgo, which `go build` of the sensor picks up). The
# hot path it records is the capture path, where the sensor spends its
# CPU on a busy mirror port. Run as root from the repository root:
#   capture/internal/synth/profile-live.sh [OUT] [LOOPS]
set -euo pipefail
out=${1:-cmd/tapbeat/default.pgo}
loops=${2:-30}
file=build/synth-2m.pcap
if [ ! -f "$file" ]; then
	mkdir -p build
	go run ./capture/internal/synth/pcapgen -o "$file" -frames 2000000 -macs 5000
fi
go build -pgo=off -o build/capbench-nopgo ./capture/internal/capbench
# shellcheck source=capture/internal/synth/veth-ns.sh
. "$(dirname "$0")/veth-ns.sh"
ip netns exec "$ns" build/capbench-nopgo -i vcap -ready "$work/ready" -cpuprofile "$work/cpu.pprof" >"$work/out.json" &
pid=$!
while [ ! -f "$work/ready" ]; do sleep 0.05; done
inns tcpreplay --topspeed --loop="$loops" -q -i vsend "$file" >/dev/null 2>&1
sleep 0.5
kill -INT $pid
wait $pid
cp "$work/cpu.pprof" "$out"
python3 - "$work/out.json" "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f'{sys.argv[2]}: {d["kernel_packets"]} frames, {d["cpu_capture_s"]:.2f} s of CPU, {d["kernel_drops"]} dropped')
PY
