//! Fault injection for the node-to-node transport, used by tests.
//!
//! A [`NetworkFaults`] is shared by every node of an in-process cluster; each node
//! consults it before sending a Raft message. Production nodes get an empty one.

use std::collections::HashSet;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shoal_types::NodeId;

#[derive(Debug, Default)]
pub struct NetworkFaults {
    /// Directed links `(from, to)` that drop every message.
    blocked: RwLock<HashSet<(NodeId, NodeId)>>,
    /// Extra latency added to every message, in milliseconds.
    delay_millis: AtomicU64,
    /// Share of messages dropped at random, in parts per thousand.
    drop_per_mille: AtomicU64,
}

impl NetworkFaults {
    /// Cuts `node` off from `others` in both directions.
    pub fn isolate(&self, node: NodeId, others: impl IntoIterator<Item = NodeId>) {
        let mut blocked = self.blocked.write().unwrap_or_else(|e| e.into_inner());
        for other in others {
            if other != node {
                blocked.insert((node, other));
                blocked.insert((other, node));
            }
        }
    }

    /// Drops messages from `from` to `to` only.
    pub fn block(&self, from: NodeId, to: NodeId) {
        self.blocked.write().unwrap_or_else(|e| e.into_inner()).insert((from, to));
    }

    /// Restores every link and removes delays and random drops.
    pub fn heal(&self) {
        self.blocked.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.delay_millis.store(0, Ordering::Relaxed);
        self.drop_per_mille.store(0, Ordering::Relaxed);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_millis.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_drop_rate(&self, per_mille: u64) {
        self.drop_per_mille.store(per_mille.min(1000), Ordering::Relaxed);
    }

    /// Whether a message from `from` to `to` gets through (deciding random drops).
    pub fn passes(&self, from: NodeId, to: NodeId) -> bool {
        if self.blocked.read().unwrap_or_else(|e| e.into_inner()).contains(&(from, to)) {
            return false;
        }
        let rate = self.drop_per_mille.load(Ordering::Relaxed);
        rate == 0 || rand::random_range(0..1000) >= rate
    }

    pub fn delay(&self) -> Option<Duration> {
        match self.delay_millis.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolation_cuts_both_directions_and_heals() {
        let faults = NetworkFaults::default();
        faults.isolate(1, [1, 2, 3]);
        assert!(!faults.passes(1, 2) && !faults.passes(3, 1));
        assert!(faults.passes(2, 3));
        faults.heal();
        assert!(faults.passes(1, 2));
    }
}
