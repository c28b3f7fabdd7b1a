//! Prometheus `/metrics` endpoint.

pub fn serve(addr: &str) -> anyhow::Result<()> {
    if addr.is_empty() {
        return Ok(());
    }
    let socket: std::net::SocketAddr =
        addr.parse().map_err(|e| anyhow::anyhow!("invalid metrics address {addr}: {e}"))?;
    metrics_exporter_prometheus::PrometheusBuilder::new().with_http_listener(socket).install()?;
    tracing::info!(%socket, "prometheus metrics at /metrics");
    Ok(())
}
