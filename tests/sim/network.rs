//! The simulated network between nodes: every Raft RPC of every group goes through
//! one [`SimNetwork`], which can lose it, delay it or cut links, deciding with the
//! seeded generator of the run.
//!
//! A message is encoded and decoded through `shoal_raft::wire` exactly as on the
//! real transport and handed to the target group with `wire::handle`, on a task
//! of its own (the receiver keeps working if the sender gives up). A lost message
//! (or reply) is never answered: the caller waits out openraft's deadline, as it
//! would for a real packet loss. Messages sent by a crashed incarnation of a node
//! are dropped, and a node that is down refuses connections at once.

use std::collections::{BTreeMap, BTreeSet};
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
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_raft::type_config::{Snapshot, Vote};
use shoal_raft::wire::{self, RaftRequest, RaftResponse};
use shoal_raft::{GroupRaft, TypeConfig};
use shoal_types::{GroupId, NodeId, NodeInfo};

use super::trace::Trace;

/// How long a snapshot transfer may take before the sender gives up.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong between nodes right now.
#[derive(Debug, Default)]
struct Faults {
    /// Directed links `(from, to)` that lose every message.
    blocked: BTreeSet<(NodeId, NodeId)>,
    /// Share of messages lost at random, per mille.
    drop_per_mille: u32,
    /// Each message takes a uniformly random latency in `[0, max_latency_ms]`.
    max_latency_ms: u64,
}

#[derive(Default)]
struct State {
    faults: Faults,
    /// The running groups of every node that is up.
    groups: BTreeMap<(NodeId, GroupId), GroupRaft>,
    /// Bumped on every crash: messages of an older incarnation are not sent.
    incarnations: BTreeMap<NodeId, u64>,
    sent: u64,
    lost: u64,
}

/// The network of the simulated cluster (cheap to clone).
#[derive(Clone)]
pub struct SimNetwork {
    state: Arc<Mutex<State>>,
    rng: Arc<Mutex<StdRng>>,
    /// Every message's bytes and time go into the run's digest.
    trace: Trace,
}

/// Messages sent and lost so far.
#[derive(Debug, Clone, Copy)]
pub struct NetworkStats {
    pub sent: u64,
    pub lost: u64,
}

enum CallError {
    Unreachable(String),
    Failed(String),
}

