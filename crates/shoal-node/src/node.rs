//! Wiring one node together: `run(listener, config, faults, shutdown)`.
//!
//! The node takes an already-bound listener and a shutdown future, so tests can
//! start several nodes in one process on `127.0.0.1:0` and stop them at will.

use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_proto::v1::cluster_server::ClusterServer;
use shoal_proto::v1::consumer_groups_server::ConsumerGroupsServer;
use shoal_proto::v1::firehose_server::FirehoseServer;
use shoal_proto::v1::raft_transport_server::RaftTransportServer;
use shoal_proto::v1::records_server::RecordsServer;
use shoal_proto::v1::stream_control_server::StreamControlServer;
use shoal_raft::{
    GroupLogStore, GroupRaft, GroupStateMachine, MetaState, NetworkFaults, PeerNetwork, StateWatch, raft_config,
};
use shoal_storage::NodeDb;
use shoal_tls::NodeTls;
use shoal_types::stream::META_GROUP_ID;
use shoal_types::{NodeId, NodeInfo, ShoalError, ShoalResult, Stream, StreamStatus};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::config::NodeConfig;
use crate::groups::{GroupHandle, GroupRegistry};
use crate::peers::PeerChannels;

const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// HTTP/2 flow-control window of each stream this node receives (a peer's Raft
/// exchange is one stream; the connection's window is twice this).
const EXCHANGE_WINDOW_BYTES: u32 = 8 * 1024 * 1024;

/// Everything a running node shares between its services and background tasks.
pub struct Node {
    pub id: NodeId,
    pub info: NodeInfo,
    pub config: NodeConfig,
    pub db: NodeDb,
    pub network: PeerNetwork,
    pub groups: GroupRegistry,
    pub meta: GroupRaft,
    pub meta_state: watch::Receiver<Arc<MetaState>>,
    pub peers: PeerChannels,
    pub raft_config: Arc<openraft::Config>,
    /// TLS for the node's endpoints and towards its peers; `None` when off.
    pub tls: Option<NodeTls>,
    /// Which peers answered probes lately.
    pub liveness: crate::liveness::Liveness,
}

impl Node {
    /// Opens storage, starts the metadata group and, on the first node of a new
    /// cluster, initializes it with every configured voter.
    pub async fn open(config: NodeConfig, faults: Arc<NetworkFaults>) -> anyhow::Result<Arc<Node>> {
        config.validate()?;
        let db = NodeDb::open_with(&config.data_dir, config.direct_io.resolve(&config.data_dir))
            .with_context(|| format!("opening {}", config.data_dir.display()))?;
        let tls = NodeTls::load(&config.tls).context("loading the [tls] files")?;
        let dialer = tls.as_ref().map(NodeTls::peer_dialer).unwrap_or_default();
        let network = PeerNetwork::new(config.id, faults, dialer.clone());
        let raft_config = raft_config(config.raft.heartbeat_millis, config.raft.election_timeout_millis)?;
        let (meta_tx, meta_state) = watch::channel(Arc::new(MetaState::default()));
        let meta_sm = GroupStateMachine::open(db.clone(), META_GROUP_ID, StateWatch::Meta(meta_tx))?;
        let meta = GroupRaft::new(
            config.id,
            raft_config.clone(),
            network.for_group(META_GROUP_ID),
            GroupLogStore::new(db.clone(), META_GROUP_ID),
            meta_sm,
        )
        .await
        .context("starting the metadata group")?;
        let groups = GroupRegistry::default();
        groups.insert(Arc::new(GroupHandle::new(META_GROUP_ID, meta.clone(), Vec::new())));
        let voters = config.voters();
        let bootstrapper = voters.keys().next().copied() == Some(config.id);
        if bootstrapper && !meta.is_initialized().await.context("reading metadata group state")? {
            tracing::info!(node = config.id, voters = voters.len(), "initializing the metadata group");
            if let Err(error) = meta.initialize(voters).await {
                tracing::warn!(%error, "metadata group initialization refused");
            }
        }
        Ok(Arc::new(Node {
            id: config.id,
            info: config.info(),
            config,
            db,
            network,
            groups,
            meta,
            meta_state,
            peers: PeerChannels::new(dialer),
            raft_config,
            tls,
            liveness: Default::default(),
        }))
    }

