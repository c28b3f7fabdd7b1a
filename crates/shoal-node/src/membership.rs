//! Adding, draining and removing nodes (run on the metadata leader).
//!
//! The cluster's nodes are the members of the metadata group. A new node joins
//! it as a learner, catches up, and becomes a voter while there are fewer than
//! [`MAX_META_VOTERS`]. Draining a node marks it in the metadata; the
//! [`balancer`](crate::balancer) then moves its replicas away one shard at a time.
//! Removing a node drains it, waits until it holds nothing, and takes it out of
//! the metadata group; a learner is promoted if that leaves too few voters.

use openraft::ChangeMembers;
use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeSet;
use std::time::Duration;

use shoal_raft::MetaCommand;
use shoal_types::{NodeId, NodeInfo, ShoalError, ShoalResult};

use crate::meta_writer;
use crate::node::Node;

/// The metadata group keeps at most this many voters; later nodes are learners.
pub const MAX_META_VOTERS: usize = 5;

/// The metadata group's voters.
pub fn voters(node: &Node) -> BTreeSet<NodeId> {
    node.meta.metrics().borrow_watched().membership_config.membership().voter_ids().collect()
}

fn membership_error(error: impl std::fmt::Display) -> ShoalError {
    ShoalError::unavailable(format!("metadata membership change failed: {error}"))
}

/// Adds node `id` (already running, not yet a member) to the cluster. Returns
/// whether it became a metadata voter.
pub async fn add_node(node: &Node, id: NodeId, info: NodeInfo) -> ShoalResult<bool> {
    if id == 0 || info.addr.is_empty() || info.zone.is_empty() {
        return Err(ShoalError::invalid_argument("AddNode needs a node id above 0, an address and a zone."));
    }
    let members = node.cluster_nodes();
    if let Some(existing) = members.get(&id) {
        if existing.addr != info.addr {
            return Err(ShoalError::in_use(format!(
                "Node {id} is already a member at {}; remove it before adding another node with its id.",
                existing.addr
            )));
        }
    } else {
        tracing::info!(node = id, addr = %info.addr, zone = %info.zone, "adding node as a metadata learner");
        node.meta.add_learner(id, info, true).await.map_err(membership_error)?;
    }
    let current = voters(node);
    if current.contains(&id) {
        return Ok(true);
    }
    if current.len() >= MAX_META_VOTERS {
        return Ok(false);
    }
    node.meta
        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
        .await
        .map_err(membership_error)?;
    tracing::info!(node = id, "node is a metadata voter");
    Ok(true)
}

/// Starts or ends draining node `id`; returns how many replicas it still holds.
pub async fn drain_node(node: &Node, id: NodeId, cancel: bool) -> ShoalResult<u32> {
    if !node.cluster_nodes().contains_key(&id) {
        return Err(ShoalError::not_found(format!("Node {id} is not a member of the cluster.")));
    }
    let command = if cancel { MetaCommand::UndrainNode { node: id } } else { MetaCommand::DrainNode { node: id } };
    meta_writer::propose_and_apply_locally(node, command).await?;
    Ok(replicas_held(node, id))
}

/// Replicas node `id` holds, retiring ones included.
pub fn replicas_held(node: &Node, id: NodeId) -> u32 {
    node.meta_snapshot().replica_load().get(&id).copied().unwrap_or(0) as u32
}

/// Drains node `id`, waits (up to `timeout`) until it holds no replica, then
/// removes it from the metadata group.
pub async fn remove_node(node: &Node, id: NodeId, timeout: Duration) -> ShoalResult<()> {
    let members = node.cluster_nodes();
    if !members.contains_key(&id) {
        return Ok(());
    }
    if id == node.id {
        // The leader does not remove itself: it hands leadership over, and the
        // caller's retry reaches the new leader.
        if let Some(other) = voters(node).into_iter().find(|v| *v != id) {
            let _ = node.meta.trigger().transfer_leader(other).await;
        }
        return Err(ShoalError::unavailable("this node leads the metadata group and is handing over; retry"));
    }
    let zones: BTreeSet<&str> = members.iter().filter(|(n, _)| **n != id).map(|(_, info)| info.zone.as_str()).collect();
    if members.len() <= 1 {
        return Err(ShoalError::invalid_argument("The last node of a cluster cannot be removed."));
    }
    tracing::info!(node = id, remaining_zones = zones.len(), "removing node: draining it first");
    drain_node(node, id, false).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut meta = node.meta_state.clone();
    loop {
        let left = replicas_held(node, id);
        if left == 0 {
            break;
        }
        if tokio::time::timeout_at(deadline, meta.changed()).await.is_err() {
            return Err(ShoalError::unavailable(format!(
                "Node {id} still holds {left} replicas; the drain goes on. Repeat RemoveNode to wait longer."
            )));
        }
    }
    let current = voters(node);
    if current.contains(&id) {
        // Keep as many voters as before where a learner can step up.
        let learners: Vec<NodeId> = members.keys().copied().filter(|n| *n != id && !current.contains(n)).collect();
        if let Some(learner) = learners.first() {
            node.meta
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*learner])), false)
                .await
                .map_err(membership_error)?;
        }
        node.meta
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
    }
    if node.cluster_nodes().contains_key(&id) {
        node.meta
            .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
            .await
            .map_err(membership_error)?;
    }
    // The node is gone: it no longer needs to be excluded from placement.
    meta_writer::propose(node, MetaCommand::UndrainNode { node: id }).await?;
    tracing::info!(node = id, "node removed from the cluster");
    Ok(())
}
