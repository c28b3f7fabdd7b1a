//! The metadata group's state: streams, their shards and where those live.
//!
//! Applying a [`MetaCommand`] is a pure function of the state, the command and the
//! current membership (the nodes to place shards on), so every replica reaches the
//! same state and the same placement.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shoal_types::placement::place_shards;
use shoal_types::stream::META_GROUP_ID;
use shoal_types::validation::{validate_retention_hours, validate_shard_count, validate_stream_name};
use shoal_types::{
    GroupId, HashKey, HashKeyRange, NodeId, NodeInfo, RecordPosition, Shard, ShardId, ShoalError, Stream, StreamStatus,
};

use crate::command::{MetaCommand, MetaResponse};
use crate::consumer_group::{ConsumerGroup, DEFAULT_LEASE_TIMEOUT_MILLIS, GroupCommand, validate_application};
use crate::delivery_stream::{
    DIRECT_PUT_RETENTION_HOURS, DIRECT_PUT_SHARDS, DeliveryStream, DeliveryStreamCommand, direct_put_stream,
};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetaState {
    /// Streams by name, each shared (a call's handler holds its stream while it
    /// works, without copying every shard; a change copies the one stream it changes).
    pub streams: BTreeMap<String, Arc<Stream>>,
    /// The next shard group id to hand out; ids are never reused.
    pub next_group_id: GroupId,
    /// Resource policies by stream or consumer ARN.
    pub resource_policies: BTreeMap<String, String>,
    /// The account settings document (JSON), if ever set.
    pub account_settings: Option<String>,
    /// Nodes being drained: no new replicas go there and theirs move away.
    pub draining: BTreeSet<NodeId>,
    /// Consumer groups by `stream/application`.
    pub consumer_groups: BTreeMap<String, ConsumerGroup>,
    /// Firehose delivery streams by name.
    pub delivery_streams: BTreeMap<String, DeliveryStream>,
}

/// The key of a consumer group in [`MetaState::consumer_groups`].
pub fn group_key(stream: &str, application: &str) -> String {
    format!("{stream}/{application}")
}

/// Most tags a stream may carry.
pub const MAX_TAGS_PER_STREAM: usize = 50;
/// Most consumers a stream may have.
pub const MAX_CONSUMERS_PER_STREAM: usize = 20;
/// The shard-level metrics Kinesis knows.
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

impl MetaState {
    pub fn stream(&self, name: &str) -> Result<&Stream, ShoalError> {
        self.streams.get(name).map(|stream| &**stream).ok_or_else(|| ShoalError::stream_not_found(name))
    }

    /// Every shard group that should exist, with its replicas.
    pub fn shard_groups(&self) -> impl Iterator<Item = (&Stream, &Shard)> {
        self.streams.values().flat_map(|stream| stream.shards.iter().map(move |shard| (&**stream, shard)))
    }

    /// One shard of each Raft group (shards that share a group share its
    /// replicas), with its stream.
    pub fn distinct_groups(&self) -> impl Iterator<Item = (&Stream, &Shard)> {
        let mut seen = BTreeSet::new();
        self.shard_groups().filter(move |(_, shard)| seen.insert(shard.group_id))
    }

