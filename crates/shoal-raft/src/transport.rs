//! The network between nodes, shared by every group.
//!
//! Each peer node gets one gRPC channel, one sender task and one long-lived
//! bidirectional `Exchange` stream. Groups hand their Raft RPCs to the peer's
//! queue; the sender takes everything queued (up to a size cap) and sends it as one
//! frame on the stream, and the peer answers each message as soon as its group
//! has — one slow append holds up no other group's reply, and no call pays for a
//! new HTTP/2 stream. Batching grows with load by itself: whatever queued while
//! the sender was busy leaves in the next frame.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use openraft::OptionalSend;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use shoal_proto::v1::raft_transport_client::RaftTransportClient;
use shoal_proto::v1::{RaftBatch, RaftMessage, RaftReply};
use shoal_tls::Dialer;
use shoal_types::{GroupId, NodeId, NodeInfo};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

use crate::faults::NetworkFaults;
use crate::log_store::decode;
use crate::type_config::{Snapshot, TypeConfig, Vote};
use crate::wire::{RaftRequest, RaftResponse};

/// Most messages in one batch.
const MAX_BATCH_MESSAGES: usize = 256;
/// Roughly the most payload bytes in one batch.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// The shortest time a Raft RPC is given before the peer counts as unreachable.
const MIN_CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Batches in flight to one peer at a time (peers without exchanges only).
const MAX_IN_FLIGHT_BATCHES: usize = 4;
/// How often an idle connection to a peer is pinged, and how long a ping may go
/// unanswered before the connection counts as dead.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an exchange forgets calls whose callers gave up.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);
/// AppendEntries of one group that may be on their way to one follower at once
/// (see [`GroupPeer::stream_append`]).
pub const APPENDS_IN_FLIGHT: usize = 4;
/// The group id of a liveness probe: an empty message answered by the node
/// itself, not by a group (no group ever gets this id).
pub const PING_GROUP: GroupId = GroupId::MAX;

type Reply = Result<Vec<u8>, String>;

struct Outgoing {
    group: GroupId,
    payload: Vec<u8>,
    reply: oneshot::Sender<Reply>,
}

/// One node's view of its peers: a queue per peer, created on first use.
#[derive(Clone)]
pub struct PeerNetwork {
    local: NodeId,
    peers: Arc<Mutex<HashMap<NodeId, PeerLink>>>,
    faults: Arc<NetworkFaults>,
    /// Plain, or mutual TLS with the cluster's CA and this node's certificate.
    dialer: Dialer,
}

#[derive(Clone)]
struct PeerLink {
    addr: String,
    queue: mpsc::UnboundedSender<Outgoing>,
}

impl PeerNetwork {
    pub fn new(local: NodeId, faults: Arc<NetworkFaults>, dialer: Dialer) -> Self {
        PeerNetwork { local, peers: Arc::default(), faults, dialer }
    }

    pub fn local(&self) -> NodeId {
        self.local
    }

    pub fn faults(&self) -> &Arc<NetworkFaults> {
        &self.faults
    }

    /// The network a group uses to reach its peers.
    pub fn for_group(&self, group: GroupId) -> GroupNetwork {
        GroupNetwork { peers: self.clone(), group }
    }

