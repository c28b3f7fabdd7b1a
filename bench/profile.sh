#!/usr/bin/env bash
# Profiles a three-node Shoal cluster under a `shoal bench` workload: starts three
# `shoal node` processes on loopback (limits off), runs the benchmark with the
# given flags, samples the nodes with `perf record` for 8 s in the middle of the
# run, prints the hottest functions and threads, and scrapes each node's metrics
# into $OUT (default /tmp/shoal-profile).
#
#   bench/profile.sh SHOAL_BINARY [shoal bench flags…]
#   e.g. bench/profile.sh target/release/shoal --shards 16 --record-bytes 1024 \
#          --producers 4 --in-flight 8 --batch 100 --duration-secs 12 --warmup-secs 3
set -euo pipefail
shoal=${1:?usage: profile.sh SHOAL_BINARY [shoal bench flags]}
shift
out=${OUT:-/tmp/shoal-profile}
mkdir -p "$out"
work=$(mktemp -d /tmp/shoal-prof-XXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
command -v perf >/dev/null || { echo "perf is missing: apt-get install -y linux-perf" >&2; exit 1; }
. "$(dirname "$0")/shoal_nodes.sh"
start_shoal_nodes "$shoal" "$work" 1
sleep 4
( sleep 6; perf record -F 400 -g -o "$out/perf.data" -p "$(IFS=,; echo "${pids[*]}")" -- sleep 8 >/dev/null 2>&1 ) &
perf_pid=$!
"$shoal" --endpoint 127.0.0.1:50061 bench --target shoal "$@"
wait "$perf_pid" || true
for i in 1 2 3; do curl -s "127.0.0.1:909$i/metrics" > "$out/metrics-$i.txt" || true; done
echo "== hottest functions (self time, all three nodes)"
perf report -i "$out/perf.data" --stdio --no-children --sort sym -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25 | cut -c1-140
echo "== by thread"
perf report -i "$out/perf.data" --stdio --no-children --sort comm -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -6
echo "perf data and metrics are in $out"