    /// How many groups each node is the preferred leader of.
    fn leader_load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for (_, shard) in self.distinct_groups() {
            if let Some(leader) = shard.replicas.first() {
                *load.entry(*leader).or_insert(0) += 1;
            }
        }
        load
    }

    pub fn apply(&mut self, command: MetaCommand, nodes: &BTreeMap<NodeId, NodeInfo>) -> MetaResponse {
        // New replicas go only to nodes that are not being drained.
        let nodes: BTreeMap<NodeId, NodeInfo> =
            nodes.iter().filter(|(id, _)| !self.draining.contains(id)).map(|(id, n)| (*id, n.clone())).collect();
        match self.try_apply(command, &nodes) {
            Ok(response) => response,
            Err(error) => MetaResponse::Error(error),
        }
    }

    fn try_apply(
        &mut self,
        command: MetaCommand,
        nodes: &BTreeMap<NodeId, NodeInfo>,
    ) -> Result<MetaResponse, ShoalError> {
        match command {
            MetaCommand::CreateStream { name, shard_count, retention_hours, now_millis } => {
                self.create_stream(name, shard_count, retention_hours, now_millis, shard_count as usize, nodes)
            }
            MetaCommand::CreatePackedStream { name, shard_count, retention_hours, now_millis, shards_per_group } => {
                let groups = packed_group_count(shard_count as usize, shards_per_group as usize, nodes.len());
                self.create_stream(name, shard_count, retention_hours, now_millis, groups, nodes)
            }
            MetaCommand::CreateStreamInGroups { name, shard_count, retention_hours, now_millis, group_count } => {
                self.create_stream(name, shard_count, retention_hours, now_millis, group_count as usize, nodes)
            }
            MetaCommand::MarkShardReady { stream, created_millis, shard_index } => {
                let Some(entry) =
                    self.streams.get_mut(&stream).filter(|s| s.created_millis == created_millis).map(Arc::make_mut)
                else {
                    return Ok(MetaResponse::Done);
                };
                // Readiness is the group's: every shard it carries has a leader now.
                let group = entry.shards.iter().find(|s| s.id == ShardId(shard_index)).map(|s| s.group_id);
                for shard in entry.shards.iter_mut().filter(|s| Some(s.group_id) == group) {
                    shard.ready = true;
                }
                let settling = matches!(entry.status, StreamStatus::Creating | StreamStatus::Updating);
                if settling && entry.shards.iter().all(|s| s.ready) {
                    entry.status = StreamStatus::Active;
                }
                Ok(MetaResponse::Stream(entry.clone()))
            }
            MetaCommand::MarkStreamDeleting { name } => {
                let stream = self.stream_mut(&name)?;
                stream.status = StreamStatus::Deleting;
                Ok(MetaResponse::Stream(stream.clone()))
            }
            MetaCommand::RemoveStream { name, created_millis } => {
                if self.streams.get(&name).is_some_and(|s| s.created_millis == created_millis) {
                    self.streams.remove(&name);
                    self.consumer_groups.retain(|_, group| group.stream != name);
                }
                Ok(MetaResponse::Done)
            }
            MetaCommand::UpdateRetention { name, hours, increase } => {
                validate_retention_hours(hours)?;
                let stream = self.stream_mut(&name)?;
                let current = stream.retention_hours;
                if increase && hours < current {
                    return Err(ShoalError::invalid_argument(format!(
                        "Requested retention period ({hours} hours) for stream {name} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API."
                    )));
                }
                if !increase && hours > current {
                    return Err(ShoalError::invalid_argument(format!(
                        "Requested retention period ({hours} hours) for stream {name} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API."
                    )));
                }
                stream.retention_hours = hours;
                Ok(MetaResponse::Stream(stream.clone()))
            }
            MetaCommand::AddTags { name, tags } => {
                let stream = self.stream_mut(&name)?;
                let mut updated = stream.settings.tags.clone();
                for (key, value) in tags {
                    validate_tag(&key, &value)?;
                    updated.insert(key, value);
                }
                if updated.len() > MAX_TAGS_PER_STREAM {
                    return Err(ShoalError::new(
                        shoal_types::ErrorCode::LimitExceeded,
                        format!(
                            "A stream can have at most {MAX_TAGS_PER_STREAM} tags; {name} would have {}.",
                            updated.len()
                        ),
                    ));
                }
                stream.settings.tags = updated;
                Ok(MetaResponse::Stream(stream.clone()))
            }
            MetaCommand::RemoveTags { name, keys } => {
                let stream = self.stream_mut(&name)?;
                for key in keys {
                    stream.settings.tags.remove(&key);
                }
                Ok(MetaResponse::Stream(stream.clone()))
            }
            MetaCommand::SetEncryption { name, key_id } => {
                let stream = self.stream_mut(&name)?;
                stream.settings.encryption_key_id = key_id;
                Ok(MetaResponse::Stream(stream.clone()))
            }
            MetaCommand::SetShardLevelMetrics { name, metrics, enable } => {
                let wanted: Vec<String> = if metrics.iter().any(|m| m == "ALL") {
                    SHARD_LEVEL_METRICS.iter().map(|m| m.to_string()).collect()
                } else {
                    metrics
                };
                if let Some(bad) = wanted.iter().find(|m| !SHARD_LEVEL_METRICS.contains(&m.as_str())) {
                    return Err(ShoalError::invalid_argument(format!("Unknown shard-level metric {bad}.")));
                }
                let stream = self.stream_mut(&name)?;
                for metric in wanted {
                    if enable {
                        stream.settings.shard_level_metrics.insert(metric);
                    } else {
                        stream.settings.shard_level_metrics.remove(&metric);
                    }
                }
                Ok(MetaResponse::Stream(stream.clone()))
            }
            MetaCommand::SetMaxRecordSize { name, kib } => {
                if !(1024..=10240).contains(&kib) {
                    return Err(ShoalError::new(
                        shoal_types::ErrorCode::Validation,
                        format!("MaxRecordSizeInKiB {kib} is invalid: it must be between 1024 and 10240."),
                    ));
                }
                let stream = self.stream_mut(&name)?;
                stream.settings.max_record_size_kib = kib;
                Ok(MetaResponse::Stream(stream.clone()))
            }
            MetaCommand::RegisterConsumer { stream, consumer, now_millis } => {
                validate_consumer_name(&consumer)?;
                let entry = self.stream_mut(&stream)?;
                if entry.consumers.iter().any(|c| c.name == consumer) {
                    return Err(ShoalError::in_use(format!("Consumer {consumer} of stream {stream} already exists.")));
                }
                if entry.consumers.len() >= MAX_CONSUMERS_PER_STREAM {
                    return Err(ShoalError::new(
                        shoal_types::ErrorCode::LimitExceeded,
                        format!("Stream {stream} already has {MAX_CONSUMERS_PER_STREAM} consumers."),
                    ));
                }
                let registered = shoal_types::Consumer { name: consumer, created_millis: now_millis };
                entry.consumers.push(registered.clone());
                Ok(MetaResponse::Consumer(registered))
            }
            MetaCommand::DeregisterConsumer { stream, consumer } => {
                let entry = self.stream_mut(&stream)?;
                let before = entry.consumers.len();
                entry.consumers.retain(|c| c.name != consumer);
                if entry.consumers.len() == before {
                    return Err(ShoalError::not_found(format!("Consumer {consumer} of stream {stream} not found.")));
                }
                Ok(MetaResponse::Done)
            }
            MetaCommand::SetResourcePolicy { arn, policy } => {
                match policy {
                    Some(policy) => {
                        self.resource_policies.insert(arn, policy);
                    }
                    None => {
                        self.resource_policies.remove(&arn);
                    }
                }
                Ok(MetaResponse::Done)
            }
            MetaCommand::SetAccountSettings { settings } => {
                self.account_settings = Some(settings);
                Ok(MetaResponse::Done)
            }
            MetaCommand::SetStreamMode { name, mode } => {
                if mode != "PROVISIONED" && mode != "ON_DEMAND" {
                    return Err(ShoalError::new(
                        shoal_types::ErrorCode::Validation,
                        format!("StreamMode {mode} is invalid: it must be PROVISIONED or ON_DEMAND."),
                    ));
                }
                let stream = self.stream_mut(&name)?;
                stream.settings.mode = mode;
                Ok(MetaResponse::Stream(stream.clone()))
            }
            MetaCommand::SplitShard { stream, shard_index, new_starting_hash_key, sealed_end, now_millis } => {
                let key = HashKey::parse_explicit(&new_starting_hash_key)?;
                let parent = self.open_shard(&stream, shard_index)?.clone();
                check_split_key(&parent, key)?;
                let ranges = [
                    HashKeyRange { start: parent.hash_key_range.start, end: HashKey(key.0 - 1) },
                    HashKeyRange { start: key, end: parent.hash_key_range.end },
                ];
                let children = self.new_shards(&stream, &ranges, parent.id, None, nodes)?;
                self.close_and_open(&stream, &[(parent.id, sealed_end)], children, now_millis)
            }
            MetaCommand::MergeShards { stream, shard_index, adjacent_index, sealed_ends, now_millis } => {
                let shard = self.open_shard(&stream, shard_index)?.clone();
                let adjacent = self.open_shard(&stream, adjacent_index)?.clone();
                check_adjacent(&shard, &adjacent)?;
                let range = HashKeyRange {
                    start: shard.hash_key_range.start.min(adjacent.hash_key_range.start),
                    end: shard.hash_key_range.end.max(adjacent.hash_key_range.end),
                };
                let children = self.new_shards(&stream, &[range], shard.id, Some(adjacent.id), nodes)?;
                let closing = [(shard.id, sealed_ends.0), (adjacent.id, sealed_ends.1)];
                self.close_and_open(&stream, &closing, children, now_millis)
            }
            MetaCommand::DropExpiredShards { stream, closed_before_millis } => {
                let entry = self.stream_mut(&stream)?;
                entry.shards.retain(|shard| !shard.is_expired(closed_before_millis));
                Ok(MetaResponse::Stream(entry.clone()))
            }
            MetaCommand::MoveReplica { stream, shard_index, from, to } => {
                if !nodes.contains_key(&to) {
                    return Err(ShoalError::invalid_argument(format!(
                        "Node {to} is not a cluster member that accepts replicas."
                    )));
                }
                // A replica is the group's: every shard the group carries moves.
                for shard in self.group_shards_mut(&stream, shard_index)? {
                    if shard.replicas.contains(&to) || !shard.retiring.is_empty() {
                        // Already moved, or another move of this shard is under way.
                        continue;
                    }
                    let Some(slot) = shard.replicas.iter_mut().find(|id| **id == from) else { continue };
                    *slot = to;
                    shard.retiring.push(from);
                }
                Ok(MetaResponse::Done)
            }
            MetaCommand::PreferLeader { stream, shard_index, node } => {
                for shard in self.group_shards_mut(&stream, shard_index)? {
                    if let Some(at) = shard.replicas.iter().position(|id| *id == node) {
                        shard.replicas[..=at].rotate_right(1);
                    }
                }
                Ok(MetaResponse::Done)
            }
            MetaCommand::ReplicaRetired { stream, shard_index, node } => {
                for shard in self.group_shards_mut(&stream, shard_index).unwrap_or_default() {
                    shard.retiring.retain(|id| *id != node);
                }
                Ok(MetaResponse::Done)
            }
            MetaCommand::Group { stream, application, now_millis, command } => {
                validate_application(&application)?;
                let entry = self.stream(&stream)?.clone();
                let key = group_key(&stream, &application);
                let mut group = match self.consumer_groups.get(&key) {
                    Some(group) => group.clone(),
                    None if matches!(command, GroupCommand::Join { .. }) => {
                        ConsumerGroup::new(&stream, &application, DEFAULT_LEASE_TIMEOUT_MILLIS)
                    }
                    None => {
                        return Err(ShoalError::not_found(format!(
                            "Consumer group {application} on stream {stream} does not exist."
                        )));
                    }
                };
                group.apply(command, &entry, now_millis)?;
                self.consumer_groups.insert(key, group.clone());
                Ok(MetaResponse::Group(group))
            }
            MetaCommand::DeliveryStream { name, now_millis, command } => {
                let created_direct_put =
                    matches!(&command, DeliveryStreamCommand::Create { kind, .. } if kind == "DirectPut");
                let deleted = matches!(command, DeliveryStreamCommand::Delete);
                if created_direct_put && self.streams.contains_key(&direct_put_stream(&name)) {
                    return Err(ShoalError::in_use(format!("Firehose {name} already exists.")));
                }
                if let DeliveryStreamCommand::Create { kind, source_stream: Some(source), .. } = &command
                    && kind == "KinesisStreamAsSource"
                {
                    self.stream(source)?;
                }
                let response = crate::delivery_stream::apply(&mut self.delivery_streams, &name, command, now_millis)?;
                // A DirectPut delivery stream's records live in its own stream,
                // created and removed in the same entry as the delivery stream.
                if created_direct_put {
                    let create = MetaCommand::CreateStream {
                        name: direct_put_stream(&name),
                        shard_count: DIRECT_PUT_SHARDS,
                        retention_hours: DIRECT_PUT_RETENTION_HOURS,
                        now_millis,
                    };
                    if let Err(error) = self.try_apply(create, nodes) {
                        self.delivery_streams.remove(&name);
                        return Err(error);
                    }
                }
                if deleted && let Some(stream) = self.streams.get_mut(&direct_put_stream(&name)).map(Arc::make_mut) {
                    stream.status = StreamStatus::Deleting;
                }
                Ok(MetaResponse::DeliveryStream(response))
            }
            MetaCommand::DrainNode { node } => {
                self.draining.insert(node);
                Ok(MetaResponse::Done)
            }
            MetaCommand::UndrainNode { node } => {
                self.draining.remove(&node);
                Ok(MetaResponse::Done)
            }
            MetaCommand::SetWarmThroughput { name, mibps } => {
                let stream = self.stream_mut(&name)?;
                stream.settings.warm_throughput_mibps = Some(mibps);
                Ok(MetaResponse::Stream(stream.clone()))
            }
        }
    }

    fn stream_mut(&mut self, name: &str) -> Result<&mut Stream, ShoalError> {
        self.streams.get_mut(name).map(Arc::make_mut).ok_or_else(|| ShoalError::stream_not_found(name))
    }

    /// The shard and every other shard of its Raft group (they share replicas,
    /// leader and readiness).
    fn group_shards_mut(&mut self, stream: &str, shard_index: u32) -> Result<Vec<&mut Shard>, ShoalError> {
        let entry = self.stream_mut(stream)?;
        let group =
            entry.shards.iter().find(|s| s.id == ShardId(shard_index)).map(|s| s.group_id).ok_or_else(|| {
                ShoalError::not_found(format!("Shard {} in stream {stream} does not exist", ShardId(shard_index)))
            })?;
        Ok(entry.shards.iter_mut().filter(|s| s.group_id == group).collect())
    }

    /// Creates a stream whose shards are spread evenly over `group_count` Raft
    /// groups (1 to one per shard, else refused), neighbouring hash-key ranges
    /// together; as many groups as shards gives each shard its own.
    fn create_stream(
        &mut self,
        name: String,
        shard_count: u32,
        retention_hours: u32,
        now_millis: u64,
        group_count: usize,
        nodes: &BTreeMap<NodeId, NodeInfo>,
    ) -> Result<MetaResponse, ShoalError> {
        validate_stream_name(&name)?;
        validate_shard_count(shard_count)?;
        validate_retention_hours(retention_hours)?;
        if self.streams.contains_key(&name) {
            return Err(ShoalError::in_use(format!(
                "Stream {name} under account {} already exists.",
                shoal_types::limits::DEFAULT_ACCOUNT_ID
            )));
        }
        let shard_count = shard_count as usize;
        if group_count == 0 || group_count > shard_count {
            return Err(ShoalError::invalid_argument(format!(
                "A stream of {shard_count} shards cannot be spread over {group_count} Raft groups."
            )));
        }
        let placements = place_shards(nodes, &self.leader_load(), group_count)?;
        let first_group = self.next_group_id.max(META_GROUP_ID + 1);
        let packed = group_count < shard_count;
        // Packed shards take ids of their own after the groups' (never reused either).
        self.next_group_id = first_group + group_count as u64 + if packed { shard_count as u64 } else { 0 };
        let shards: Vec<Shard> = HashKeyRange::split_evenly(shard_count as u32)
            .into_iter()
            .enumerate()
            .map(|(index, range)| {
                // Neighbouring hash-key ranges share a group.
                let group = index * group_count / shard_count;
                let replicas = placements[group].clone();
                let mut shard = Shard::new(ShardId(index as u32), first_group + group as u64, range, replicas);
                if packed {
                    shard.store_id = Some(first_group + (group_count + index) as u64);
                }
                shard
            })
            .collect();
        let stream = Stream::new(&name, now_millis, retention_hours, shards);
        self.streams.insert(name, Arc::new(stream.clone()));
        Ok(MetaResponse::Stream(stream))
    }

    /// How many group replicas (retiring ones included) each node holds.
    pub fn replica_load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for (_, shard) in self.distinct_groups() {
            for id in shard.holders() {
                *load.entry(id).or_insert(0) += 1;
            }
        }
        load
    }

    /// An open shard of an ACTIVE or UPDATING stream, as resharding needs it.
    pub fn open_shard(&self, stream: &str, shard_index: u32) -> Result<&Shard, ShoalError> {
        let entry = self.stream(stream)?;
        if entry.status == StreamStatus::Deleting || entry.status == StreamStatus::Creating {
            return Err(ShoalError::in_use(format!(
                "Stream {stream} is {}; it cannot be resharded now.",
                entry.status.as_str()
            )));
        }
        let id = ShardId(shard_index);
        let account = shoal_types::limits::DEFAULT_ACCOUNT_ID;
        let shard = entry.shard(id).ok_or_else(|| {
            ShoalError::not_found(format!("Shard {id} in stream {stream} under account {account} does not exist"))
        })?;
        if !shard.is_open() {
            return Err(ShoalError::invalid_argument(format!(
                "Shard {id} in stream {stream} under account {account} has already been merged or split, and thus is not eligible for merging or splitting."
            )));
        }
        Ok(shard)
    }

    /// New shards (fresh indexes and groups, placed like any new shard) with `ranges`.
    fn new_shards(
        &mut self,
        stream: &str,
        ranges: &[HashKeyRange],
        parent: ShardId,
        adjacent_parent: Option<ShardId>,
        nodes: &BTreeMap<NodeId, NodeInfo>,
    ) -> Result<Vec<Shard>, ShoalError> {
        let placements = place_shards(nodes, &self.leader_load(), ranges.len())?;
        // Expired shards leave the list, so the next index is one past the highest.
        let first_index = self.stream(stream)?.shards.iter().map(|s| s.id.0 + 1).max().unwrap_or(0);
        let first_group = self.next_group_id.max(META_GROUP_ID + 1);
        self.next_group_id = first_group + ranges.len() as u64;
        Ok(ranges
            .iter()
            .zip(placements)
            .enumerate()
            .map(|(i, (range, replicas))| Shard {
                parent: Some(parent),
                adjacent_parent,
                ..Shard::new(ShardId(first_index + i as u32), first_group + i as u64, *range, replicas)
            })
            .collect())
    }

    /// Closes `closing` shards at their seal positions and adds `children`; the
    /// stream is UPDATING until the children's groups have leaders.
    fn close_and_open(
        &mut self,
        stream: &str,
        closing: &[(ShardId, RecordPosition)],
        children: Vec<Shard>,
        now_millis: u64,
    ) -> Result<MetaResponse, ShoalError> {
        let entry = self.stream_mut(stream)?;
        for (id, end) in closing {
            if let Some(shard) = entry.shards.iter_mut().find(|s| s.id == *id) {
                shard.closed_at = Some(*end);
                shard.closed_millis = Some(now_millis);
            }
        }
        entry.shards.extend(children);
        entry.status = StreamStatus::Updating;
        Ok(MetaResponse::Stream(entry.clone()))
    }
}

