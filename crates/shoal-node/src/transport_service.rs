//! The node-to-node gRPC service: batches of Raft messages, forwarded shard
//! appends and forwarded metadata proposals.

use std::sync::Arc;
use std::time::Duration;

use shoal_client::status::to_status;
use shoal_proto::v1::raft_transport_server::RaftTransport;
use shoal_proto::v1::{
    MetaProposal, MetaProposalReply, RaftBatch, RaftBatchReply, RaftReply, ShardAppendReply, ShardAppendRequest,
};
use shoal_raft::transport::PING_GROUP;
use shoal_raft::wire::{RaftRequest, handle};
use shoal_raft::{BatchOrigin, MetaCommand};
use shoal_types::{Record, ShardId, ShoalError};
use tonic::{Request, Response, Status};

use crate::node::Node;

/// How long a message for a group this node has not started yet waits for the
/// reconciler to start it (a new shard's first votes race its creation here).
const GROUP_START_WAIT: Duration = Duration::from_millis(300);

pub struct TransportService {
    node: Arc<Node>,
}

impl TransportService {
    pub fn new(node: Arc<Node>) -> Self {
        TransportService { node }
    }

    /// With TLS on, only peers may use the node-to-node service: callers whose
    /// certificate, signed by the cluster's CA, was verified in the handshake.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if self.node.tls.is_some() && request.peer_certs().is_none_or(|certs| certs.is_empty()) {
            return Err(Status::unauthenticated(
                "the node-to-node service needs a certificate signed by the cluster's CA",
            ));
        }
        Ok(())
    }

    async fn deliver_one(&self, from: u64, group: u64, payload: &[u8]) -> RaftReply {
        let failed = |error: String| RaftReply { payload: Vec::new(), error };
        if !self.node.network.faults().passes(from, self.node.id) {
            return failed(format!("link {from} -> {} is cut", self.node.id));
        }
        if group == PING_GROUP {
            return RaftReply { payload: Vec::new(), error: String::new() };
        }
        let Some(target) = self.node.groups.wait_for(group, GROUP_START_WAIT).await else {
            return failed(format!("group {group} is not running on node {}", self.node.id));
        };
        let request = match RaftRequest::decode(payload) {
            Ok(request) => request,
            Err(e) => return failed(format!("undecodable raft message: {e}")),
        };
        match handle(&target.raft, request).await {
            Ok(payload) => RaftReply { payload, error: String::new() },
            Err(error) => failed(error),
        }
    }
}

#[tonic::async_trait]
impl RaftTransport for TransportService {
    async fn deliver(&self, request: Request<RaftBatch>) -> Result<Response<RaftBatchReply>, Status> {
        self.authorize(&request)?;
        let batch = request.into_inner();
        let from = batch.from_node;
        let replies = futures::future::join_all(
            batch.messages.iter().map(|message| self.deliver_one(from, message.group_id, &message.payload)),
        )
        .await;
        Ok(Response::new(RaftBatchReply { replies }))
    }

    async fn append_to_shard(
        &self,
        request: Request<ShardAppendRequest>,
    ) -> Result<Response<ShardAppendReply>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let shard_id = ShardId(request.shard_index);
        // The caller may have applied a resharding this node has not seen yet:
        // give the metadata a moment to arrive before calling the shard unknown.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        let shard = loop {
            let stream = self.node.stream(&request.stream_name).await.map_err(to_status)?;
            if stream.created_millis != request.stream_created_millis {
                return Err(to_status(ShoalError::stream_not_found(&request.stream_name)));
            }
            if let Some(shard) = stream.shard(shard_id) {
                break shard.clone();
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(to_status(ShoalError::not_found(format!("{shard_id} does not exist"))));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let Some(handle) = self.node.groups.get(shard.group_id) else {
            return Err(to_status(ShoalError::unavailable(format!(
                "{shard_id} is not hosted on node {}",
                self.node.id
            ))));
        };
        if request.seal {
            let end = crate::shard_writer::seal_local(&handle).await.map_err(to_status)?;
            return Ok(Response::new(ShardAppendReply { log_index: end.log_index, ..Default::default() }));
        }
        let records: Vec<Record> = bincode::deserialize(&request.records)
            .map_err(|e| to_status(ShoalError::invalid_argument(format!("undecodable records: {e}"))))?;
        let origin = BatchOrigin {
            id: <[u8; 16]>::try_from(request.origin_id.as_slice()).map(u128::from_be_bytes).unwrap_or(0),
            retry_since_millis: request.retry_since_millis,
        };
        let appended = crate::shard_writer::append_local(&handle, records, origin).await.map_err(to_status)?;
        Ok(Response::new(ShardAppendReply {
            log_index: appended.log_index,
            count: appended.count,
            arrival_millis: appended.arrival_millis,
            first_offset: appended.first_offset,
        }))
    }

    async fn propose_meta(&self, request: Request<MetaProposal>) -> Result<Response<MetaProposalReply>, Status> {
        self.authorize(&request)?;
        let command: MetaCommand = bincode::deserialize(&request.into_inner().command)
            .map_err(|e| to_status(ShoalError::invalid_argument(format!("undecodable metadata command: {e}"))))?;
        let (response, log_index) =
            crate::meta_writer::propose_local_indexed(&self.node, command).await.map_err(to_status)?;
        let bytes = bincode::serialize(&response).map_err(|e| to_status(ShoalError::internal(e.to_string())))?;
        Ok(Response::new(MetaProposalReply { response: bytes, log_index }))
    }
}
