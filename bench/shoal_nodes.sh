# Sourced by the bench scripts: start_shoal_nodes SHOAL WORK_DIR [METRICS]
# starts three `shoal node` processes on loopback (zones az-a/b/c, gRPC on
# 127.0.0.1:50061-50063, throughput limits off, logs in WORK_DIR) and appends
# their pids to the caller's `pids` array. With METRICS=1 node i serves
# Prometheus metrics on 127.0.0.1:909i. NODE_WORKER_THREADS=N gives each node N
# tokio workers (`shoal --worker-threads`; the client keeps its own default).
start_shoal_nodes() {
  local shoal=$1 work=$2 metrics=${3:-0} i zone metrics_addr workers=()
  [ -n "${NODE_WORKER_THREADS:-}" ] && workers=(--worker-threads "$NODE_WORKER_THREADS")
  local peers="1=az-a@127.0.0.1:50061,2=az-b@127.0.0.1:50062,3=az-c@127.0.0.1:50063"
  # A benchmark measures the system, not Kinesis's per-shard quotas: limits off.
  printf '[limits]\nenabled = false\n' > "$work/node.toml"
  for i in 1 2 3; do
    zone=$(echo "az-a az-b az-c" | cut -d' ' -f$i)
    metrics_addr=""
    [ "$metrics" = 1 ] && metrics_addr="127.0.0.1:909$i"
    RUST_LOG=warn "$shoal" "${workers[@]}" node --config "$work/node.toml" --id $i --zone "$zone" --listen 127.0.0.1:5006$i \
      --advertise 127.0.0.1:5006$i --data-dir "$work/shoal-$i" --aws-listen "" --metrics-addr "$metrics_addr" \
      --peer "$peers" >"$work/shoal-$i.log" 2>&1 &
    pids+=($!)
  done
}