impl SimNetwork {
    pub fn new(seed: u64, trace: Trace) -> SimNetwork {
        SimNetwork { state: Arc::default(), rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))), trace }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `raft` reachable as `node`'s member of `group`.
    pub fn register(&self, node: NodeId, group: GroupId, raft: GroupRaft) {
        self.state().groups.insert((node, group), raft);
    }

    /// Takes every group of `node` off the network and disowns what its current
    /// incarnation still has in flight or will try to send.
    pub fn crash(&self, node: NodeId) {
        let mut state = self.state();
        state.groups.retain(|(n, _), _| *n != node);
        *state.incarnations.entry(node).or_default() += 1;
    }

    pub fn incarnation(&self, node: NodeId) -> u64 {
        self.state().incarnations.get(&node).copied().unwrap_or_default()
    }

    /// `node`'s member of `group`, if the node is up.
    pub fn group(&self, node: NodeId, group: GroupId) -> Option<GroupRaft> {
        self.state().groups.get(&(node, group)).cloned()
    }

    /// Cuts `node` off from every other node, both ways.
    pub fn isolate(&self, node: NodeId, nodes: &[NodeId]) {
        let mut state = self.state();
        for other in nodes.iter().copied().filter(|n| *n != node) {
            state.faults.blocked.insert((node, other));
            state.faults.blocked.insert((other, node));
        }
    }

    /// Loses every message from `from` to `to` (only that way).
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.state().faults.blocked.insert((from, to));
    }

    pub fn set_drop_rate(&self, per_mille: u32) {
        self.state().faults.drop_per_mille = per_mille.min(1000);
    }

    pub fn set_max_latency(&self, millis: u64) {
        self.state().faults.max_latency_ms = millis;
    }

    /// Restores every link, and removes losses and latency.
    pub fn heal(&self) {
        self.state().faults = Faults::default();
    }

    pub fn stats(&self) -> NetworkStats {
        let state = self.state();
        NetworkStats { sent: state.sent, lost: state.lost }
    }

    /// The network `node`'s member of `group` uses in its current incarnation.
    pub fn for_group(&self, node: NodeId, group: GroupId) -> SimGroupNetwork {
        SimGroupNetwork { network: self.clone(), from: node, incarnation: self.incarnation(node), group }
    }

    /// Decides one leg of a message: `None` if it is lost, else its latency.
    fn leg(&self, from: NodeId, to: NodeId, sender_incarnation: Option<u64>) -> Option<Duration> {
        let mut state = self.state();
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        state.sent += 1;
        let sender_dead =
            sender_incarnation.is_some_and(|i| state.incarnations.get(&from).copied().unwrap_or_default() != i);
        let lost = sender_dead
            || state.faults.blocked.contains(&(from, to))
            || (state.faults.drop_per_mille > 0 && rng.random_range(0..1000) < state.faults.drop_per_mille);
        if lost {
            state.lost += 1;
            return None;
        }
        let max = state.faults.max_latency_ms;
        Some(Duration::from_millis(if max == 0 { 0 } else { rng.random_range(0..=max) }))
    }

    async fn deliver(
        &self,
        from: NodeId,
        incarnation: u64,
        to: NodeId,
        group: GroupId,
        request: RaftRequest,
    ) -> Result<RaftResponse, CallError> {
        let payload = request.encode().map_err(|e| CallError::Failed(e.to_string()))?;
        self.trace.absorb(&[&from.to_be_bytes()[..], &to.to_be_bytes(), &group.to_be_bytes(), &payload].concat());
        let Some(latency) = self.leg(from, to, Some(incarnation)) else {
            return std::future::pending().await;
        };
        tokio::time::sleep(latency).await;
        let Some(raft) = self.group(to, group) else {
            return Err(CallError::Unreachable(format!("node {to} is down")));
        };
        let request = RaftRequest::decode(&payload.into()).map_err(|e| CallError::Failed(e.to_string()))?;
        let handled = tokio::spawn(async move { wire::handle(&raft, request).await });
        let reply = match handled.await {
            Ok(Ok(reply)) => reply,
            Ok(Err(message)) => return Err(CallError::Unreachable(message)),
            Err(join) => return Err(CallError::Failed(format!("handler of node {to} failed: {join}"))),
        };
        self.trace.absorb(&reply);
        let Some(latency) = self.leg(to, from, None) else {
            return std::future::pending().await;
        };
        tokio::time::sleep(latency).await;
        RaftResponse::decode(&reply).map_err(|e| CallError::Failed(e.to_string()))
    }

    async fn call(
        &self,
        from: NodeId,
        incarnation: u64,
        to: NodeId,
        group: GroupId,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftResponse, CallError> {
        match tokio::time::timeout(timeout, self.deliver(from, incarnation, to, group, request)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(CallError::Unreachable(format!("node {to} did not answer within {timeout:?}"))),
        }
    }
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<TypeConfig, E> {
        match self {
            CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::from_string(m)),
            CallError::Failed(m) => RPCError::Network(NetworkError::from_string(m)),
        }
    }
}

/// What one group of one node incarnation uses to reach its peers.
#[derive(Clone)]
pub struct SimGroupNetwork {
    network: SimNetwork,
    from: NodeId,
    incarnation: u64,
    group: GroupId,
}

impl RaftNetworkFactory<TypeConfig> for SimGroupNetwork {
    type Network = SimPeer;

    async fn new_client(&mut self, target: NodeId, _node: &NodeInfo) -> Self::Network {
        SimPeer { link: self.clone(), target }
    }
}

/// One group's connection to one peer.
pub struct SimPeer {
    link: SimGroupNetwork,
    target: NodeId,
}

impl SimPeer {
    async fn call(&self, request: RaftRequest, timeout: Duration) -> Result<RaftResponse, CallError> {
        let link = &self.link;
        link.network.call(link.from, link.incarnation, self.target, link.group, request, timeout).await
    }
}

fn unexpected<E: std::error::Error>() -> RPCError<TypeConfig, E> {
    RPCError::Network(NetworkError::from_string("unexpected response kind"))
}

impl RaftNetworkV2<TypeConfig> for SimPeer {
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
        match self.call(request, SNAPSHOT_TIMEOUT).await {
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
