//! The node-to-node gRPC service: streams (and, for older peers, batches) of
//! Raft messages, forwarded shard appends and forwarded metadata proposals.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::stream::{FuturesUnordered, Stream, StreamExt};
use shoal_client::status::to_status;
use shoal_proto::v1::raft_transport_server::RaftTransport;
use shoal_proto::v1::{
    MetaProposal, MetaProposalReply, RaftBatch, RaftBatchReply, RaftMessage, RaftReply, ShardAppendReply,
    ShardAppendRequest,
};
use shoal_raft::transport::PING_GROUP;
use shoal_raft::wire::{RaftRequest, handle};
use shoal_raft::{BatchOrigin, MetaCommand};
use shoal_types::{Record, ShardId, ShoalError};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

use crate::node::Node;

/// How long a message for a group this node has not started yet waits for the
/// reconciler to start it (a new shard's first votes race its creation here).
const GROUP_START_WAIT: Duration = Duration::from_millis(300);
/// Most replies sent back in one frame of an exchange.
const MAX_REPLIES_PER_FRAME: usize = 256;

pub struct TransportService {
    node: Arc<Node>,
    /// Turns true when the node begins to stop: open exchanges end then, so the
    /// server's graceful shutdown does not wait for peers to hang up.
    stopping: watch::Receiver<bool>,
}

impl TransportService {
    pub fn new(node: Arc<Node>, stopping: watch::Receiver<bool>) -> Self {
        TransportService { node, stopping }
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
}

/// Hands one received Raft message to its group and answers with the outcome.
async fn deliver_one(node: &Node, from: u64, message: RaftMessage) -> RaftReply {
    let call_id = message.call_id;
    let failed = |error: String| RaftReply { payload: Vec::new(), error, call_id };
    if !node.network.faults().passes(from, node.id) {
        return failed(format!("link {from} -> {} is cut", node.id));
    }
    if message.group_id == PING_GROUP {
        return RaftReply { payload: Vec::new(), error: String::new(), call_id };
    }
    let Some(target) = node.groups.wait_for(message.group_id, GROUP_START_WAIT).await else {
        return failed(format!("group {} is not running on node {}", message.group_id, node.id));
    };
    if let Some(reason) = target.stopped() {
        // Its storage failed: answer here rather than have openraft log an error
        // for every heartbeat and vote request that its stopped core cannot take.
        return failed(format!("group {} stopped on node {}: {reason}", message.group_id, node.id));
    }
    let request = match RaftRequest::decode(&message.payload) {
        Ok(request) => request,
        Err(e) => return failed(format!("undecodable raft message: {e}")),
    };
    match handle(&target.raft, request).await {
        Ok(payload) => RaftReply { payload, error: String::new(), call_id },
        Err(error) => failed(error),
    }
}

type Delivery = Pin<Box<dyn Future<Output = RaftReply> + Send>>;

/// What an exchange's server loop woke up for.
enum Inbound {
    Reply(RaftReply),
    Frame(Result<Option<RaftBatch>, Status>),
}

/// Reads a peer's exchange: every message is handed to its group as it arrives,
/// and each reply goes back as soon as it is ready, so a slow message (an append
/// waiting for its fsync) holds up no other group's. A message is polled once as
/// soon as it is read, which hands it to its group's Raft core then and there: a
/// group's pipelined appends reach it in the order the leader sent them.
async fn serve_exchange(
    node: Arc<Node>,
    mut inbound: Streaming<RaftBatch>,
    replies: mpsc::UnboundedSender<RaftReply>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut handling: FuturesUnordered<Delivery> = FuturesUnordered::new();
    let mut open = true;
    while open || !handling.is_empty() {
        // Messages already read go first: one that could not be handed over when it
        // was read (its task out of budget) is handed over before later ones are read.
        let event = tokio::select! {
            biased;
            _ = stopping.wait_for(|stopping| *stopping) => return,
            Some(reply) = handling.next(), if !handling.is_empty() => Inbound::Reply(reply),
            frame = inbound.message(), if open => Inbound::Frame(frame),
        };
        match event {
            Inbound::Reply(reply) => {
                if replies.send(reply).is_err() {
                    return;
                }
            }
            Inbound::Frame(Ok(Some(batch))) => {
                let from = batch.from_node;
                for message in batch.messages {
                    let node = node.clone();
                    let mut delivery: Delivery = Box::pin(async move { deliver_one(&node, from, message).await });
                    match futures::poll!(delivery.as_mut()) {
                        Poll::Ready(reply) => {
                            if replies.send(reply).is_err() {
                                return;
                            }
                        }
                        Poll::Pending => handling.push(delivery),
                    }
                }
            }
            Inbound::Frame(Ok(None) | Err(_)) => open = false,
        }
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<RaftBatchReply, Status>> + Send>>;

#[tonic::async_trait]
impl RaftTransport for TransportService {
    type ExchangeStream = ReplyStream;

    async fn exchange(&self, request: Request<Streaming<RaftBatch>>) -> Result<Response<ReplyStream>, Status> {
        self.authorize(&request)?;
        let (replies, ready) = mpsc::unbounded_channel();
        tokio::spawn(serve_exchange(self.node.clone(), request.into_inner(), replies, self.stopping.clone()));
        // Whatever replies are ready leave together in one frame.
        let frames = futures::stream::unfold(ready, |mut ready| async move {
            let first = ready.recv().await?;
            let mut replies = vec![first];
            while replies.len() < MAX_REPLIES_PER_FRAME {
                match ready.try_recv() {
                    Ok(reply) => replies.push(reply),
                    Err(_) => break,
                }
            }
            Some((Ok(RaftBatchReply { replies }), ready))
        });
        Ok(Response::new(Box::pin(frames)))
    }

    async fn deliver(&self, request: Request<RaftBatch>) -> Result<Response<RaftBatchReply>, Status> {
        self.authorize(&request)?;
        let batch = request.into_inner();
        let from = batch.from_node;
        let replies =
            futures::future::join_all(batch.messages.into_iter().map(|message| deliver_one(&self.node, from, message)))
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
            let end = crate::shard_writer::seal_local(&handle, shard.store()).await.map_err(to_status)?;
            return Ok(Response::new(ShardAppendReply { log_index: end.log_index, ..Default::default() }));
        }
        let records: Vec<Record> = bincode::deserialize(&request.records)
            .map_err(|e| to_status(ShoalError::invalid_argument(format!("undecodable records: {e}"))))?;
        let origin = BatchOrigin {
            id: <[u8; 16]>::try_from(request.origin_id.as_slice()).map(u128::from_be_bytes).unwrap_or(0),
            retry_since_millis: request.retry_since_millis,
        };
        let appended = crate::shard_writer::append_local(&handle, shard.store(), Arc::new(records), origin)
            .await
            .map_err(to_status)?;
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
