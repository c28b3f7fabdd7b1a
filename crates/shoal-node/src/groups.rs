//! The Raft groups running on this node.

use openraft::async_runtime::WatchReceiver;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use shoal_raft::{GroupRaft, ShardProgress};
use shoal_types::{GroupId, NodeId, NodeInfo};
use tokio::sync::{Notify, watch};

pub struct GroupHandle {
    pub group: GroupId,
    pub raft: GroupRaft,
    /// The shards the group carries, by store id (none for the metadata group).
    pub shards: BTreeMap<u64, ShardSlot>,
    /// The arrival time of the last batch this node proposed as leader; new
    /// batches never get an earlier one.
    pub last_arrival: AtomicU64,
    /// Whether this node has seen the group initialized (skips repeated checks).
    pub initialized: AtomicBool,
    /// When this node last handed leadership of the group away (ms).
    pub last_leader_transfer: AtomicU64,
    /// Appends waiting to be proposed while this node leads the group.
    pub appends: crate::append_coalescer::AppendCoalescer,
    /// The leader this node last saw, to count leader changes.
    pub last_seen_leader: AtomicU64,
    /// Whether retention removed records of the group whose log entries openraft
    /// may not have purged yet (see `retention.rs`). Set when the handle starts
    /// too: records that expired before a restart still wait for their purge.
    pub expired_unpurged: AtomicBool,
    /// Whether the group's Raft ticker is stopped (see `quiescence.rs`).
    resting: AtomicBool,
    /// The last log index the quiescence pass saw, and when the log last moved.
    seen_log_index: AtomicU64,
    last_activity_millis: AtomicU64,
}

/// One shard of a group, as this node sees it.
pub struct ShardSlot {
    /// Where the shard's records are kept ([`shoal_types::Shard::store`]).
    pub store: u64,
    /// Applied progress, published by the group's state machine.
    pub progress: watch::Receiver<ShardProgress>,
    /// Throughput limits, applied while this node leads the shard.
    pub throttle: crate::throughput::ShardThrottle,
    /// Records and bytes this node appended as the shard's leader.
    pub load: AppendedLoad,
    /// `(stream, shard id)` for per-shard metrics.
    pub labels: (String, String),
    /// The shard's own series, registered once.
    pub metrics: crate::shard_metrics::ShardMetrics,
    /// Set once the shard's data is erased after it left the metadata while its
    /// group lives on (see `retention.rs`).
    pub erased: AtomicBool,
}

impl ShardSlot {
    pub fn new(
        store: u64,
        progress: watch::Receiver<ShardProgress>,
        limits: crate::throughput::ThroughputLimits,
        stream: &str,
        shard: &str,
    ) -> Self {
        ShardSlot {
            store,
            progress,
            throttle: crate::throughput::ShardThrottle::new(limits),
            load: AppendedLoad::default(),
            labels: (stream.to_string(), shard.to_string()),
            metrics: crate::shard_metrics::ShardMetrics::new(stream, shard),
            erased: AtomicBool::new(false),
        }
    }

    pub fn progress(&self) -> ShardProgress {
        *self.progress.borrow()
    }
}

