//! The network between nodes, shared by every group.
//!
//! Each peer node gets one gRPC channel and one sender task. Groups hand their Raft
//! RPCs to the peer's queue; the sender takes everything queued (up to a size cap)
//! and ships it as one `RaftBatch`, then routes each reply back to its caller. A
//! few batches may be in flight at once; when they all are, new messages pile up
//! and leave together — batching grows with load by itself.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::OptionalSend;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use shoal_proto::v1::raft_transport_client::RaftTransportClient;
use shoal_proto::v1::{RaftBatch, RaftMessage};
use shoal_tls::Dialer;
use shoal_types::{GroupId, NodeId, NodeInfo};
use tokio::sync::{Semaphore, mpsc, oneshot};

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
/// Batches in flight to one peer at a time.
const MAX_IN_FLIGHT_BATCHES: usize = 4;
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

/// Drains a peer's queue into batches until every group has dropped its handle.
async fn run_sender(local: NodeId, dialer: Dialer, addr: String, mut queue: mpsc::UnboundedReceiver<Outgoing>) {
    let endpoint = match dialer.endpoint(&addr) {
        Ok(endpoint) => endpoint.connect_timeout(Duration::from_secs(1)).tcp_nodelay(true),
        Err(error) => {
            tracing::error!(%addr, %error, "invalid peer address");
            return;
        }
    };
    let client = RaftTransportClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BATCHES));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut bytes = first.payload.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(next) => {
                    bytes += next.payload.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("shoal_raft_batch_messages").record(batch.len() as f64);
        let mut client = client.clone();
        tokio::spawn(async move {
            let (messages, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|o| (RaftMessage { group_id: o.group, payload: o.payload }, o.reply)).unzip();
            match client.deliver(RaftBatch { from_node: local, messages }).await {
                Ok(response) => {
                    let mut answers = response.into_inner().replies.into_iter();
                    for reply in replies {
                        let answer = match answers.next() {
                            Some(a) if a.error.is_empty() => Ok(a.payload),
                            Some(a) => Err(a.error),
                            None => Err("peer sent fewer replies than messages".into()),
                        };
                        let _ = reply.send(answer);
                    }
                }
                Err(status) => {
                    for reply in replies {
                        let _ = reply.send(Err(format!("deliver failed: {}", status.message())));
                    }
                }
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
}

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