    /// The latest metadata this node has applied.
    pub fn meta_snapshot(&self) -> Arc<MetaState> {
        self.meta_state.borrow().clone()
    }

    /// Every node of the cluster, from the metadata group's membership.
    pub fn cluster_nodes(&self) -> BTreeMap<NodeId, NodeInfo> {
        let metrics = self.meta.metrics();
        let metrics = metrics.borrow_watched();
        metrics.membership_config.nodes().map(|(id, info)| (*id, info.clone())).collect()
    }

    pub fn node_addr(&self, id: NodeId) -> Option<String> {
        self.cluster_nodes().get(&id).map(|info| info.addr.clone())
    }

    /// Why Raft stopped on this node, if it did for the metadata group or any
    /// shard: it stops a group for good when a write to the node's storage fails
    /// (a full or failing disk). The node then forwards calls for those shards to
    /// their other replicas, and must be restarted once its storage works again.
    pub fn storage_failure(&self) -> Option<String> {
        if let Err(fatal) = &self.meta.metrics().borrow_watched().running_state {
            return Some(format!("the metadata group stopped: {fatal}"));
        }
        let stopped: Vec<(u64, String)> =
            self.groups.all().iter().filter_map(|handle| Some((handle.group, handle.stopped()?))).collect();
        let (group, reason) = stopped.first()?;
        Some(format!("{} group(s) stopped, group {group}: {reason}", stopped.len()))
    }

    /// Whether this node knows who leads the metadata group (it can route calls).
    pub fn knows_meta_leader(&self) -> bool {
        self.meta.metrics().borrow_watched().current_leader.is_some()
    }

    /// The metadata leader, if it is another node: `(id, addr)`.
    pub fn meta_leader_elsewhere(&self) -> ShoalResult<Option<(NodeId, String)>> {
        let leader = self.meta.metrics().borrow_watched().current_leader;
        match leader {
            Some(id) if id == self.id => Ok(None),
            Some(id) => {
                let addr =
                    self.node_addr(id).ok_or_else(|| ShoalError::unavailable(format!("no address for node {id}")))?;
                Ok(Some((id, addr)))
            }
            None => Err(ShoalError::unavailable("the metadata group has no leader yet; retry shortly")),
        }
    }

    /// Waits briefly for the metadata group to elect a leader.
    pub async fn wait_for_meta_leader(&self, timeout: Duration) -> ShoalResult<Option<(NodeId, String)>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.meta_leader_elsewhere() {
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    /// A stream as this node knows it, shared with the metadata (no copy of its
    /// shards). A stream created a moment ago on another node may take a
    /// heartbeat to arrive here, so a miss waits briefly.
    pub async fn stream(&self, name: &str) -> ShoalResult<Arc<Stream>> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        let mut watch = self.meta_state.clone();
        loop {
            if let Some(stream) = watch.borrow_and_update().streams.get(name).cloned() {
                return Ok(stream);
            }
            if tokio::time::timeout_at(deadline, watch.changed()).await.is_err() {
                return Err(ShoalError::stream_not_found(name));
            }
        }
    }

    /// A stream that accepts records: waits (a few seconds at most) for a stream
    /// that is still CREATING to become ACTIVE, as test suites expect when they
    /// write right after creating.
    pub async fn writable_stream(&self, name: &str) -> ShoalResult<Arc<Stream>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut watch = self.meta_state.clone();
        loop {
            let stream = self.stream(name).await?;
            match stream.status {
                StreamStatus::Active | StreamStatus::Updating => return Ok(stream),
                StreamStatus::Deleting => return Err(ShoalError::stream_not_found(name)),
                StreamStatus::Creating => {
                    if tokio::time::timeout_at(deadline, watch.changed()).await.is_err() {
                        return Err(ShoalError::in_use(format!(
                            "Stream {name} is still being created; retry shortly."
                        )));
                    }
                }
            }
        }
    }

    /// Stops every Raft group of the node.
    pub async fn shutdown_groups(&self) {
        for handle in self.groups.all() {
            if let Err(error) = handle.raft.shutdown().await {
                tracing::warn!(group = handle.group, %error, "group did not shut down cleanly");
            }
            self.groups.remove(handle.group);
        }
    }
}

