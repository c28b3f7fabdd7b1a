//! In-process Shoal clusters for tests.
//!
//! [`TestCluster::start`] runs real nodes — RocksDB in temporary directories, gRPC
//! on `127.0.0.1:0`, each in its own zone — in the test's process. Tests can kill
//! and restart nodes, cut them off with [`NetworkFaults`], and read each replica's
//! storage directly to check what it holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shoal_client::{Dialer, ShoalClient};
use shoal_node::{NodeConfig, NodeHandle, PeerConfig, RaftTiming};
use shoal_raft::NetworkFaults;
use shoal_raft::shard_state::{ReadRecord, read_records};
use shoal_types::{NodeId, RecordPosition, ShardId, Stream};
use tokio::net::TcpListener;

pub use shoal_raft::NetworkFaults as Faults;

/// A cluster of nodes running in this process.
pub struct TestCluster {
    configs: BTreeMap<NodeId, NodeConfig>,
    nodes: BTreeMap<NodeId, NodeHandle>,
    pub faults: Arc<NetworkFaults>,
    /// How [`TestCluster::client`] dials the nodes (TLS when they serve it).
    dialer: Dialer,
    _data: tempfile::TempDir,
}

/// Installs a test log subscriber once (RUST_LOG to see more).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=error")),
        )
        .with_test_writer()
        .try_init();
}

impl TestCluster {
    /// Starts `count` nodes in zones `az-1 … az-N` and waits until the metadata
    /// group has a leader.
    pub async fn start(count: usize) -> anyhow::Result<TestCluster> {
        Self::start_with(count, |_| {}).await
    }

    /// Like [`TestCluster::start`], with each node's configuration adjusted first.
    pub async fn start_with(count: usize, configure: impl Fn(&mut NodeConfig)) -> anyhow::Result<TestCluster> {
        Self::start_with_dialer(count, configure, Dialer::plain()).await
    }