    fn link(&self, target: NodeId, addr: &str) -> PeerLink {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(link) = peers.get(&target).filter(|l| l.addr == addr && !l.queue.is_closed()) {
            return link.clone();
        }
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run_sender(self.local, self.dialer.clone(), addr.to_string(), receiver));
        let link = PeerLink { addr: addr.to_string(), queue };
        peers.insert(target, link.clone());
        link
    }

    /// Whether `target` answers an empty message within `timeout`, through the same
    /// link (and the same faults) as Raft traffic: node-level liveness, one probe
    /// per peer instead of a heartbeat per group.
    pub async fn ping(&self, target: NodeId, node: &NodeInfo, timeout: Duration) -> bool {
        if !self.faults.passes(self.local, target) {
            return false;
        }
        let (reply, receiver) = oneshot::channel();
        let link = self.link(target, &node.addr);
        if link.queue.send(Outgoing { group: PING_GROUP, payload: Vec::new(), reply }).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, receiver).await, Ok(Ok(Ok(_)))) && self.faults.passes(target, self.local)
    }

    /// Sends one RPC of `group` to `target` and waits for its reply.
    async fn call(
        &self,
        target: NodeId,
        node: &NodeInfo,
        group: GroupId,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, CallError> {
        if !self.faults.passes(self.local, target) {
            return Err(CallError::Unreachable(format!("link {} -> {target} is cut", self.local)));
        }
        if let Some(delay) = self.faults.delay() {
            tokio::time::sleep(delay).await;
        }
        let payload = request.encode().map_err(|e| CallError::Failed(e.to_string()))?;
        // openraft's deadline follows the heartbeat interval; a large append needs
        // time to travel and be written, so give at least a second plus ~10 MB/s.
        let timeout = timeout.max(MIN_CALL_TIMEOUT + Duration::from_micros(payload.len() as u64 / 10));
        let (reply, receiver) = oneshot::channel();
        let link = self.link(target, &node.addr);
        link.queue
            .send(Outgoing { group, payload, reply })
            .map_err(|_| CallError::Unreachable("peer sender stopped".into()))?;
        let bytes = match tokio::time::timeout(timeout, receiver).await {
            Err(_) => return Err(CallError::Unreachable(format!("node {target} did not answer within {timeout:?}"))),
            Ok(Err(_)) => return Err(CallError::Unreachable("peer sender dropped the call".into())),
            Ok(Ok(Err(message))) => return Err(CallError::Unreachable(message)),
            Ok(Ok(Ok(bytes))) => bytes,
        };
        // The reply comes back through the same link; a cut return path loses it.
        if !self.faults.passes(target, self.local) {
            return Err(CallError::Unreachable(format!("link {target} -> {} is cut", self.local)));
        }
        decode::<RaftResponse>(&bytes).map_err(|e| CallError::Failed(e.to_string()))
    }
}

enum CallError {
    Unreachable(String),
    Failed(String),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<TypeConfig, E> {
        match self {
            CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::from_string(m)),
            CallError::Failed(m) => RPCError::Network(NetworkError::from_string(m)),
        }
    }
}

/// Carries a peer's queue to the peer until every group has dropped its handle:
/// over one long-lived exchange stream, reopened on the next message after it
/// breaks; or, if the peer predates exchanges, as one unary call per batch.
async fn run_sender(local: NodeId, dialer: Dialer, addr: String, mut queue: mpsc::UnboundedReceiver<Outgoing>) {
    let endpoint = match dialer.endpoint(&addr) {
        // Keep-alive pings find a connection that went silent (a peer cut off
        // without a reset), so the exchange breaks and is reopened instead of
        // swallowing messages.
        Ok(endpoint) => endpoint
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true),
        Err(error) => {
            tracing::error!(%addr, %error, "invalid peer address");
            return;
        }
    };
    let client = RaftTransportClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024);
    while let Some(first) = queue.recv().await {
        match exchange(local, client.clone(), first, &mut queue).await {
            ExchangeEnd::QueueClosed => return,
            ExchangeEnd::Broken => continue,
            ExchangeEnd::Unsupported => {
                tracing::info!(%addr, "peer does not serve Raft exchanges; sending one call per batch");
                return deliver_unary(local, client, queue).await;
            }
        }
    }
}

enum ExchangeEnd {
    /// Every group dropped its handle: the sender is done.
    QueueClosed,
    /// The stream failed or the peer closed it; the next message reopens it.
    Broken,
    /// The peer answered `Unimplemented`: it is an older node.
    Unsupported,
}

