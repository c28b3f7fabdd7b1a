//! Proposing metadata commands from any node: locally on the metadata leader,
//! otherwise forwarded to it.

use std::time::Duration;

use shoal_client::status::from_status;
use shoal_proto::v1::MetaProposal;
use shoal_proto::v1::raft_transport_client::RaftTransportClient;
use shoal_raft::{Command, CommandResponse, MetaCommand, MetaResponse};
use shoal_types::{ShoalError, ShoalResult};

use crate::node::Node;

/// Proposes `command` on this node, which must be the metadata leader.
pub async fn propose_local(node: &Node, command: MetaCommand) -> ShoalResult<MetaResponse> {
    match node.meta.client_write(Command::Meta(command)).await {
        Ok(written) => match written.data {
            CommandResponse::Meta(MetaResponse::Error(error)) => Err(error),
            CommandResponse::Meta(response) => Ok(response),
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = match node.meta_leader_elsewhere() {
            Ok(None) => propose_local(node, command.clone()).await,
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

async fn propose_remote(node: &Node, addr: &str, command: &MetaCommand) -> ShoalResult<MetaResponse> {
    let channel = node.peers.channel(addr)?;
    let bytes = bincode::serialize(command).map_err(|e| ShoalError::internal(e.to_string()))?;
    let reply = RaftTransportClient::new(channel)
        .propose_meta(MetaProposal { command: bytes })
        .await
        .map_err(|status| from_status(&status))?;
    bincode::deserialize(&reply.into_inner().response)
        .map_err(|e| ShoalError::internal(format!("bad metadata reply: {e}")))
}