/// How many Raft groups carry a new stream's `shards` when up to `per_group`
/// share one: as few as that allows (0 and 1 give each shard its own group).
///
/// A stream is not split further to give every node some of its leaders: on
/// one machine that cost 60% more CPU per record and twice the publish latency
/// at 40,000 records/s (docs/performance.md, twenty-second session), because
/// each call then becomes a part and a Raft entry per leader, and waits for
/// the slowest. Leaders spread over the nodes across groups and streams.
pub fn stream_group_count(shards: u32, per_group: u32) -> u32 {
    shards.div_ceil(per_group.max(1))
}

/// The group count of a [`MetaCommand::CreatePackedStream`], which streams were
/// created with until the twenty-second session: as [`stream_group_count`], but
/// at least one group per node (and never more than one per shard). Kept so
/// that a log holding such a command replays to the layout it made.
pub fn packed_group_count(shards: usize, per_group: usize, nodes: usize) -> usize {
    if per_group <= 1 {
        return shards;
    }
    shards.div_ceil(per_group).max(nodes).min(shards)
}

/// Kinesis: the new starting hash key must lie strictly inside the parent's range.
pub fn check_split_key(parent: &Shard, key: HashKey) -> Result<(), ShoalError> {
    let (start, end) = (parent.hash_key_range.start.0, parent.hash_key_range.end.0);
    if key.0 <= start.saturating_add(1) || key.0 >= end {
        return Err(ShoalError::invalid_argument(format!(
            "NewStartingHashKey {} used in SplitShard() on shard {} is not both greater than one plus the shard's StartingHashKey {start} and less than the shard's EndingHashKey {end}.",
            key.0, parent.id
        )));
    }
    Ok(())
}

