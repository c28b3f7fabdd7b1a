//! The node's HTTP side door: Prometheus `/metrics`, and `/health` and `/ready`
//! for load balancers and orchestrators.
//!
//! * `/health` answers 200 while the process serves HTTP at all (liveness).
//! * `/ready` answers 200 once every node of this process knows a metadata
//!   leader (it can take and route calls), else 503 with the reason (readiness);
//!   503 also once a node's storage failed and stopped its Raft groups.
//! * `/debug/raft` shows, for every group a node of this process leads,
//!   openraft's runtime statistics: batch sizes and how long entries spent in
//!   each stage of their life (proposed, received, submitted, persisted,
//!   committed, applied) — where a write's latency goes.
//! * `/debug/rocksdb` shows RocksDB's own report of every node of this process:
//!   flushes, compactions and write stalls per level and column family.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use shoal_node::Node;

/// Installs the Prometheus recorder (before anything records metrics).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

/// Serves `/metrics`, `/health`, `/ready`, `/debug/raft` and `/debug/rocksdb` on
/// `addr` (empty: not at all).
pub async fn serve(addr: &str, handle: PrometheusHandle, nodes: Vec<Arc<Node>>) -> anyhow::Result<()> {
    if addr.is_empty() {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    let app = Router::new()
        .route(
            "/metrics",
            get({
                let nodes = nodes.clone();
                move || {
                    nodes.iter().for_each(|node| shoal_node::storage_metrics::record(node));
                    std::future::ready(handle.render())
                }
            }),
        )
        .route("/health", get(|| std::future::ready("ok\n")))
        .route(
            "/ready",
            get({
                let nodes = nodes.clone();
                move || std::future::ready(readiness(&nodes))
            }),
        )
        .route(
            "/debug/rocksdb",
            get({
                let nodes = nodes.clone();
                move || {
                    std::future::ready(
                        nodes.iter().map(|node| shoal_node::storage_metrics::report(node)).collect::<String>(),
                    )
                }
            }),
        )
        .route("/debug/raft", get(move || raft_stats(nodes.clone())));
    tracing::info!(
        %addr,
        "metrics at /metrics, probes at /health and /ready, Raft stage latencies at /debug/raft, RocksDB at /debug/rocksdb"
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok(())
}

/// Without the `raft-stats` feature openraft keeps no runtime statistics.
#[cfg(not(feature = "raft-stats"))]
async fn raft_stats(_nodes: Vec<Arc<Node>>) -> String {
    "this build keeps no Raft runtime statistics; build with `--features raft-stats` \
     (cargo build --release -p shoal-cli --features raft-stats)\n"
        .into()
}

/// openraft's runtime statistics of every group led by a node of this process, in
/// group order (about eighty lines per group).
#[cfg(feature = "raft-stats")]
async fn raft_stats(nodes: Vec<Arc<Node>>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for node in &nodes {
        let mut groups = node.groups.all();
        groups.sort_by_key(|g| g.group);
        for handle in groups.iter().filter(|g| g.raft.is_leader()) {
            let _ = match handle.raft.runtime_stats().await {
                Ok(stats) => writeln!(
                    out,
                    "node {} group {} {:?}\n{}\n",
                    node.id,
                    handle.group,
                    handle.labels(),
                    stats.display().human_readable()
                ),
                Err(error) => writeln!(out, "node {} group {}: {error}\n", node.id, handle.group),
            };
        }
    }
    out
}

fn readiness(nodes: &[Arc<Node>]) -> (StatusCode, String) {
    for node in nodes {
        if let Some(failure) = node.storage_failure() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("node {}'s storage failed ({failure}); restart it once its disk works\n", node.id),
            );
        }
        if !node.knows_meta_leader() {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("node {} knows no metadata leader yet\n", node.id));
        }
    }
    (StatusCode::OK, "ready\n".into())
}
