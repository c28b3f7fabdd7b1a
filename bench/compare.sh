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
. "$(dirname "$0")/shoal_nodes.sh"
start_shoal_nodes "$shoal" "$work"
for i in 1 2 3; do
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
# The first three pids are the Shoal nodes, the next three the NATS servers: the
# table reports each system's CPU ("srv cores") and the ratio of records per core.
"$shoal" --endpoint 127.0.0.1:50061 bench --target both --workload "$(dirname "$0")/workloads.toml" \
  --nats 127.0.0.1:4222,127.0.0.1:4223,127.0.0.1:4224 \
  --shoal-pids "${pids[0]},${pids[1]},${pids[2]}" --nats-pids "${pids[3]},${pids[4]},${pids[5]}" "$@"
