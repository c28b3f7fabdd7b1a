#!/usr/bin/env bash
# Starts a three-node Shoal cluster (three `shoal node` processes on loopback)
# and a three-server NATS JetStream cluster, runs bench/workloads.toml against
# both with `shoal bench --target both`, prints one table and the ratios, and
# stops everything.
#
#   bench/compare.sh SHOAL_BINARY [extra shoal bench flags…]
set -euo pipefail
shoal=${1:?usage: compare.sh SHOAL_BINARY [flags]}
shift
work=$(mktemp -d /tmp/shoal-bench-XXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v nats-server >/dev/null || { echo "nats-server is missing: apt-get install -y nats-server" >&2; exit 1; }
peers="1=az-a@127.0.0.1:50061,2=az-b@127.0.0.1:50062,3=az-c@127.0.0.1:50063"
# A benchmark measures the system, not Kinesis's per-shard quotas: limits off.
printf '[limits]\nenabled = false\n' > "$work/node.toml"
for i in 1 2 3; do
  zone=$(echo "az-a az-b az-c" | cut -d' ' -f$i)
  RUST_LOG=warn "$shoal" node --config "$work/node.toml" --id $i --zone "$zone" --listen 127.0.0.1:5006$i --advertise 127.0.0.1:5006$i \
    --data-dir "$work/shoal-$i" --aws-listen "" --metrics-addr "" --peer "$peers" >"$work/shoal-$i.log" 2>&1 &
  pids+=($!)
  cat > "$work/nats-$i.conf" <<CONF
server_name: n$i
port: 422$((i + 1))
jetstream { store_dir: "$work/nats-$i" }
cluster {
  name: bench
  port: 623$i
  routes: [nats://127.0.0.1:6231, nats://127.0.0.1:6232, nats://127.0.0.1:6233]
}
CONF
  nats-server -c "$work/nats-$i.conf" >"$work/nats-$i.log" 2>&1 &
  pids+=($!)
done
sleep 5
"$shoal" --endpoint 127.0.0.1:50061 bench --target both --workload "$(dirname "$0")/workloads.toml" \
  --nats 127.0.0.1:4222,127.0.0.1:4223,127.0.0.1:4224 "$@"
