//! The metadata group's state: streams, their shards and where those live.
//!
//! Applying a [`MetaCommand`] is a pure function of the state, the command and the
//! current membership (the nodes to place shards on), so every replica reaches the
//! same state and the same placement.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_types::placement::place_shards;
use shoal_types::stream::META_GROUP_ID;
use shoal_types::validation::{validate_retention_hours, validate_shard_count, validate_stream_name};
use shoal_types::{GroupId, HashKeyRange, NodeId, NodeInfo, Shard, ShardId, ShoalError, Stream, StreamStatus};

use crate::command::{MetaCommand, MetaResponse};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaState {
    pub streams: BTreeMap<String, Stream>,
    /// The next shard group id to hand out; ids are never reused.
    pub next_group_id: GroupId,
}

impl MetaState {
    pub fn stream(&self, name: &str) -> Result<&Stream, ShoalError> {
        self.streams.get(name).ok_or_else(|| ShoalError::stream_not_found(name))
    }

    /// Every shard group that should exist, with its replicas.
    pub fn shard_groups(&self) -> impl Iterator<Item = (&Stream, &Shard)> {
        self.streams.values().flat_map(|stream| stream.shards.iter().map(move |shard| (stream, shard)))
    }

    /// How many shards each node is the preferred leader of.
    fn leader_load(&self) -> BTreeMap<NodeId, usize> {
        let mut load = BTreeMap::new();
        for (_, shard) in self.shard_groups() {
            if let Some(leader) = shard.replicas.first() {
                *load.entry(*leader).or_insert(0) += 1;
            }
        }
        load
    }

    pub fn apply(&mut self, command: MetaCommand, nodes: &BTreeMap<NodeId, NodeInfo>) -> MetaResponse {
        match self.try_apply(command, nodes) {
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
                validate_stream_name(&name)?;
                validate_shard_count(shard_count)?;
                validate_retention_hours(retention_hours)?;
                if self.streams.contains_key(&name) {
                    return Err(ShoalError::in_use(format!(
                        "Stream {name} under account {} already exists.",
                        shoal_types::limits::DEFAULT_ACCOUNT_ID
                    )));
                }
                let placements = place_shards(nodes, &self.leader_load(), shard_count as usize)?;
                let first_group = self.next_group_id.max(META_GROUP_ID + 1);
                let shards: Vec<Shard> = HashKeyRange::split_evenly(shard_count)
                    .into_iter()
                    .zip(placements)
                    .enumerate()
                    .map(|(index, (range, replicas))| Shard {
                        id: ShardId(index as u32),
                        group_id: first_group + index as u64,
                        hash_key_range: range,
                        parent: None,
                        adjacent_parent: None,
                        replicas,
                        ready: false,
                        closed_at: None,
                    })
                    .collect();
                self.next_group_id = first_group + shards.len() as u64;
                let stream = Stream {
                    name: name.clone(),
                    status: StreamStatus::Creating,
                    created_millis: now_millis,
                    retention_hours,
                    shards,
                };
                self.streams.insert(name, stream.clone());
                Ok(MetaResponse::Stream(stream))
            }
            MetaCommand::MarkShardReady { stream, created_millis, shard_index } => {
                let Some(entry) = self.streams.get_mut(&stream).filter(|s| s.created_millis == created_millis) else {
                    return Ok(MetaResponse::Done);
                };
                if let Some(shard) = entry.shards.iter_mut().find(|s| s.id == ShardId(shard_index)) {
                    shard.ready = true;
                }
                if entry.status == StreamStatus::Creating && entry.shards.iter().all(|s| s.ready) {
                    entry.status = StreamStatus::Active;
                }
                Ok(MetaResponse::Stream(entry.clone()))
            }
            MetaCommand::MarkStreamDeleting { name } => {
                let stream = self.streams.get_mut(&name).ok_or_else(|| ShoalError::stream_not_found(&name))?;
                stream.status = StreamStatus::Deleting;
                Ok(MetaResponse::Stream(stream.clone()))
            }
            MetaCommand::RemoveStream { name, created_millis } => {
                if self.streams.get(&name).is_some_and(|s| s.created_millis == created_millis) {
                    self.streams.remove(&name);
                }
                Ok(MetaResponse::Done)
            }
        }
    }
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
}
