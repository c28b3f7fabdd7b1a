//! Starting a node's AWS-compatible API next to its gRPC API.

use anyhow::Context;
use shoal_node::NodeHandle;
use tokio::task::JoinHandle;

/// Serves the AWS APIs of `node` on `addr` in the background (nothing if empty).
pub async fn start(node: &NodeHandle, addr: &str) -> anyhow::Result<Option<JoinHandle<()>>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the AWS API to {addr}"))?;
    let node = node.node.clone();
    let id = node.id;
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = shoal_aws::serve(node, listener, std::future::pending()).await {
            tracing::error!(node = id, %error, "AWS API stopped");
        }
    })))
}
