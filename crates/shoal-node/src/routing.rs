//! Finding the node that leads a shard.

use std::sync::Arc;
use std::time::Duration;

use shoal_types::{NodeId, Shard, ShoalError, ShoalResult};

use crate::groups::GroupHandle;
use crate::node::Node;

pub enum ShardLeader {
    /// This node leads the shard.
    Local(Arc<GroupHandle>),
    /// Another node leads it (or, if this node holds no replica, may know who does).
    Remote { node: NodeId, addr: String },
}

/// Where to send a call for `shard`, waiting up to `timeout` for an election.
pub async fn locate(node: &Node, shard: &Shard, timeout: Duration) -> ShoalResult<ShardLeader> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = try_locate(node, shard)? {
            return Ok(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ShoalError::unavailable(format!(
                "{} has no leader yet (election in progress); retry shortly",
                shard.id
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn try_locate(node: &Node, shard: &Shard) -> ShoalResult<Option<ShardLeader>> {
    let local = node.groups.get(shard.group_id);
    if let Some(reason) = local.as_ref().and_then(|handle| handle.stopped()) {
        return Ok(another_replica(node, shard, &reason));
    }
    let Some(handle) = local else {
        // No local replica: ask the preferred leader, which holds one.
        let Some(&preferred) = shard.replicas.first() else {
            return Err(ShoalError::internal(format!("{} has no replicas", shard.id)));
        };
        if preferred == node.id {
            return Ok(None); // ours, but the reconciler has not started it yet
        }
        return Ok(node.node_addr(preferred).map(|addr| ShardLeader::Remote { node: preferred, addr }));
    };
    match handle.leader() {
        Some(leader) if leader == node.id && handle.raft.is_leader() => Ok(Some(ShardLeader::Local(handle))),
        Some(leader) if leader != node.id => {
            let addr = handle.member(leader).map(|info| info.addr).or_else(|| node.node_addr(leader));
            Ok(addr.map(|addr| ShardLeader::Remote { node: leader, addr }))
        }
        _ => Ok(None),
    }
}

/// Where to go for `shard` when this node's replica has stopped (its storage
/// failed) and no longer knows the leader: each call tries the next of the other
/// replicas, and one that does not lead answers "not the leader" at once.
fn another_replica(node: &Node, shard: &Shard, reason: &str) -> Option<ShardLeader> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let others: Vec<NodeId> = shard.replicas.iter().copied().filter(|id| *id != node.id).collect();
    let pick = *others.get(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % others.len().max(1))?;
    tracing::debug!(shard = %shard.id, %reason, to = pick, "local replica stopped; asking another");
    node.node_addr(pick).map(|addr| ShardLeader::Remote { node: pick, addr })
}
