//! Cluster nodes: an id, an availability zone and an address.

use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// What the cluster knows about a node: where it is and how to reach it. This is
/// also the openraft `Node` type, so every Raft membership carries addresses and
/// zones.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the node's gRPC listener.
    pub addr: String,
    /// The availability zone, e.g. `az-a`. Replicas of a shard go to distinct zones.
    pub zone: String,
}

impl std::fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.addr, self.zone)
    }
}
