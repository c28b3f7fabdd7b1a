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
    let Some(handle) = node.groups.get(shard.group_id) else {
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
