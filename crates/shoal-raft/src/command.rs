//! What a Raft log entry carries.

use std::sync::Arc;

use crate::consumer_group::{ConsumerGroup, GroupCommand};
use serde::{Deserialize, Serialize};
use shoal_types::{Consumer, NodeId, Record, RecordPosition, ShoalError, Stream};

/// The application payload of a log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A change to streams, shards or placement (metadata group only).
    Meta(MetaCommand),
    /// Records appended to a shard (shard groups only).
    Append(RecordBatch),
    /// Closes a shard for resharding: no record is accepted after this entry.
    Seal,
    /// Several appends to one shard coalesced by its leader into one entry (group
    /// commit): their records take consecutive offsets, each part keeps its origin
    /// so a retried part is still stored once. (Last variant: older log entries
    /// keep their encoding.)
    AppendMany(CoalescedBatch),
    /// Appends to several shards of one group in one entry: each shard's records
    /// take consecutive offsets of this entry in that shard.
    AppendShards(Vec<ShardAppend>),
    /// Seals one shard of a group that carries several (see [`Command::Seal`]).
    SealShard(u64),
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Meta(cmd) => write!(f, "meta:{cmd:?}"),
            Command::Append(batch) => write!(f, "append:{} records", batch.records.len()),
            Command::Seal => write!(f, "seal"),
            Command::AppendMany(batch) => {
                let records: usize = batch.parts.iter().map(|p| p.records.len()).sum();
                write!(f, "append:{records} records in {} parts", batch.parts.len())
            }
            Command::AppendShards(appends) => {
                let records: usize = appends.iter().flat_map(|a| &a.batch.parts).map(|p| p.records.len()).sum();
                write!(f, "append:{records} records to {} shards", appends.len())
            }
            Command::SealShard(store) => write!(f, "seal shard {store}"),
        }
    }
}

impl Command {
    /// About how many bytes the records this command carries take in memory, if
    /// it carries records.
    pub fn record_bytes(&self) -> Option<usize> {
        let of = |records: &[Record]| -> usize {
            records.iter().map(|r| r.data.len() + r.partition_key.len() + RECORD_OVERHEAD_BYTES).sum()
        };
        let of_parts = |parts: &[AppendPart]| parts.iter().map(|p| of(&p.records)).sum::<usize>();
        match self {
            Command::Append(batch) => Some(of(&batch.records)),
            Command::AppendMany(batch) => Some(of_parts(&batch.parts)),
            Command::AppendShards(appends) => Some(appends.iter().map(|a| of_parts(&a.batch.parts)).sum()),
            _ => None,
        }
    }
}

/// What a record costs in memory besides its key and data (the struct, two
/// allocations).
const RECORD_OVERHEAD_BYTES: usize = 96;

/// A caller's records on their way into a Raft entry, shared rather than copied:
/// the caller keeps a handle to route them again (resharding) or retry them
/// (a lost leadership) while the entry carries them. serde writes an `Arc<T>` as
/// its `T`, so entries keep the layout of a plain `Vec<Record>`.
pub type SharedRecords = Arc<Vec<Record>>;

/// Records bound for one shard, with the arrival time the leader gave them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch {
    pub records: SharedRecords,
    /// Assigned by the shard leader, never below the shard's last arrival time, so
    /// arrival times are monotonic within a shard and identical on every replica.
    pub arrival_millis: u64,
    /// Who proposed this batch, so a retried proposal is stored only once.
    pub origin: BatchOrigin,
}

/// Appends of several callers to one shard, proposed as one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoalescedBatch {
    /// Assigned by the shard leader, as [`RecordBatch::arrival_millis`].
    pub arrival_millis: u64,
    pub parts: Vec<AppendPart>,
}

/// The appends to one shard (named by its [`store`](shoal_types::Shard::store))
/// inside a [`Command::AppendShards`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardAppend {
    pub shard: u64,
    pub batch: CoalescedBatch,
}

/// One caller's records inside a [`CoalescedBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendPart {
    pub origin: BatchOrigin,
    pub records: SharedRecords,
}