    /// Like [`TestCluster::start_with`], with clients dialing as `dialer` says
    /// (for nodes configured with TLS).
    pub async fn start_with_dialer(
        count: usize,
        configure: impl Fn(&mut NodeConfig),
        dialer: Dialer,
    ) -> anyhow::Result<TestCluster> {
        init_logging();
        let data = tempfile::Builder::new().prefix("shoal-test-").tempdir()?;
        let mut listeners = Vec::new();
        for _ in 0..count {
            listeners.push(TcpListener::bind("127.0.0.1:0").await?);
        }
        let peers: Vec<PeerConfig> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                PeerConfig { id: i as u64 + 1, zone: format!("az-{}", i + 1), addr }
            })
            .collect();
        let faults = Arc::new(NetworkFaults::default());
        let mut configs = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for (peer, listener) in peers.iter().zip(listeners) {
            let config = NodeConfig {
                id: peer.id,
                zone: peer.zone.clone(),
                listen: peer.addr.clone(),
                advertise: Some(peer.addr.clone()),
                data_dir: data.path().join(format!("node-{}", peer.id)),
                direct_io: shoal_node::DirectIo::Set(false),
                shards_per_group: shoal_node::config::DEFAULT_SHARDS_PER_GROUP,
                peers: peers.clone(),
                raft: RaftTiming { heartbeat_millis: 50, election_timeout_millis: 300, ..Default::default() },
                aws_listen: String::new(),
                aws_credentials: Vec::new(),
                shard_iterator_ttl_millis: shoal_types::limits::SHARD_ITERATOR_TTL_MILLIS,
                limits: shoal_node::ThroughputLimits::off(),
                retention_check_secs: 3600,
                retention_hour_millis: 3_600_000,
                autoscaler: Default::default(),
                tls: Default::default(),
                firehose: Default::default(),
            };
            let mut config = config;
            configure(&mut config);
            let handle = shoal_node::start(listener, config.clone(), faults.clone()).await?;
            configs.insert(peer.id, config);
            nodes.insert(peer.id, handle);
        }
        let cluster = TestCluster { configs, nodes, faults, dialer, _data: data };
        cluster.client(1).await?.list_streams().await.context("cluster never became ready")?;
        Ok(cluster)
    }

    pub fn node_ids(&self) -> Vec<NodeId> {
        self.configs.keys().copied().collect()
    }

    pub fn addr(&self, id: NodeId) -> String {
        self.configs.get(&id).map(|c| c.listen.clone()).unwrap_or_default()
    }

    /// A client talking to node `id`.
    pub async fn client(&self, id: NodeId) -> anyhow::Result<ShoalClient> {
        Ok(ShoalClient::connect_with(&self.addr(id), &self.dialer).await?)
    }

    /// The running node `id`, to drive it below the API (e.g. metadata commands).
    pub fn node(&self, id: NodeId) -> Option<Arc<shoal_node::Node>> {
        self.nodes.get(&id).map(|handle| handle.node.clone())
    }

    pub fn is_running(&self, id: NodeId) -> bool {
        self.nodes.contains_key(&id)
    }

    /// Stops node `id` as a crash would: its listener closes, its Raft groups stop,
    /// and only what is on disk survives.
    pub async fn kill(&mut self, id: NodeId) -> anyhow::Result<()> {
        let handle = self.nodes.remove(&id).context("node is not running")?;
        handle.stop().await
    }

    /// Starts node `id` again on its old address from its old data directory.
    pub async fn restart(&mut self, id: NodeId) -> anyhow::Result<()> {
        anyhow::ensure!(!self.nodes.contains_key(&id), "node {id} is running");
        let config = self.configs.get(&id).context("unknown node")?.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(&config.listen).await {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return Err(e.into()),
            }
        };
        let handle = shoal_node::start(listener, config, self.faults.clone()).await?;
        self.nodes.insert(id, handle);
        Ok(())
    }

    /// Starts a new node `id` in `zone` that knows the existing nodes as peers but
    /// is not yet a member: add it with `ShoalClient::add_node`.
    pub async fn start_new_node(&mut self, id: NodeId, zone: &str) -> anyhow::Result<String> {
        anyhow::ensure!(!self.configs.contains_key(&id), "node {id} exists");
        let template = self.configs.values().next().context("the cluster has no node")?.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let mut peers = template.peers.clone();
        peers.push(PeerConfig { id, zone: zone.to_string(), addr: addr.clone() });
        let data_root = template.data_dir.parent().context("no data root")?.to_path_buf();
        let config = NodeConfig {
            id,
            zone: zone.to_string(),
            listen: addr.clone(),
            advertise: Some(addr.clone()),
            data_dir: data_root.join(format!("node-{id}")),
            peers,
            ..template
        };
        let handle = shoal_node::start(listener, config.clone(), self.faults.clone()).await?;
        self.configs.insert(id, config);
        self.nodes.insert(id, handle);
        Ok(addr)
    }

    /// Stops node `id` for good (after it was removed from the cluster).
    pub async fn retire(&mut self, id: NodeId) -> anyhow::Result<()> {
        if let Some(handle) = self.nodes.remove(&id) {
            handle.stop().await?;
        }
        self.configs.remove(&id);
        Ok(())
    }

    /// Cuts node `id` off from every other node (both directions).
    pub fn isolate(&self, id: NodeId) {
        self.faults.isolate(id, self.node_ids());
    }

    pub fn heal(&self) {
        self.faults.heal();
    }

    /// Fails node `id`'s storage as a full disk would: from now on its every write
    /// and WAL sync fails, reads go on. A restart gives it working storage again.
    pub fn fail_storage(&self, id: NodeId) -> anyhow::Result<()> {
        self.node(id).context("node is not running")?.db.faults().fail();
        Ok(())
    }

    /// The leader of `stream`'s shard `shard_index`, as the running nodes see it.
    pub fn shard_leader(&self, stream: &Stream, shard_index: u32) -> Option<NodeId> {
        let group = stream.shard(ShardId(shard_index))?.group_id;
        self.nodes.values().find_map(|handle| {
            let group = handle.node.groups.get(group)?;
            let leader = group.leader()?;
            (leader == handle.id && group.raft.is_leader()).then_some(leader)
        })
    }

    /// The metadata of `name` as node `via` knows it.
    pub async fn stream(&self, via: NodeId, name: &str) -> anyhow::Result<Stream> {
        let handle = self.nodes.get(&via).context("node is not running")?;
        Ok(Stream::clone(&*handle.node.stream(name).await?))
    }

    /// Every record replica `id` holds for shard `shard_index` of `stream`, read
    /// straight from its RocksDB.
    pub fn replica_records(&self, id: NodeId, stream: &Stream, shard_index: u32) -> anyhow::Result<Vec<ReadRecord>> {
        let handle = self.nodes.get(&id).context("node is not running")?;
        let shard = stream.shard(ShardId(shard_index)).context("no such shard")?;
        Ok(read_records(&handle.node.db, shard.store(), RecordPosition::START, usize::MAX, usize::MAX)?)
    }

    /// Waits until every running replica of every shard of `stream` has applied as
    /// many records as the others.
    pub async fn wait_for_replicas_to_converge(&self, stream: &Stream, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut converged = true;
            for shard in &stream.shards {
                // Every running replica must be running the group and be at
                // the same position as the others.
                let replicas: Vec<_> = self
                    .nodes
                    .values()
                    .filter(|h| shard.replicas.contains(&h.id))
                    .map(|h| h.node.groups.get(shard.group_id))
                    .collect();
                let positions: Vec<_> = replicas
                    .iter()
                    .flatten()
                    .filter_map(|g| Some(g.shard(shard.store()).ok()?.progress().next_position))
                    .collect();
                converged &= positions.len() == replicas.len() && positions.windows(2).all(|w| w[0] == w[1]);
            }
            if converged {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "replicas of {} did not converge within {timeout:?}",
                stream.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for (_, handle) in std::mem::take(&mut self.nodes) {
            let _ = handle.stop().await;
        }
    }
}