/// Runs one exchange stream: queued messages leave as frames (whatever is queued
/// goes together, so batching grows with load), and replies, matched by call id,
/// return as each is ready. Every call still waiting when the stream ends fails.
async fn exchange(
    local: NodeId,
    mut client: RaftTransportClient<Channel>,
    first: Outgoing,
    queue: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> ExchangeEnd {
    let mut pending = PendingCalls::default();
    let (frames, outbound) = mpsc::unbounded_channel();
    if let Some(frame) = pending.frame(local, first, queue) {
        let _ = frames.send(frame);
    }
    let mut replies = match client.exchange(UnboundedReceiverStream::new(outbound)).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            pending.fail_all(&format!("opening the Raft exchange failed: {}", status.message()));
            return if status.code() == Code::Unimplemented { ExchangeEnd::Unsupported } else { ExchangeEnd::Broken };
        }
    };
    let mut prune = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            next = queue.recv() => {
                let Some(next) = next else { return ExchangeEnd::QueueClosed };
                if let Some(frame) = pending.frame(local, next, queue)
                    && frames.send(frame).is_err()
                {
                    pending.fail_all("the Raft exchange closed");
                    return ExchangeEnd::Broken;
                }
            }
            reply = replies.message() => match reply {
                Ok(Some(batch)) => pending.answer(batch.replies),
                Ok(None) => {
                    pending.fail_all("the peer ended the Raft exchange");
                    return ExchangeEnd::Broken;
                }
                Err(status) => {
                    pending.fail_all(&format!("the Raft exchange failed: {}", status.message()));
                    return ExchangeEnd::Broken;
                }
            },
            _ = prune.tick() => pending.prune(),
        }
    }
}

/// The calls of one exchange that wait for their replies.
#[derive(Default)]
struct PendingCalls {
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<Reply>>,
}

impl PendingCalls {
    /// `first` and whatever else is queued (up to the batch caps) as one frame;
    /// messages whose callers have stopped waiting are dropped. `None` if none is
    /// left.
    fn frame(
        &mut self,
        local: NodeId,
        first: Outgoing,
        queue: &mut mpsc::UnboundedReceiver<Outgoing>,
    ) -> Option<RaftBatch> {
        let mut bytes = 0;
        let mut messages = Vec::new();
        let mut next = Some(first);
        while let Some(outgoing) = next.take() {
            if !outgoing.reply.is_closed() {
                bytes += outgoing.payload.len();
                self.next_id += 1;
                self.waiting.insert(self.next_id, outgoing.reply);
                messages.push(RaftMessage {
                    group_id: outgoing.group,
                    payload: outgoing.payload.into(),
                    call_id: self.next_id,
                });
            }
            if messages.len() < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
                next = queue.try_recv().ok();
            }
        }
        if messages.is_empty() {
            return None;
        }
        metrics::histogram!("shoal_raft_batch_messages").record(messages.len() as f64);
        Some(RaftBatch { from_node: local, messages })
    }

    fn answer(&mut self, replies: Vec<RaftReply>) {
        for reply in replies {
            if let Some(caller) = self.waiting.remove(&reply.call_id) {
                let _ = caller.send(if reply.error.is_empty() { Ok(reply.payload) } else { Err(reply.error) });
            }
        }
    }

    /// Forgets calls whose callers gave up (their deadline passed).
    fn prune(&mut self) {
        self.waiting.retain(|_, caller| !caller.is_closed());
    }

    fn fail_all(&mut self, error: &str) {
        for (_, caller) in self.waiting.drain() {
            let _ = caller.send(Err(error.to_string()));
        }
    }
}

/// The sender for a peer without exchanges: one `Deliver` call per batch, a few
/// in flight; when they all are, new messages pile up and leave together.
async fn deliver_unary(
    local: NodeId,
    client: RaftTransportClient<Channel>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BATCHES));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut calls = PendingCalls::default();
        let Some(batch) = calls.frame(local, first, &mut queue) else { continue };
        let mut client = client.clone();
        tokio::spawn(async move {
            // Replies come back in the batch's order.
            let ids: Vec<u64> = batch.messages.iter().map(|m| m.call_id).collect();
            match client.deliver(batch).await {
                Ok(response) => {
                    let replies = response.into_inner().replies;
                    if replies.len() != ids.len() {
                        calls.fail_all("peer sent a different number of replies than messages");
                    } else {
                        let replies = replies.into_iter().zip(ids).map(|(r, call_id)| RaftReply { call_id, ..r });
                        calls.answer(replies.collect());
                    }
                }
                Err(status) => calls.fail_all(&format!("deliver failed: {}", status.message())),
            }
            drop(permit);
        });
    }
}