/// Counters of what a leader appended, read by the autoscaler as rates.
#[derive(Debug, Default)]
pub struct AppendedLoad {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

impl AppendedLoad {
    pub fn record(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl GroupHandle {
    /// A handle on `group`, which carries `shards` (none for the metadata group).
    pub fn new(group: GroupId, raft: GroupRaft, shards: Vec<ShardSlot>) -> Self {
        GroupHandle {
            group,
            raft,
            shards: shards.into_iter().map(|slot| (slot.store, slot)).collect(),
            last_arrival: AtomicU64::new(0),
            initialized: AtomicBool::new(false),
            last_leader_transfer: AtomicU64::new(0),
            appends: Default::default(),
            last_seen_leader: AtomicU64::new(0),
            expired_unpurged: AtomicBool::new(true),
            resting: AtomicBool::new(false),
            seen_log_index: AtomicU64::new(0),
            last_activity_millis: AtomicU64::new(shoal_types::now_millis()),
        }
    }

    /// Restarts the group's Raft ticker (heartbeats, election timer) if it was
    /// resting, and counts now as activity. Call before proposing on the group.
    pub fn wake(&self) {
        self.last_activity_millis.fetch_max(shoal_types::now_millis(), Ordering::Relaxed);
        self.resume();
    }

    /// Restarts the group's Raft ticker if it was resting (not counted as activity).
    pub fn resume(&self) {
        if self.resting.swap(false, Ordering::AcqRel) {
            self.raft.runtime_config().tick(true);
        }
    }

    /// Stops the group's Raft ticker: no heartbeats, no election timer.
    pub fn rest(&self) {
        if !self.resting.swap(true, Ordering::AcqRel) {
            self.raft.runtime_config().tick(false);
        }
    }

    pub fn is_resting(&self) -> bool {
        self.resting.load(Ordering::Acquire)
    }

    pub fn last_activity_millis(&self) -> u64 {
        self.last_activity_millis.load(Ordering::Relaxed)
    }

    /// Records the log's last index; true (and now counts as activity) if it moved.
    pub fn note_log_index(&self, index: u64, now_millis: u64) -> bool {
        let moved = self.seen_log_index.swap(index, Ordering::Relaxed) != index;
        if moved {
            self.last_activity_millis.fetch_max(now_millis, Ordering::Relaxed);
        }
        moved
    }

    /// `(stream, shard id)` of the group's first shard, for group-level metrics;
    /// empty for the metadata group.
    pub fn labels(&self) -> (String, String) {
        self.shards.values().next().map(|slot| slot.labels.clone()).unwrap_or_default()
    }

    /// The shard stored under `store`, if the group carries it.
    pub fn shard(&self, store: u64) -> shoal_types::ShoalResult<&ShardSlot> {
        self.shards.get(&store).ok_or_else(|| {
            shoal_types::ShoalError::internal(format!("group {} does not carry shard store {store}", self.group))
        })
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Why this node's replica of the group stopped, if it has: openraft stops a
    /// group for good when its storage fails (a full disk), and only a restart of
    /// the node brings it back. Its last metrics still name a leader, which may
    /// long have changed.
    pub fn stopped(&self) -> Option<String> {
        self.raft.metrics().borrow_watched().running_state.as_ref().err().map(ToString::to_string)
    }

    /// The address of a member of this group, from its membership.
    pub fn member(&self, id: NodeId) -> Option<NodeInfo> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        metrics.membership_config.nodes().find(|(n, _)| **n == id).map(|(_, info)| info.clone())
    }

    /// The arrival time for a new entry: now, but never before the last one
    /// of any of the group's shards.
    pub fn next_arrival(&self, now_millis: u64) -> u64 {
        let floor = self.shards.values().map(|s| s.progress().last_arrival_millis).max().unwrap_or(0);
        let proposed = now_millis.max(floor);
        let previous = self.last_arrival.fetch_max(proposed, Ordering::SeqCst);
        proposed.max(previous)
    }
}

/// Every group this node runs, by id; lookups can wait for a group that the
/// reconciler is about to start.
#[derive(Default)]
pub struct GroupRegistry {
    groups: RwLock<HashMap<GroupId, Arc<GroupHandle>>>,
    changed: Notify,
}

impl GroupRegistry {
    pub fn get(&self, group: GroupId) -> Option<Arc<GroupHandle>> {
        self.groups.read().unwrap_or_else(|e| e.into_inner()).get(&group).cloned()
    }

    pub fn insert(&self, handle: Arc<GroupHandle>) {
        self.groups.write().unwrap_or_else(|e| e.into_inner()).insert(handle.group, handle);
        self.changed.notify_waiters();
    }

    pub fn remove(&self, group: GroupId) -> Option<Arc<GroupHandle>> {
        self.groups.write().unwrap_or_else(|e| e.into_inner()).remove(&group)
    }

    pub fn all(&self) -> Vec<Arc<GroupHandle>> {
        self.groups.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// The group, waiting up to `timeout` for it to be started.
    pub async fn wait_for(&self, group: GroupId, timeout: Duration) -> Option<Arc<GroupHandle>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(handle) = self.get(group) {
                return Some(handle);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.get(group);
            }
        }
    }
}