/// Runs a node on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: NodeConfig,
    faults: Arc<NetworkFaults>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let node = Node::open(config, faults).await?;
    serve(node, listener, shutdown).await
}

/// Serves an opened node on `listener` until `shutdown` resolves, then stops its
/// background tasks and Raft groups.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(node = node.id, zone = %node.info.zone, addr = %node.info.addr, "node started");
    let (stop_tasks, tasks_stopped) = watch::channel(false);
    let background = vec![
        tokio::spawn(crate::reconciler::run(node.clone(), tasks_stopped.clone())),
        tokio::spawn(crate::retention::run(node.clone(), tasks_stopped.clone())),
        tokio::spawn(crate::balancer::run(node.clone(), tasks_stopped.clone())),
        tokio::spawn(crate::autoscaler::run(node.clone(), tasks_stopped.clone())),
        tokio::spawn(crate::liveness::run(node.clone(), tasks_stopped.clone())),
        tokio::spawn(crate::quiescence::run(node.clone(), tasks_stopped.clone())),
    ];
    // Peers keep one Raft exchange open to this node; it must end when the node
    // stops, or the graceful shutdown would wait for the peers to hang up.
    let (stop_exchanges, exchanges_stopping) = watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_exchanges.send(true);
    };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &node.tls {
        builder = builder.tls_config(tls.grpc_server()).context("configuring TLS for gRPC")?;
    }
    let server = builder
        // A peer's Raft traffic shares one HTTP/2 stream: give it room to flow.
        .initial_stream_window_size(Some(EXCHANGE_WINDOW_BYTES))
        .initial_connection_window_size(Some(2 * EXCHANGE_WINDOW_BYTES))
        // Messages in one DATA frame each (up to a MiB) instead of 16 KiB pieces.
        .max_frame_size(shoal_tls::dialer::MAX_FRAME_BYTES)
        .add_service(StreamControlServer::new(crate::control_service::ControlService::new(node.clone())))
        .add_service(
            RecordsServer::new(crate::data_service::DataService::new(node.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(ClusterServer::new(crate::cluster_service::ClusterService::new(node.clone())))
        .add_service(ConsumerGroupsServer::new(crate::consumer_service::ConsumerGroupService::new(node.clone())))
        .add_service(
            FirehoseServer::new(crate::firehose_service::FirehoseService::new(node.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            RaftTransportServer::new(crate::transport_service::TransportService::new(node.clone(), exchanges_stopping))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        // TCP_NODELAY on every accepted connection: the builder's `tcp_nodelay` is
        // ignored for a listener of our own, and with Nagle's algorithm on, a small
        // reply written while an earlier segment awaited the peer's delayed ACK sat
        // for up to 40 ms — the Raft acknowledgements behind the low-load p99.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown);
    let served = server.await;
    let _ = stop_tasks.send(true);
    for task in background {
        let _ = task.await;
    }
    node.shutdown_groups().await;
    tracing::info!(node = node.id, "node stopped");
    served.context("grpc server failed")
}

/// A node running in the background of this process.
pub struct NodeHandle {
    pub id: NodeId,
    pub addr: std::net::SocketAddr,
    /// The running node, for tests that inspect a replica's storage directly.
    pub node: Arc<Node>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl NodeHandle {
    /// Stops the node and waits until it has released its storage.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let outcome = self.task.await.context("node task panicked")?;
        drop(self.node);
        outcome
    }
}

/// Opens a node and serves it on `listener` in the background.
pub async fn start(
    listener: TcpListener,
    config: NodeConfig,
    faults: Arc<NetworkFaults>,
) -> anyhow::Result<NodeHandle> {
    let addr = listener.local_addr()?;
    let id = config.id;
    let node = Node::open(config, faults).await?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(node.clone(), listener, async move {
        let _ = stopped.await;
    }));
    Ok(NodeHandle { id, addr, node, shutdown: Some(shutdown), task })
}
