//! Keeps replicas where they should be (runs on the metadata leader).
//!
//! Twice a second the metadata leader looks at every shard and proposes
//! [`MetaCommand::MoveReplica`] for replicas that must move: first those on nodes
//! being drained or no longer in the cluster, then — when nothing needs
//! evacuating — one replica per zone from the fullest node to the emptiest when
//! they differ by two or more (a node that just joined fills up this way). A
//! shard moves one replica at a time and at most [`MAX_MOVES_IN_FLIGHT`] shards
//! move at once; the shard's group leader carries each move out (see
//! [`reconciler`](crate::reconciler)).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use shoal_raft::{MetaCommand, MetaState};
use shoal_types::{NodeId, NodeInfo, Shard, StreamStatus};
use tokio::sync::watch;

use crate::meta_writer;
use crate::node::Node;

const TICK: Duration = Duration::from_millis(500);
/// Shards whose replicas move at the same time, cluster-wide.
pub const MAX_MOVES_IN_FLIGHT: usize = 4;

/// One replica to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub stream: String,
    pub shard_index: u32,
    pub from: NodeId,
    pub to: NodeId,
}

pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        if !node.meta.is_leader() {
            continue;
        }
        let meta = node.meta_snapshot();
        for planned in plan_moves(&meta, &node.cluster_nodes()) {
            let command = MetaCommand::MoveReplica {
                stream: planned.stream.clone(),
                shard_index: planned.shard_index,
                from: planned.from,
                to: planned.to,
            };
            match meta_writer::propose(&node, command).await {
                Ok(_) => tracing::info!(
                    stream = %planned.stream, shard = planned.shard_index, from = planned.from, to = planned.to,
                    "moving a replica"
                ),
                Err(error) => tracing::warn!(%error, "cannot move a replica"),
            }
        }
    }
}

/// The moves to start now. Pure, so it is tested without a cluster.
pub fn plan_moves(meta: &MetaState, members: &BTreeMap<NodeId, NodeInfo>) -> Vec<Move> {
    let settled = |status: StreamStatus| matches!(status, StreamStatus::Active | StreamStatus::Updating);
    let movable: Vec<(&str, &Shard)> = meta
        .streams
        .values()
        .filter(|s| settled(s.status))
        .flat_map(|s| s.shards.iter().map(move |shard| (s.name.as_str(), shard)))
        .filter(|(_, shard)| shard.ready)
        .collect();
    let in_flight = meta.shard_groups().filter(|(_, shard)| !shard.retiring.is_empty()).count();
    let mut budget = MAX_MOVES_IN_FLIGHT.saturating_sub(in_flight);
    let mut load = meta.replica_load();
    let accepts = |id: &NodeId| members.contains_key(id) && !meta.draining.contains(id);
    let mut moves = Vec::new();

    // Evacuate drained and departed nodes.
    for (stream, shard) in &movable {
        if budget == 0 {
            return moves;
        }
        if !shard.retiring.is_empty() {
            continue;
        }
        let Some(from) = shard.replicas.iter().copied().find(|id| !accepts(id)) else { continue };
        let Some(to) = replacement(shard, from, members, &meta.draining, &load) else {
            continue;
        };
        *load.entry(to).or_default() += 1;
        moves.push(Move { stream: stream.to_string(), shard_index: shard.id.0, from, to });
        budget -= 1;
    }
    if !moves.is_empty() || in_flight > 0 {
        return moves;
    }

    // Even out each zone: fullest node to emptiest, when they differ by two or more.
    let mut zones: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    for (id, info) in members.iter().filter(|(id, _)| accepts(id)) {
        zones.entry(info.zone.as_str()).or_default().push(*id);
    }
    for nodes in zones.values() {
        if budget == 0 {
            break;
        }
        let held = |id: &NodeId| load.get(id).copied().unwrap_or(0);
        let (Some(fullest), Some(emptiest)) =
            (nodes.iter().max_by_key(|id| (held(id), **id)), nodes.iter().min_by_key(|id| (held(id), **id)))
        else {
            continue;
        };
        if held(fullest) < held(emptiest) + 2 {
            continue;
        }
        let candidate = movable.iter().find(|(_, shard)| {
            shard.retiring.is_empty() && shard.replicas.contains(fullest) && !shard.replicas.contains(emptiest)
        });
        if let Some((stream, shard)) = candidate {
            moves.push(Move { stream: stream.to_string(), shard_index: shard.id.0, from: *fullest, to: *emptiest });
            budget -= 1;
        }
    }
    moves
}