/// Two shards can merge only if their hash-key ranges touch.
pub fn check_adjacent(a: &Shard, b: &Shard) -> Result<(), ShoalError> {
    let touching = a.hash_key_range.end.0.checked_add(1) == Some(b.hash_key_range.start.0)
        || b.hash_key_range.end.0.checked_add(1) == Some(a.hash_key_range.start.0);
    if !touching {
        return Err(ShoalError::invalid_argument(format!(
            "Shards {} and {} are not adjacent: their hash-key ranges do not touch.",
            a.id, b.id
        )));
    }
    Ok(())
}

fn validate_tag(key: &str, value: &str) -> Result<(), ShoalError> {
    if key.is_empty() || key.chars().count() > 128 || value.chars().count() > 256 {
        return Err(ShoalError::invalid_argument(format!(
            "Invalid tag {key:?}: keys are 1 to 128 characters and values at most 256."
        )));
    }
    Ok(())
}

fn validate_consumer_name(name: &str) -> Result<(), ShoalError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        return Err(ShoalError::new(
            shoal_types::ErrorCode::Validation,
            format!(
                "1 validation error detected: Value '{name}' at 'consumerName' failed to satisfy constraint: Member must match pattern [a-zA-Z0-9_.-]+ and have length between 1 and 128"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes() -> BTreeMap<NodeId, NodeInfo> {
        (1..=3).map(|i| (i, NodeInfo { addr: format!("127.0.0.1:{i}"), zone: format!("az-{i}") })).collect()
    }

    fn create(state: &mut MetaState, name: &str, shards: u32) -> MetaResponse {
        state.apply(
            MetaCommand::CreateStream { name: name.into(), shard_count: shards, retention_hours: 24, now_millis: 1000 },
            &nodes(),
        )
    }

    #[test]
    fn create_places_shards_and_hands_out_fresh_groups() {
        let mut state = MetaState::default();
        let MetaResponse::Stream(a) = create(&mut state, "a", 3) else { panic!() };
        let MetaResponse::Stream(b) = create(&mut state, "b", 2) else { panic!() };
        assert_eq!(a.status, StreamStatus::Creating);
        let groups: Vec<_> = a.shards.iter().chain(&b.shards).map(|s| s.group_id).collect();
        assert_eq!(groups, vec![1, 2, 3, 4, 5]);
        assert!(a.shards.iter().all(|s| s.replicas.len() == 3));
        // Three shards on three nodes: each node is the preferred leader once.
        let mut leaders: Vec<_> = a.shards.iter().map(|s| s.replicas[0]).collect();
        leaders.sort();
        assert_eq!(leaders, vec![1, 2, 3]);
    }

    fn create_packed(state: &mut MetaState, name: &str, shards: u32, per_group: u32) -> Stream {
        let command = MetaCommand::CreatePackedStream {
            name: name.into(),
            shard_count: shards,
            retention_hours: 24,
            now_millis: 1000,
            shards_per_group: per_group,
        };
        match state.apply(command, &nodes()) {
            MetaResponse::Stream(stream) => stream,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn packed_shards_share_groups_by_neighbouring_ranges_and_keep_stores_of_their_own() {
        let mut state = MetaState::default();
        let stream = create_packed(&mut state, "p", 16, 8);
        // Sixteen shards, up to eight a group, three nodes: a group per node.
        let groups: BTreeSet<_> = stream.shards.iter().map(|s| s.group_id).collect();
        assert_eq!(groups, BTreeSet::from([1, 2, 3]));
        let per_group: Vec<_> =
            groups.iter().map(|g| stream.shards.iter().filter(|s| s.group_id == *g).count()).collect();
        assert_eq!(per_group, vec![6, 5, 5]);
        // Neighbours share: the group ids never go back down along the ring.
        assert!(stream.shards.windows(2).all(|w| w[0].group_id <= w[1].group_id));
        // Every shard has a store of its own, apart from every group id.
        let stores: BTreeSet<_> = stream.shards.iter().map(|s| s.store()).collect();
        assert_eq!(stores, (4..20).collect());
        assert_eq!(state.next_group_id, 20);
        // A group's shards share its replicas; each node leads one group.
        for group in &groups {
            let mut replicas = stream.shards.iter().filter(|s| s.group_id == *group).map(|s| &s.replicas);
            let first = replicas.next().unwrap();
            assert!(replicas.all(|r| r == first));
        }
        let leaders: BTreeSet<_> = state.distinct_groups().map(|(_, s)| s.replicas[0]).collect();
        assert_eq!(leaders, BTreeSet::from([1, 2, 3]));
        assert_eq!(state.replica_load(), BTreeMap::from([(1, 3), (2, 3), (3, 3)]));

        // Few shards are not packed: each keeps the layout of a group of its own.
        let small = create_packed(&mut state, "s", 3, 8);
        assert!(small.shards.iter().all(|s| s.store_id.is_none()));
        assert_eq!(small.shards.iter().map(|s| s.group_id).collect::<Vec<_>>(), vec![20, 21, 22]);
        assert_eq!(packed_group_count(1000, 16, 3), 63);
        assert_eq!(packed_group_count(4, 8, 3), 3);
        assert_eq!(packed_group_count(5, 1, 3), 5);
    }

    fn create_in_groups(state: &mut MetaState, name: &str, shards: u32, groups: u32) -> MetaResponse {
        let command = MetaCommand::CreateStreamInGroups {
            name: name.into(),
            shard_count: shards,
            retention_hours: 24,
            now_millis: 1000,
            group_count: groups,
        };
        state.apply(command, &nodes())
    }

    #[test]
    fn a_stream_takes_as_few_groups_as_its_shards_need_and_streams_spread_their_leaders() {
        assert_eq!(stream_group_count(16, 16), 1);
        assert_eq!(stream_group_count(16, 8), 2);
        assert_eq!(stream_group_count(17, 16), 2);
        assert_eq!(stream_group_count(1000, 16), 63);
        assert_eq!(stream_group_count(5, 1), 5);
        assert_eq!(stream_group_count(5, 0), 5, "0 is taken as 1");

        let mut state = MetaState::default();
        // Sixteen shards in one group: fewer groups than nodes, all packed.
        let MetaResponse::Stream(first) = create_in_groups(&mut state, "a", 16, 1) else { panic!() };
        assert!(first.shards.iter().all(|s| s.group_id == 1));
        let stores: BTreeSet<_> = first.shards.iter().map(|s| s.store()).collect();
        assert_eq!(stores, (2..18).collect(), "every shard keeps a store of its own");
        // Three groups of 2, 2 and 1 shards, neighbours together.
        let MetaResponse::Stream(second) = create_in_groups(&mut state, "b", 5, 3) else { panic!() };
        let groups: Vec<u64> = second.shards.iter().map(|s| s.group_id).collect();
        assert_eq!(groups, vec![18, 18, 19, 19, 20]);
        // The next stream's group is led by a node that leads nothing yet.
        let MetaResponse::Stream(third) = create_in_groups(&mut state, "c", 1, 1) else { panic!() };
        let leaders: BTreeSet<_> = state.distinct_groups().map(|(_, s)| s.replicas[0]).collect();
        assert_eq!(leaders, BTreeSet::from([1, 2, 3]), "five groups lead from all three nodes");
        assert!(third.shards[0].store_id.is_none(), "a group of one shard is not packed");

        // A count the shards cannot fill is refused, and nothing is created.
        let before = state.clone();
        for groups in [0, 3] {
            let MetaResponse::Error(e) = create_in_groups(&mut state, "bad", 2, groups) else { panic!() };
            assert_eq!(e.code, shoal_types::ErrorCode::InvalidArgument);
        }
        assert_eq!(state, before);
    }

    #[test]
    fn readiness_moves_and_leadership_are_the_whole_groups() {
        let mut state = MetaState::default();
        let stream = create_packed(&mut state, "p", 6, 8);
        let group_of = |index: u32| stream.shards[index as usize].group_id;
        let siblings: Vec<u32> = (0..6).filter(|i| group_of(*i) == group_of(0)).collect();
        assert_eq!(siblings, vec![0, 1]);
        state.apply(MetaCommand::MarkShardReady { stream: "p".into(), created_millis: 1000, shard_index: 0 }, &nodes());
        let shards = &state.streams["p"].shards;
        assert!(shards[0].ready && shards[1].ready && !shards[2].ready);

        let mut four = nodes();
        four.insert(4, NodeInfo { addr: "127.0.0.1:4".into(), zone: "az-4".into() });
        let from = shards[1].replicas[1];
        state.apply(MetaCommand::MoveReplica { stream: "p".into(), shard_index: 1, from, to: 4 }, &four);
        let shards = &state.streams["p"].shards;
        assert_eq!(shards[0].replicas, shards[1].replicas, "the move is the group's");
        assert!(shards[0].replicas.contains(&4) && shards[0].retiring == vec![from]);
        assert!(!shards[2].replicas.contains(&4));
        state.apply(MetaCommand::ReplicaRetired { stream: "p".into(), shard_index: 0, node: from }, &four);
        assert!(state.streams["p"].shards[1].retiring.is_empty());

        let other = state.streams["p"].shards[0].replicas[2];
        state.apply(MetaCommand::PreferLeader { stream: "p".into(), shard_index: 0, node: other }, &four);
        let shards = &state.streams["p"].shards;
        assert_eq!(shards[0].replicas[0], other);
        assert_eq!(shards[0].replicas, shards[1].replicas);
    }

    #[test]
    fn duplicate_and_invalid_creates_fail_without_changing_state() {
        let mut state = MetaState::default();
        create(&mut state, "a", 1);
        let before = state.clone();
        let MetaResponse::Error(e) = create(&mut state, "a", 1) else { panic!() };
        assert_eq!(e.code, shoal_types::ErrorCode::ResourceInUse);
        let MetaResponse::Error(e) = create(&mut state, "bad name", 1) else { panic!() };
        assert_eq!(e.code, shoal_types::ErrorCode::Validation);
        let MetaResponse::Error(e) = create(&mut state, "zero", 0) else { panic!() };
        assert_eq!(e.code, shoal_types::ErrorCode::InvalidArgument);
        assert_eq!(state, before);
    }

    #[test]
    fn stream_turns_active_when_every_shard_is_ready_and_deletes_in_two_steps() {
        let mut state = MetaState::default();
        create(&mut state, "a", 2);
        for shard_index in 0..2 {
            assert_eq!(state.streams["a"].status, StreamStatus::Creating);
            state
                .apply(MetaCommand::MarkShardReady { stream: "a".into(), created_millis: 1000, shard_index }, &nodes());
        }
        assert_eq!(state.streams["a"].status, StreamStatus::Active);
        state.apply(MetaCommand::MarkStreamDeleting { name: "a".into() }, &nodes());
        assert_eq!(state.streams["a"].status, StreamStatus::Deleting);
        // A stale removal (other incarnation) is ignored.
        state.apply(MetaCommand::RemoveStream { name: "a".into(), created_millis: 1 }, &nodes());
        assert!(state.streams.contains_key("a"));
        state.apply(MetaCommand::RemoveStream { name: "a".into(), created_millis: 1000 }, &nodes());
        assert!(state.streams.is_empty());
    }

    #[test]
    fn retention_moves_only_in_the_direction_asked() {
        let mut state = MetaState::default();
        create(&mut state, "a", 1);
        let up = |hours, increase| MetaCommand::UpdateRetention { name: "a".into(), hours, increase };
        assert!(matches!(state.apply(up(48, true), &nodes()), MetaResponse::Stream(_)));
        let MetaResponse::Error(e) = state.apply(up(30, true), &nodes()) else { panic!() };
        assert!(e.message.contains("DecreaseRetentionPeriod"));
        let MetaResponse::Error(e) = state.apply(up(20, false), &nodes()) else { panic!() };
        assert!(e.message.contains("too short"));
        assert!(matches!(state.apply(up(24, false), &nodes()), MetaResponse::Stream(_)));
        assert_eq!(state.streams["a"].retention_hours, 24);
    }

    #[test]
    fn tags_and_consumers_are_bounded() {
        let mut state = MetaState::default();
        create(&mut state, "a", 1);
        let tags = (0..51).map(|i| (format!("k{i}"), "v".to_string())).collect();
        let MetaResponse::Error(e) = state.apply(MetaCommand::AddTags { name: "a".into(), tags }, &nodes()) else {
            panic!()
        };
        assert_eq!(e.code, shoal_types::ErrorCode::LimitExceeded);
        assert!(state.streams["a"].settings.tags.is_empty(), "a refused change changes nothing");
        let register =
            |c: &str| MetaCommand::RegisterConsumer { stream: "a".into(), consumer: c.into(), now_millis: 5000 };
        assert!(matches!(state.apply(register("c1"), &nodes()), MetaResponse::Consumer(_)));
        let MetaResponse::Error(e) = state.apply(register("c1"), &nodes()) else { panic!() };
        assert_eq!(e.code, shoal_types::ErrorCode::ResourceInUse);
        let deregister = MetaCommand::DeregisterConsumer { stream: "a".into(), consumer: "c1".into() };
        assert_eq!(state.apply(deregister.clone(), &nodes()), MetaResponse::Done);
        assert!(matches!(state.apply(deregister, &nodes()), MetaResponse::Error(_)));
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn responses_survive_bincode() {
        let mut state = MetaState::default();
        let nodes: BTreeMap<NodeId, NodeInfo> =
            (1..=3).map(|i| (i, NodeInfo { addr: format!("a{i}"), zone: format!("z{i}") })).collect();
        let response = state.apply(
            MetaCommand::CreateStream { name: "s".into(), shard_count: 2, retention_hours: 24, now_millis: 1 },
            &nodes,
        );
        let bytes = bincode::serialize(&response).unwrap();
        let back: MetaResponse = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, response);
    }
}
