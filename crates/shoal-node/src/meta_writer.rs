//! Proposing metadata commands from any node: locally on the metadata leader,
//! otherwise forwarded to it.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use shoal_client::status::from_status;
use shoal_proto::v1::MetaProposal;
use shoal_proto::v1::raft_transport_client::RaftTransportClient;
use shoal_raft::{Command, CommandResponse, MetaCommand, MetaResponse};
use shoal_types::{ShoalError, ShoalResult};

use crate::node::Node;

/// Proposes `command` on this node, which must be the metadata leader.
pub async fn propose_local(node: &Node, command: MetaCommand) -> ShoalResult<MetaResponse> {
    propose_local_indexed(node, command).await.map(|(response, _)| response)
}

/// Like [`propose_local`], also returning the log index of the command.
pub async fn propose_local_indexed(node: &Node, command: MetaCommand) -> ShoalResult<(MetaResponse, u64)> {
    match node.meta.client_write(Arc::new(Command::Meta(command).into())).await {
        Ok(written) => match written.data {
            CommandResponse::Meta(MetaResponse::Error(error)) => Err(error),
            CommandResponse::Meta(response) => Ok((response, written.log_id.index)),
            other => Err(ShoalError::internal(format!("unexpected metadata response {other:?}"))),
        },
        Err(error) if error.forward_to_leader().is_some() => {
            Err(ShoalError::unavailable("this node is no longer the metadata leader; retry"))
        }
        Err(error) => Err(ShoalError::unavailable(format!("metadata write failed: {error}"))),
    }
}

/// Proposes `command` wherever the metadata leader is, retrying for a few
/// seconds while there is none.
pub async fn propose(node: &Node, command: MetaCommand) -> ShoalResult<MetaResponse> {
    propose_indexed(node, command).await.map(|(response, _)| response)
}

/// Proposes `command` and returns once this node has applied it too, so what
/// the caller reads from the local metadata next includes the change.
pub async fn propose_and_apply_locally(node: &Node, command: MetaCommand) -> ShoalResult<MetaResponse> {
    let (response, index) = propose_indexed(node, command).await?;
    let mut metrics = node.meta.metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let applied = metrics.borrow_watched().last_applied.map(|id| id.index).unwrap_or(0);
        if applied >= index {
            return Ok(response);
        }
        if tokio::time::timeout_at(deadline, metrics.changed()).await.is_err() {
            return Ok(response); // committed; this node is merely slow to apply it
        }
    }
}

async fn propose_indexed(node: &Node, command: MetaCommand) -> ShoalResult<(MetaResponse, u64)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = match node.meta_leader_elsewhere() {
            Ok(None) => propose_local_indexed(node, command.clone()).await,
            Ok(Some((_, addr))) => propose_remote(node, &addr, &command).await,
            Err(error) => Err(error),
        };
        match attempt {
            Err(error)
                if error.code == shoal_types::ErrorCode::Unavailable && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

async fn propose_remote(node: &Node, addr: &str, command: &MetaCommand) -> ShoalResult<(MetaResponse, u64)> {
    let channel = node.peers.channel(addr)?;
    let bytes = bincode::serialize(command).map_err(|e| ShoalError::internal(e.to_string()))?;
    let reply = RaftTransportClient::new(channel)
        .propose_meta(MetaProposal { command: bytes })
        .await
        .map_err(|status| from_status(&status))?;
    let reply = reply.into_inner();
    let response: MetaResponse =
        bincode::deserialize(&reply.response).map_err(|e| ShoalError::internal(format!("bad metadata reply: {e}")))?;
    Ok((response, reply.log_index))
}
