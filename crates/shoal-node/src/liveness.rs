//! Node-level liveness: each node probes every other node a few times a second,
//! through the same per-peer link as Raft traffic.
//!
//! Idle shard groups rest (see [`crate::quiescence`]): they send no heartbeats of
//! their own, so a follower cannot learn from its group that the leader died.
//! It asks here instead — one probe per peer replaces a heartbeat per group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_types::{NodeId, now_millis};
use tokio::sync::watch;

use crate::node::Node;

/// When each peer last answered a probe.
#[derive(Debug, Default)]
pub struct Liveness {
    answered_millis: Mutex<HashMap<NodeId, u64>>,
}

impl Liveness {
    fn record_answer(&self, node: NodeId, at_millis: u64) {
        let mut answered = self.answered_millis.lock().unwrap_or_else(|e| e.into_inner());
        let entry = answered.entry(node).or_insert(0);
        *entry = (*entry).max(at_millis);
    }

    /// Whether `node` answered within the last `within_millis`.
    pub fn answered_within(&self, node: NodeId, within_millis: u64) -> bool {
        let answered = self.answered_millis.lock().unwrap_or_else(|e| e.into_inner());
        answered.get(&node).is_some_and(|at| now_millis().saturating_sub(*at) <= within_millis)
    }
}

/// Probes every other member once per heartbeat interval until `stop`.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(node.config.raft.heartbeat_millis.max(10));
    loop {
        for (id, info) in node.cluster_nodes().into_iter().filter(|(id, _)| *id != node.id) {
            let node = node.clone();
            tokio::spawn(async move {
                let sent = now_millis();
                // A probe older than the election timeout tells nothing.
                let timeout = Duration::from_millis(node.config.raft.election_timeout_millis);
                if node.network.ping(id, &info, timeout).await {
                    node.liveness.record_answer(id, sent);
                }
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_live_only_while_its_answers_are_recent() {
        let liveness = Liveness::default();
        assert!(!liveness.answered_within(2, 1_000));
        liveness.record_answer(2, now_millis());
        assert!(liveness.answered_within(2, 1_000));
        liveness.record_answer(3, now_millis() - 5_000);
        assert!(!liveness.answered_within(3, 1_000));
        // An older answer arriving late does not roll the clock back.
        liveness.record_answer(2, 1);
        assert!(liveness.answered_within(2, 1_000));
    }
}