/// Where a replica leaving `from` goes: a node that accepts replicas and holds
/// none of this shard, preferably in `from`'s zone (so the shard keeps its zones),
/// else in a zone the shard lacks, else anywhere; the least loaded first.
fn replacement(
    shard: &Shard,
    from: NodeId,
    members: &BTreeMap<NodeId, NodeInfo>,
    draining: &BTreeSet<NodeId>,
    load: &BTreeMap<NodeId, usize>,
) -> Option<NodeId> {
    let from_zone = members.get(&from).map(|info| info.zone.as_str());
    let kept_zones: BTreeSet<&str> = shard
        .replicas
        .iter()
        .filter(|id| **id != from)
        .filter_map(|id| members.get(id).map(|info| info.zone.as_str()))
        .collect();
    members
        .iter()
        .filter(|(id, _)| !draining.contains(id) && !shard.holders().any(|h| h == **id))
        .min_by_key(|(id, info)| {
            let rank = if Some(info.zone.as_str()) == from_zone {
                0
            } else if !kept_zones.contains(info.zone.as_str()) {
                1
            } else {
                2
            };
            (rank, load.get(id).copied().unwrap_or(0), **id)
        })
        .map(|(id, _)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_types::{HashKeyRange, ShardId, Stream};

    fn members(zones: &[(NodeId, &str)]) -> BTreeMap<NodeId, NodeInfo> {
        zones.iter().map(|(id, zone)| (*id, NodeInfo { addr: format!("n{id}"), zone: zone.to_string() })).collect()
    }

    fn meta_with(shards: Vec<Vec<NodeId>>) -> MetaState {
        let shards = shards
            .into_iter()
            .enumerate()
            .map(|(i, replicas)| Shard {
                id: ShardId(i as u32),
                group_id: i as u64 + 1,
                hash_key_range: HashKeyRange::split_evenly(1)[0],
                parent: None,
                adjacent_parent: None,
                replicas,
                ready: true,
                closed_at: None,
                closed_millis: None,
                retiring: Vec::new(),
            })
            .collect();
        let stream = Stream {
            name: "s".into(),
            status: StreamStatus::Active,
            created_millis: 1,
            retention_hours: 24,
            shards,
            settings: Default::default(),
            consumers: Vec::new(),
        };
        MetaState { streams: BTreeMap::from([("s".to_string(), stream)]), ..Default::default() }
    }

    #[test]
    fn a_drained_node_is_replaced_within_its_zone() {
        let members = members(&[(1, "a"), (2, "b"), (3, "c"), (4, "c")]);
        let mut meta = meta_with(vec![vec![1, 2, 3], vec![2, 3, 1]]);
        meta.draining.insert(3);
        let moves = plan_moves(&meta, &members);
        assert_eq!(moves.len(), 2);
        assert!(moves.iter().all(|m| m.from == 3 && m.to == 4), "{moves:?}");
    }

    #[test]
    fn a_new_node_takes_half_of_its_zone() {
        let members = members(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")]);
        let meta = meta_with(vec![vec![1, 2, 3]; 6]);
        let moves = plan_moves(&meta, &members);
        assert_eq!(moves, vec![Move { stream: "s".into(), shard_index: 0, from: 1, to: 4 }]);
    }

    #[test]
    fn a_balanced_cluster_moves_nothing() {
        let members = members(&[(1, "a"), (2, "b"), (3, "c")]);
        assert!(plan_moves(&meta_with(vec![vec![1, 2, 3]; 6]), &members).is_empty());
    }

    #[test]
    fn without_a_node_in_the_zone_another_zone_takes_the_replica() {
        let members = members(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")]);
        let mut meta = meta_with(vec![vec![1, 2, 3]]);
        meta.draining.insert(3);
        assert_eq!(plan_moves(&meta, &members), vec![Move { stream: "s".into(), shard_index: 0, from: 3, to: 4 }]);
    }

    #[test]
    fn moves_wait_for_the_previous_ones() {
        let members = members(&[(1, "a"), (2, "b"), (3, "c"), (4, "c")]);
        let mut meta = meta_with(vec![vec![1, 2, 3]; 10]);
        meta.draining.insert(3);
        assert_eq!(plan_moves(&meta, &members).len(), MAX_MOVES_IN_FLIGHT);
    }
}
