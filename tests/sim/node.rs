//! A simulated node: an in-memory database and the real metadata and shard groups
//! on it (real log store, real state machines, real openraft), which can crash —
//! losing whatever no sync covered — and restart from what survived.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_raft::shard_state::{self, ReadRecord};
use shoal_raft::{GroupLogStore, GroupRaft, GroupStateMachine, MetaState, ShardProgress, StateWatch};
use shoal_storage::NodeDb;
use shoal_types::stream::META_GROUP_ID;
use shoal_types::{GroupId, NodeId, NodeInfo, RecordPosition};
use tokio::sync::watch;

use super::network::SimNetwork;
use super::observer::Observer;

/// Virtual time a WAL sync takes: a crash in this window loses the append.
const SYNC_DELAY: Duration = Duration::from_millis(5);

pub struct SimNode {
    pub id: NodeId,
    db: NodeDb,
    running: Option<Running>,
}

struct Running {
    groups: BTreeMap<GroupId, GroupRaft>,
    meta_state: watch::Receiver<Arc<MetaState>>,
}

pub fn node_info(id: NodeId) -> NodeInfo {
    NodeInfo { addr: format!("sim-node-{id}"), zone: format!("az-{id}") }
}

impl SimNode {
    pub fn new(id: NodeId) -> SimNode {
        SimNode::with_sync_delay(id, SYNC_DELAY)
    }

    /// A node whose WAL syncs take `sync_delay` (a slow disk).
    pub fn with_sync_delay(id: NodeId, sync_delay: Duration) -> SimNode {
        SimNode { id, db: NodeDb::in_memory(sync_delay), running: None }
    }

    pub fn is_up(&self) -> bool {
        self.running.is_some()
    }

    /// Opens the metadata group and the shard groups of `shards` (each with the
    /// stores of its shards) from the node's database and puts them on the network.
    pub async fn start(
        &mut self,
        config: &Arc<openraft::Config>,
        shards: &[(GroupId, &[u64])],
        network: &SimNetwork,
        observer: &Observer,
    ) -> Result<(), String> {
        let mut groups = BTreeMap::new();
        let (meta_tx, meta_state) = watch::channel(Arc::new(MetaState::default()));
        let mut watches = vec![(META_GROUP_ID, StateWatch::Meta(meta_tx))];
        for (group, stores) in shards {
            let watch = match stores {
                [store] if store == group => StateWatch::Shard(watch::channel(ShardProgress::default()).0),
                _ => StateWatch::Shards(
                    stores.iter().map(|store| (*store, watch::channel(ShardProgress::default()).0)).collect(),
                ),
            };
            watches.push((*group, watch));
        }
        for (group, watch) in watches {
            let state_machine = GroupStateMachine::open(self.db.clone(), group, watch)
                .map_err(|e| format!("node {}: opening group {group}: {e}", self.id))?;
            let raft = GroupRaft::new(
                self.id,
                config.clone(),
                network.for_group(self.id, group),
                match group {
                    META_GROUP_ID => GroupLogStore::new(self.db.clone(), group),
                    _ => GroupLogStore::for_shards(self.db.clone(), group),
                },
                state_machine,
            )
            .await
            .map_err(|e| format!("node {}: starting group {group}: {e}", self.id))?;
            observer.watch(self.id, group, &raft);
            network.register(self.id, group, raft.clone());
            groups.insert(group, raft);
        }
        self.running = Some(Running { groups, meta_state });
        Ok(())
    }

    /// Initializes every group with `members` (done once, on the first node).
    pub async fn initialize(&self, members: &BTreeMap<NodeId, NodeInfo>) -> Result<(), String> {
        let running = self.running.as_ref().ok_or("initializing a node that is down")?;
        for (group, raft) in &running.groups {
            raft.initialize(members.clone()).await.map_err(|e| format!("initializing group {group}: {e}"))?;
        }
        Ok(())
    }

    /// Kills the node: its groups leave the network at once, its database keeps
    /// only durable writes plus the oldest `surviving_unsynced` unsynced batches.
    pub async fn crash(&mut self, network: &SimNetwork, surviving_unsynced: usize) -> Result<(), String> {
        let Some(running) = self.running.take() else { return Ok(()) };
        network.crash(self.id);
        self.db = self.db.crash(surviving_unsynced).map_err(|e| format!("crashing node {}: {e}", self.id))?;
        for raft in running.groups.values() {
            // The old incarnation's storage is dead; stopping only reclaims its tasks.
            let _ = tokio::time::timeout(Duration::from_secs(5), raft.shutdown()).await;
        }
        Ok(())
    }

    /// Writes made without a sync that a crash now could lose.
    pub fn unsynced_batches(&self) -> usize {
        self.db.unsynced_batches()
    }

    /// The metadata state this node has applied.
    pub fn meta_state(&self) -> Option<Arc<MetaState>> {
        self.running.as_ref().map(|r| r.meta_state.borrow().clone())
    }

    /// Every record of the shard stored under `store` as this node has applied them.
    pub fn records(&self, store: u64) -> Result<Vec<ReadRecord>, String> {
        shard_state::read_records(&self.db, store, RecordPosition::default(), usize::MAX, usize::MAX)
            .map_err(|e| format!("node {}: reading shard store {store}: {e}", self.id))
    }

    pub fn db(&self) -> &NodeDb {
        &self.db
    }
}