/// The network of one group: what openraft calls to reach the group's peers.
#[derive(Clone)]
pub struct GroupNetwork {
    peers: PeerNetwork,
    group: GroupId,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = GroupPeer;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        GroupPeer { peers: self.peers.clone(), group: self.group, target, node: node.clone() }
    }
}

/// One group's connection to one peer.
pub struct GroupPeer {
    peers: PeerNetwork,
    group: GroupId,
    target: NodeId,
    node: NodeInfo,
}

impl GroupPeer {
    async fn call(&self, request: RaftRequest, timeout: Duration) -> Result<RaftResponse, CallError> {
        self.peers.call(self.target, &self.node, self.group, request, timeout).await
    }

    /// Sends one AppendEntries and answers as openraft's replication stream wants
    /// it: the follower's outcome, and whether later requests may still count (not
    /// after an error, a conflict, or a follower that took only part of this one).
    fn append(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> impl Future<Output = (AppendOutcome, bool)> + Send + use<> {
        let (peers, target, node, group) = (self.peers.clone(), self.target, self.node.clone(), self.group);
        let prev = rpc.prev_log_id;
        let last = rpc.entries.last().map(|entry| entry.log_id).or(prev);
        async move {
            let response = match peers.call(target, &node, group, RaftRequest::Append(rpc), timeout).await {
                Ok(RaftResponse::Append(response)) => response,
                Ok(_) => return (Err(unexpected()), false),
                Err(error) => return (Err(error.into_rpc()), false),
            };
            // A conflict needs the entry before the request; the first entry has none.
            if prev.is_none() && response.is_conflict() {
                let error = NetworkError::from_string("follower reported a conflict before the first entry");
                return (Err(RPCError::Network(error)), false);
            }
            let outcome = response.into_stream_result(prev, last);
            let complete = matches!(&outcome, Ok(matched) if *matched == last);
            (Ok(outcome), complete)
        }
    }
}

type AppendOutcome = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

fn unexpected<E: std::error::Error>() -> RPCError<TypeConfig, E> {
    RPCError::Network(NetworkError::from_string("unexpected response kind"))
}

impl RaftNetworkV2<TypeConfig> for GroupPeer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(RaftRequest::Append(rpc), option.hard_ttl()).await.map_err(CallError::into_rpc)? {
            RaftResponse::Append(response) => Ok(response),
            _ => Err(unexpected()),
        }
    }

    /// Pipelined replication: up to [`APPENDS_IN_FLIGHT`] requests of this group
    /// travel to the follower at once, in order on the peer's exchange (whose server
    /// hands them to the group in arrival order), and their outcomes return in
    /// request order. Without this, openraft sends a request, waits for the
    /// follower's fsync, then sends the next — and the entry-less request that only
    /// carries a new commit index holds up the next append for a round trip. The
    /// stream ends after the first outcome that stops the pipeline; openraft then
    /// resumes from what the follower acknowledged. Should requests still arrive out
    /// of order (a cut link, an older peer on unary calls), the follower answers
    /// with a conflict and openraft probes back: slower, never wrong.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, AppendOutcome>, RPCError<TypeConfig>>>
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let timeout = option.hard_ttl();
        let outcomes = input.map(move |rpc| self.append(rpc, timeout)).buffered(APPENDS_IN_FLIGHT).scan(
            true,
            |going_on, (outcome, complete)| {
                let item = std::mem::replace(going_on, complete).then_some(outcome);
                futures::future::ready(item)
            },
        );
        Box::pin(futures::future::ready(Ok(Box::pin(outcomes) as BoxStream<'s, AppendOutcome>)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(RaftRequest::Vote(rpc), option.hard_ttl()).await.map_err(CallError::into_rpc)? {
            RaftResponse::Vote(response) => Ok(response),
            _ => Err(unexpected()),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(RaftRequest::PreVote(rpc), option.hard_ttl()).await.map_err(CallError::into_rpc)? {
            RaftResponse::Vote(response) => Ok(response),
            _ => Err(unexpected()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = RaftRequest::Snapshot { vote, meta: snapshot.meta, data: snapshot.snapshot };
        match self.call(request, Duration::from_secs(120)).await {
            Ok(RaftResponse::Snapshot(response)) => Ok(response),
            Ok(_) => Err(StreamingError::Network(NetworkError::from_string("unexpected response kind"))),
            Err(CallError::Unreachable(m)) => Err(StreamingError::Unreachable(Unreachable::from_string(m))),
            Err(CallError::Failed(m)) => Err(StreamingError::Network(NetworkError::from_string(m))),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(RaftRequest::TransferLeader(req), option.hard_ttl()).await.map_err(CallError::into_rpc)? {
            RaftResponse::TransferLeader(response) => Ok(response),
            _ => Err(unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(groups: &[GroupId]) -> (mpsc::UnboundedReceiver<Outgoing>, Vec<oneshot::Receiver<Reply>>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        let callers = groups
            .iter()
            .map(|&group| {
                let (reply, answer) = oneshot::channel();
                queue.send(Outgoing { group, payload: vec![group as u8], reply }).unwrap();
                answer
            })
            .collect();
        (receiver, callers)
    }

    #[test]
    fn replies_reach_their_callers_whatever_order_they_come_in() {
        let (mut queue, mut callers) = queued(&[1, 2, 3]);
        let mut calls = PendingCalls::default();
        let first = queue.try_recv().unwrap();
        let frame = calls.frame(7, first, &mut queue).unwrap();
        assert_eq!(frame.from_node, 7);
        assert_eq!(frame.messages.iter().map(|m| m.group_id).collect::<Vec<_>>(), [1, 2, 3]);

        // The peer answers the last message first and fails the middle one.
        let replies = frame
            .messages
            .iter()
            .rev()
            .map(|m| RaftReply {
                payload: if m.group_id == 2 { Vec::new() } else { m.payload.to_vec() },
                error: if m.group_id == 2 { "group 2 is not running".into() } else { String::new() },
                call_id: m.call_id,
            })
            .collect();
        calls.answer(replies);
        assert_eq!(callers[0].try_recv().unwrap(), Ok(vec![1]));
        assert_eq!(callers[1].try_recv().unwrap(), Err("group 2 is not running".to_string()));
        assert_eq!(callers[2].try_recv().unwrap(), Ok(vec![3]));
        assert!(calls.waiting.is_empty());
    }

    #[test]
    fn callers_that_gave_up_are_not_sent_and_the_rest_fail_when_the_exchange_ends() {
        let (mut queue, mut callers) = queued(&[1, 2, 3]);
        drop(callers.remove(1)); // group 2's caller stopped waiting
        let mut calls = PendingCalls::default();
        let first = queue.try_recv().unwrap();
        let frame = calls.frame(7, first, &mut queue).unwrap();
        assert_eq!(frame.messages.iter().map(|m| m.group_id).collect::<Vec<_>>(), [1, 3]);

        drop(callers.remove(1)); // and then group 3's
        calls.prune();
        assert_eq!(calls.waiting.len(), 1);
        calls.fail_all("the peer ended the Raft exchange");
        assert_eq!(callers[0].try_recv().unwrap(), Err("the peer ended the Raft exchange".to_string()));
    }

    #[test]
    fn a_frame_stops_at_the_message_cap_and_leaves_the_rest_queued() {
        let groups: Vec<GroupId> = (0..MAX_BATCH_MESSAGES as GroupId + 10).collect();
        let (mut queue, _callers) = queued(&groups);
        let mut calls = PendingCalls::default();
        let first = queue.try_recv().unwrap();
        assert_eq!(calls.frame(7, first, &mut queue).unwrap().messages.len(), MAX_BATCH_MESSAGES);
        let next = queue.try_recv().unwrap();
        assert_eq!(calls.frame(7, next, &mut queue).unwrap().messages.len(), 10);
    }
}
