//! Placement: which nodes hold a shard's replicas.
//!
//! A pure function, so the metadata state machine computes the same answer on
//! every replica. Each shard gets one replica per distinct zone (up to the
//! replication factor), and the preferred leader (the first replica) rotates so
//! leadership spreads evenly across nodes.

use std::collections::BTreeMap;

use crate::error::{ShoalError, ShoalResult};
use crate::node::{NodeId, NodeInfo};

pub const REPLICATION_FACTOR: usize = 3;

/// Picks replicas for `shard_count` new shards. `load` counts the shards each node
/// already leads, so new leaders go to the least-loaded nodes first.
pub fn place_shards(
    nodes: &BTreeMap<NodeId, NodeInfo>,
    load: &BTreeMap<NodeId, usize>,
    shard_count: usize,
) -> ShoalResult<Vec<Vec<NodeId>>> {
    if nodes.is_empty() {
        return Err(ShoalError::unavailable("the cluster has no nodes to place shards on"));
    }
    let mut by_zone: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
    for (id, info) in nodes {
        by_zone.entry(info.zone.as_str()).or_default().push(*id);
    }
    let replicas_per_shard = by_zone.len().min(REPLICATION_FACTOR);
    let mut leads: BTreeMap<NodeId, usize> = nodes.keys().map(|id| (*id, load.get(id).copied().unwrap_or(0))).collect();
    let mut holds: BTreeMap<NodeId, usize> = leads.clone();
    let mut placements = Vec::with_capacity(shard_count);
    for _ in 0..shard_count {
        // The least-leading node leads; ties go to the lowest id.
        let leader = leads.iter().min_by_key(|(id, n)| (**n, **id)).map(|(id, _)| *id).unwrap_or_default();
        let leader_zone = nodes.get(&leader).map(|n| n.zone.as_str()).unwrap_or_default();
        let mut replicas = vec![leader];
        // One more replica from each other zone, the least-loaded node in it.
        let mut other_zones: Vec<(&str, NodeId, usize)> = by_zone
            .iter()
            .filter(|(zone, _)| **zone != leader_zone)
            .filter_map(|(zone, ids)| {
                ids.iter()
                    .min_by_key(|id| (holds.get(id).copied().unwrap_or(0), **id))
                    .map(|id| (*zone, *id, holds[id]))
            })
            .collect();
        other_zones.sort_by_key(|(_, id, held)| (*held, *id));
        replicas.extend(other_zones.iter().take(replicas_per_shard - 1).map(|(_, id, _)| *id));
        *leads.entry(leader).or_default() += 1;
        for id in &replicas {
            *holds.entry(*id).or_default() += 1;
        }
        placements.push(replicas);
    }
    Ok(placements)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(zones: &[&str]) -> BTreeMap<NodeId, NodeInfo> {
        zones
            .iter()
            .enumerate()
            .map(|(i, z)| (i as u64 + 1, NodeInfo { addr: format!("n{i}"), zone: z.to_string() }))
            .collect()
    }

    #[test]
    fn three_zones_give_three_distinct_zone_replicas() {
        let nodes = nodes(&["az-a", "az-b", "az-c"]);
        let placements = place_shards(&nodes, &BTreeMap::new(), 6).unwrap();
        for replicas in &placements {
            assert_eq!(replicas.len(), 3);
            let zones: std::collections::BTreeSet<_> = replicas.iter().map(|id| &nodes[id].zone).collect();
            assert_eq!(zones.len(), 3);
        }
        // Leaders rotate: each node leads two of six shards.
        let mut leaders = BTreeMap::new();
        for replicas in &placements {
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    }

    #[test]
    fn existing_load_steers_new_leaders() {
        let nodes = nodes(&["az-a", "az-b", "az-c"]);
        let load = BTreeMap::from([(1, 5), (2, 5), (3, 0)]);
        let placements = place_shards(&nodes, &load, 2).unwrap();
        assert_eq!(placements[0][0], 3);
        assert_eq!(placements[1][0], 3);
    }

    #[test]
    fn never_two_replicas_in_one_zone() {
        let nodes = nodes(&["az-a", "az-a", "az-b"]);
        for replicas in place_shards(&nodes, &BTreeMap::new(), 4).unwrap() {
            assert_eq!(replicas.len(), 2);
            assert_ne!(nodes[&replicas[0]].zone, nodes[&replicas[1]].zone);
        }
    }

    #[test]
    fn a_single_node_holds_everything() {
        let nodes = nodes(&["az-a"]);
        assert_eq!(place_shards(&nodes, &BTreeMap::new(), 2).unwrap(), vec![vec![1], vec![1]]);
    }
}
