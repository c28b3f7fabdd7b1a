//! Streams and shards as the metadata group records them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::hash_key::{HashKey, HashKeyRange};
use crate::node::NodeId;
use crate::record::RecordPosition;
use crate::sequence_number::SequenceNumber;
use crate::shard_id::ShardId;

/// Identifies one Raft group on the cluster. Group 0 is the metadata group; every
/// shard gets a fresh id that is never reused.
pub type GroupId = u64;

pub const META_GROUP_ID: GroupId = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamStatus {
    Creating,
    Active,
    Updating,
    Deleting,
}

impl StreamStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Creating => "CREATING",
            StreamStatus::Active => "ACTIVE",
            StreamStatus::Updating => "UPDATING",
            StreamStatus::Deleting => "DELETING",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub id: ShardId,
    /// The Raft group that replicates this shard.
    pub group_id: GroupId,
    pub hash_key_range: HashKeyRange,
    pub parent: Option<ShardId>,
    pub adjacent_parent: Option<ShardId>,
    /// Replica nodes, one per zone; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// Set once the shard's group has elected a leader.
    pub ready: bool,
    /// Set when the shard was closed by resharding: the last position it holds.
    pub closed_at: Option<RecordPosition>,
    /// When the shard was closed (ms since the epoch).
    #[serde(default)]
    pub closed_millis: Option<u64>,
    /// Nodes that still hold a copy while the group moves the replica elsewhere.
    #[serde(default)]
    pub retiring: Vec<NodeId>,
    /// Where the shard's records are kept, when it shares its group with other
    /// shards (see [`Shard::store`]); `None` for a group of its own.
    #[serde(default)]
    pub store_id: Option<u64>,
}

impl Shard {
    /// A new open shard that has no leader yet.
    pub fn new(id: ShardId, group_id: GroupId, hash_key_range: HashKeyRange, replicas: Vec<NodeId>) -> Shard {
        Shard {
            id,
            group_id,
            hash_key_range,
            parent: None,
            adjacent_parent: None,
            replicas,
            ready: false,
            closed_at: None,
            closed_millis: None,
            retiring: Vec::new(),
            store_id: None,
        }
    }

    /// The key space of the shard's records and progress on disk. A shard alone
    /// in its group uses the group's id; shards that share a group (created
    /// together, packed so that one Raft entry carries appends to several of
    /// them) each have an id of their own, from the same sequence as group ids.
    pub fn store(&self) -> u64 {
        self.store_id.unwrap_or(self.group_id)
    }

    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }

    /// A closed shard whose records have all expired: it closed before `cutoff_millis`.
    pub fn is_expired(&self, cutoff_millis: u64) -> bool {
        self.closed_millis.is_some_and(|closed| closed < cutoff_millis)
    }

    /// Every node that holds a copy: the replicas and those still retiring.
    pub fn holders(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas.iter().chain(self.retiring.iter()).copied()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    pub name: String,
    pub status: StreamStatus,
    pub created_millis: u64,
    pub retention_hours: u32,
    pub shards: Vec<Shard>,
    #[serde(default)]
    pub settings: StreamSettings,
    /// Registered enhanced fan-out consumers.
    #[serde(default)]
    pub consumers: Vec<Consumer>,
}

/// What a stream's owner can set besides shards and retention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSettings {
    /// `PROVISIONED` or `ON_DEMAND`.
    pub mode: String,
    pub tags: BTreeMap<String, String>,
    /// The KMS key id when server-side encryption is on (Shoal records the
    /// setting; records are stored as they are on the node's disk).
    pub encryption_key_id: Option<String>,
    /// Shard-level metrics enabled by EnableEnhancedMonitoring.
    pub shard_level_metrics: BTreeSet<String>,
    /// Largest record accepted, in KiB (1024 by default, up to 10240).
    pub max_record_size_kib: u32,
    /// Warm throughput asked for with UpdateStreamWarmThroughput, MiB/s.
    pub warm_throughput_mibps: Option<u32>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            mode: "PROVISIONED".into(),
            tags: BTreeMap::new(),
            encryption_key_id: None,
            shard_level_metrics: BTreeSet::new(),
            max_record_size_kib: 1024,
            warm_throughput_mibps: None,
        }
    }
}

/// An enhanced fan-out consumer of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub name: String,
    pub created_millis: u64,
}

impl Consumer {
    /// `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/CNAME:CREATION_EPOCH`.
    pub fn arn(&self, stream_arn: &str) -> String {
        format!("{stream_arn}/consumer/{}:{}", self.name, self.created_millis / 1000)
    }
}

impl Stream {
    /// A new stream, CREATING, with default settings and no consumers.
    pub fn new(name: &str, created_millis: u64, retention_hours: u32, shards: Vec<Shard>) -> Stream {
        Stream {
            name: name.to_string(),
            status: StreamStatus::Creating,
            created_millis,
            retention_hours,
            shards,
            settings: Default::default(),
            consumers: Vec::new(),
        }
    }

    pub fn epoch_secs(&self) -> u64 {
        self.created_millis / 1000
    }

    pub fn shard(&self, id: ShardId) -> Option<&Shard> {
        self.shards.iter().find(|s| s.id == id)
    }

    pub fn open_shards(&self) -> impl Iterator<Item = &Shard> {
        self.shards.iter().filter(|s| s.is_open())
    }

    /// The open shard whose hash-key range holds `key`.
    pub fn route(&self, key: HashKey) -> Option<&Shard> {
        self.open_shards().find(|s| s.hash_key_range.contains(key))
    }

    pub fn sequence_number(&self, shard: ShardId, position: RecordPosition) -> SequenceNumber {
        SequenceNumber { stream_epoch_secs: self.epoch_secs(), shard_index: shard.index(), position }
    }

    /// The first sequence number a shard could hold, shown as StartingSequenceNumber.
    pub fn starting_sequence_number(&self, shard: ShardId) -> SequenceNumber {
        self.sequence_number(shard, RecordPosition::START)
    }

    /// The ARN AWS would give this stream.
    pub fn arn(&self, region: &str, account: &str) -> String {
        format!("arn:aws:kinesis:{region}:{account}:stream/{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_hash_key_range() {
        let shards = HashKeyRange::split_evenly(4)
            .into_iter()
            .enumerate()
            .map(|(i, range)| Shard::new(ShardId(i as u32), i as u64 + 1, range, vec![1, 2, 3]))
            .collect();
        let stream = Stream::new("s", 0, 24, shards);
        assert_eq!(stream.route(HashKey(0)).unwrap().id, ShardId(0));
        assert_eq!(stream.route(HashKey(u128::MAX)).unwrap().id, ShardId(3));
        assert_eq!(stream.route(HashKey(u128::MAX / 2)).unwrap().id, ShardId(1));
        // MD5("a") starts with 0x0c: the first quarter.
        assert_eq!(stream.route(HashKey::from_partition_key("a")).unwrap().id, ShardId(0));
    }
}