/// Identifies a batch across retries. A node that retries an append after an
/// ambiguous failure (the leader stepped down: the entry may or may not commit)
/// proposes it again with the same `id` and `retry_since_millis` set; the state
/// machine then looks for `id` among the entries that arrived since then and, if
/// the first proposal did commit, answers with its position instead of storing
/// the records twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOrigin {
    /// Unique per batch; 0 when the proposer does not retry.
    pub id: u128,
    /// 0 on a first attempt; on a retry, a time (ms) safely before the first
    /// attempt's arrival time (clock skew between nodes included).
    pub retry_since_millis: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    CreateStream {
        name: String,
        shard_count: u32,
        retention_hours: u32,
        now_millis: u64,
    },
    /// A shard's group has a leader; when every shard has one the stream is ACTIVE.
    MarkShardReady {
        stream: String,
        created_millis: u64,
        shard_index: u32,
    },
    /// Starts deletion: the stream is DELETING and its groups are being stopped.
    MarkStreamDeleting {
        name: String,
    },
    /// Finishes deletion: the name is free again.
    RemoveStream {
        name: String,
        created_millis: u64,
    },
    /// Increase (`increase = true`) or decrease the retention period.
    UpdateRetention {
        name: String,
        hours: u32,
        increase: bool,
    },
    AddTags {
        name: String,
        tags: Vec<(String, String)>,
    },
    RemoveTags {
        name: String,
        keys: Vec<String>,
    },
    /// Turns encryption on with a key id, or off with `None`.
    SetEncryption {
        name: String,
        key_id: Option<String>,
    },
    /// Enables (`enable = true`) or disables shard-level metrics.
    SetShardLevelMetrics {
        name: String,
        metrics: Vec<String>,
        enable: bool,
    },
    SetMaxRecordSize {
        name: String,
        kib: u32,
    },
    RegisterConsumer {
        stream: String,
        consumer: String,
        now_millis: u64,
    },
    DeregisterConsumer {
        stream: String,
        consumer: String,
    },
    /// Attaches a resource policy to a stream or consumer ARN (`None` removes it).
    SetResourcePolicy {
        arn: String,
        policy: Option<String>,
    },
    /// Stores the account settings document (a JSON object).
    SetAccountSettings {
        settings: String,
    },
    /// Records the capacity mode (`PROVISIONED` or `ON_DEMAND`).
    SetStreamMode {
        name: String,
        mode: String,
    },
    /// Records the warm throughput asked for, in MiB/s.
    SetWarmThroughput {
        name: String,
        mibps: u32,
    },
    /// Closes a sealed shard and opens two children splitting its hash-key range.
    SplitShard {
        stream: String,
        shard_index: u32,
        new_starting_hash_key: String,
        sealed_end: RecordPosition,
        /// When the parent closed; it drops out of listings once its records expire.
        now_millis: u64,
    },
    /// Closes two sealed, adjacent shards and opens one child covering both ranges.
    MergeShards {
        stream: String,
        shard_index: u32,
        adjacent_index: u32,
        sealed_ends: (RecordPosition, RecordPosition),
        now_millis: u64,
    },
    /// Forgets closed shards that closed before `closed_before_millis` (all their
    /// records have expired); their groups stop and their data is erased.
    DropExpiredShards {
        stream: String,
        closed_before_millis: u64,
    },
    /// Moves one replica of a shard from node `from` to node `to`. The shard's
    /// group leader adds `to` and removes `from` from the group; `from` keeps its
    /// copy (it is "retiring") until [`MetaCommand::ReplicaRetired`].
    MoveReplica {
        stream: String,
        shard_index: u32,
        from: NodeId,
        to: NodeId,
    },
    /// Makes `node` (a replica of the shard) its preferred leader; the group's
    /// leader hands leadership over once `node` has caught up.
    PreferLeader {
        stream: String,
        shard_index: u32,
        node: NodeId,
    },
    /// The shard's group no longer counts `node` as a member: it may erase its copy.
    ReplicaRetired {
        stream: String,
        shard_index: u32,
        node: NodeId,
    },
    /// A node being drained gets no new replicas, and its replicas move elsewhere.
    DrainNode {
        node: NodeId,
    },
    /// Takes a node back into placement (ends a drain, or forgets a removed node).
    UndrainNode {
        node: NodeId,
    },
    /// A change to the Firehose delivery stream `name`.
    DeliveryStream {
        name: String,
        now_millis: u64,
        command: crate::delivery_stream::DeliveryStreamCommand,
    },
    /// A change to the consumer group of `application` on `stream`, at the time
    /// the proposer stamped (lease expiry is judged by it).
    Group {
        stream: String,
        application: String,
        now_millis: u64,
        command: GroupCommand,
    },
    /// As [`MetaCommand::CreateStream`], with up to `shards_per_group` shards
    /// sharing a Raft group and at least one group per node (see
    /// `meta_state::packed_group_count`). Proposed until the twenty-second
    /// session; still applied as it was, for logs that hold it.
    CreatePackedStream {
        name: String,
        shard_count: u32,
        retention_hours: u32,
        now_millis: u64,
        shards_per_group: u32,
    },
    /// As [`MetaCommand::CreateStream`], with the shards spread evenly over
    /// `group_count` Raft groups, neighbouring hash-key ranges together (the
    /// proposer counts them: `meta_state::stream_group_count`). The count is in
    /// the command so that replaying it always builds the same layout.
    CreateStreamInGroups {
        name: String,
        shard_count: u32,
        retention_hours: u32,
        now_millis: u64,
        group_count: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaResponse {
    Done,
    Stream(Stream),
    Consumer(Consumer),
    Group(ConsumerGroup),
    DeliveryStream(Option<crate::delivery_stream::DeliveryStream>),
    Error(ShoalError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Blank and membership entries, and commands sent to the wrong kind of group.
    None,
    Meta(MetaResponse),
    /// Records were stored at offsets `first_offset..first_offset + count` of
    /// entry `log_index` (`first_offset` is 0 unless a retry found its first
    /// attempt inside a coalesced entry).
    Appended {
        log_index: u64,
        first_offset: u32,
        count: u32,
        arrival_millis: u64,
    },
    /// Where each part of a coalesced append landed, in the order of the parts.
    AppendedMany(Vec<Landed>),
    /// For each shard of an [`Command::AppendShards`], in order: where its parts
    /// landed, or that it is sealed.
    AppendedShards(Vec<ShardAppended>),
    /// The shard is sealed: it ends before `end` (the seal's own position).
    /// An append that arrives after the seal is refused with this answer.
    Sealed {
        end: RecordPosition,
    },
}

/// What became of one shard's appends in a [`Command::AppendShards`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardAppended {
    Landed(Vec<Landed>),
    Sealed {
        end: RecordPosition,
    },
    /// The group carries no such shard (or the entry named it twice).
    Unknown,
}

/// Where a batch of records landed: offsets `first_offset..first_offset + count`
/// of the entry at `log_index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landed {
    pub log_index: u64,
    pub first_offset: u32,
    pub count: u32,
    pub arrival_millis: u64,
}
