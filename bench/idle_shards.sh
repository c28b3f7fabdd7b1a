#!/usr/bin/env bash
# Issue #7's idle-cluster target: a three-node cluster (three `shoal node`
# processes) with one stream of N shards. Prints how long creating the stream
# took, the CPU the three processes use together while idle, and their memory.
#
#   bench/idle_shards.sh SHOAL_BINARY [SHARDS=1000]
set -euo pipefail
shoal=${1:?usage: idle_shards.sh SHOAL_BINARY [SHARDS]}
shards=${2:-1000}
work=$(mktemp -d /tmp/shoal-idle-XXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
peers="1=az-a@127.0.0.1:50071,2=az-b@127.0.0.1:50072,3=az-c@127.0.0.1:50073"
for i in 1 2 3; do
  zone=$(echo "az-a az-b az-c" | cut -d' ' -f$i)
  RUST_LOG=warn "$shoal" node --id $i --zone "$zone" --listen 127.0.0.1:5007$i --advertise 127.0.0.1:5007$i \
    --data-dir "$work/shoal-$i" --aws-listen "" --metrics-addr "" --peer "$peers" >"$work/shoal-$i.log" 2>&1 &
  pids+=($!)
done
sleep 3
start=$(date +%s.%N)
"$shoal" --endpoint 127.0.0.1:50071 stream create idle --shards "$shards" >/dev/null
created=$(python3 -c "print(round($(date +%s.%N) - $start, 2))")
echo "created a stream of $shards shards (ACTIVE) in ${created} s"
sleep 10
ticks() { local total=0; for pid in "${pids[@]}"; do set -- $(cut -d' ' -f14,15 "/proc/$pid/stat"); total=$((total + $1 + $2)); done; echo $total; }
hz=$(getconf CLK_TCK)
before=$(ticks); sleep 20; after=$(ticks)
cpu=$(python3 -c "print(round(($after - $before) * 100 / $hz / 20, 1))")
rss=0; for pid in "${pids[@]}"; do rss=$((rss + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status"))); done
echo "idle: ${cpu}% of one core for the three nodes together; memory $((rss / 1024)) MiB RSS in total"
