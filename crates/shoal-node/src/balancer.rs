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

/// A shard whose preferred leader should change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderChange {
    pub stream: String,
    pub shard_index: u32,
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
        let members = node.cluster_nodes();
        let moves = plan_moves(&meta, &members);
        if moves.is_empty()
            && let Some(change) = plan_leader_change(&meta, &members)
        {
            let command = MetaCommand::PreferLeader {
                stream: change.stream.clone(),
                shard_index: change.shard_index,
                node: change.to,
            };
            match meta_writer::propose(&node, command).await {
                Ok(_) => {
                    tracing::info!(stream = %change.stream, shard = change.shard_index, to = change.to, "preferred leader moved")
                }
                Err(error) => tracing::warn!(%error, "cannot move a preferred leader"),
            }
        }
        for planned in moves {
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
    // One shard per group: shards that share a group move together.
    let mut seen = BTreeSet::new();
    let movable: Vec<(&str, &Shard)> = meta
        .streams
        .values()
        .filter(|s| settled(s.status))
        .flat_map(|s| s.shards.iter().map(move |shard| (s.name.as_str(), shard)))
        .filter(|(_, shard)| shard.ready && seen.insert(shard.group_id))
        .collect();
    let in_flight = meta.distinct_groups().filter(|(_, shard)| !shard.retiring.is_empty()).count();
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

/// One preferred-leader change that evens out leadership: from the node that is
/// preferred for the most shards to one that is preferred for the fewest (and
/// holds a replica of such a shard), when they differ by two or more. Only when
/// no replica is moving.
pub fn plan_leader_change(meta: &MetaState, members: &BTreeMap<NodeId, NodeInfo>) -> Option<LeaderChange> {
    if meta.shard_groups().any(|(_, shard)| !shard.retiring.is_empty()) {
        return None;
    }
    let accepts = |id: &NodeId| members.contains_key(id) && !meta.draining.contains(id);
    let mut leads: BTreeMap<NodeId, usize> = members.keys().filter(|id| accepts(id)).map(|id| (*id, 0)).collect();
    // One shard per group: a group has one leader however many shards it carries.
    let mut seen = BTreeSet::new();
    let shards: Vec<(&str, &Shard)> = meta
        .streams
        .values()
        .filter(|s| matches!(s.status, StreamStatus::Active | StreamStatus::Updating))
        .flat_map(|s| {
            s.shards.iter().filter(|shard| shard.ready && shard.is_open()).map(move |shard| (s.name.as_str(), shard))
        })
        .filter(|(_, shard)| seen.insert(shard.group_id))
        .collect();
    for (_, shard) in &shards {
        if let Some(count) = shard.replicas.first().and_then(|id| leads.get_mut(id)) {
            *count += 1;
        }
    }
    let mut candidates: Vec<(NodeId, usize)> = leads.iter().map(|(id, n)| (*id, *n)).collect();
    candidates.sort_by_key(|(id, n)| (*n, *id));
    for (emptiest, fewest) in candidates {
        // Among the shards it holds, the one whose preferred leader leads the most.
        let best = shards
            .iter()
            .filter(|(_, s)| s.replicas.contains(&emptiest) && s.replicas.first() != Some(&emptiest))
            .filter_map(|(stream, s)| {
                let leading = *leads.get(s.replicas.first()?)?;
                (leading >= fewest + 2).then_some((leading, *stream, *s))
            })
            .max_by_key(|(leading, _, s)| (*leading, std::cmp::Reverse(s.id)));
        if let Some((_, stream, shard)) = best {
            return Some(LeaderChange { stream: stream.to_string(), shard_index: shard.id.0, to: emptiest });
        }
    }
    None
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
                ready: true,
                ..Shard::new(ShardId(i as u32), i as u64 + 1, HashKeyRange::split_evenly(1)[0], replicas)
            })
            .collect();
        let stream = Stream { status: StreamStatus::Active, ..Stream::new("s", 1, 24, shards) };
        MetaState { streams: BTreeMap::from([("s".to_string(), Arc::new(stream))]), ..Default::default() }
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
    fn leadership_spreads_to_a_node_that_leads_nothing() {
        let members = members(&[(1, "a"), (2, "b"), (3, "c"), (4, "a")]);
        let meta =
            meta_with(vec![vec![1, 2, 3], vec![1, 2, 3], vec![2, 3, 1], vec![2, 3, 4], vec![3, 1, 2], vec![3, 4, 2]]);
        // 1, 2 and 3 lead two shards each; 4 leads none but holds replicas of shards 3 and 5.
        let change = plan_leader_change(&meta, &members).expect("a change");
        assert_eq!(change.to, 4);
        assert!([3, 5].contains(&change.shard_index), "{change:?}");
        let balanced = meta_with(vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2], vec![4, 2, 3]]);
        assert_eq!(plan_leader_change(&balanced, &members), None);
    }

    #[test]
    fn moves_wait_for_the_previous_ones() {
        let members = members(&[(1, "a"), (2, "b"), (3, "c"), (4, "c")]);
        let mut meta = meta_with(vec![vec![1, 2, 3]; 10]);
        meta.draining.insert(3);
        assert_eq!(plan_moves(&meta, &members).len(), MAX_MOVES_IN_FLIGHT);
    }
}
