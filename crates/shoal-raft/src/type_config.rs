//! The openraft type configuration shared by the metadata group and every shard group.

use std::sync::Arc;

use shoal_types::NodeInfo;

use crate::command::{Command, CommandResponse};
use crate::state_machine::GroupStateMachine;

openraft::declare_raft_types!(
    /// Raft types of every Shoal group: node ids are `u64`, nodes carry their
    /// address and zone, entries carry [`Command`]s; tokio runs them, with a
    /// random generator the simulation can seed.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = u64,
        Node = NodeInfo,
        AsyncRuntime = crate::runtime::ShoalRuntime,
);

/// A running Raft group on this node.
pub type GroupRaft = openraft::Raft<TypeConfig, GroupStateMachine>;

pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta =
    openraft::SnapshotMeta<openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>, u64, NodeInfo>;
pub type Snapshot =
    openraft::Snapshot<openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>, u64, NodeInfo, Vec<u8>>;

/// Raft timing for a group. Heartbeats every `heartbeat_ms`; a follower that hears
/// nothing for a random time in `[election_min_ms, 2 × election_min_ms]` starts an
/// election, which is how writes resume within about a second of a leader's death.
pub fn raft_config(heartbeat_ms: u64, election_min_ms: u64) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
    let config = openraft::Config {
        cluster_name: "shoal".into(),
        heartbeat_interval: heartbeat_ms,
        election_timeout_min: election_min_ms,
        election_timeout_max: election_min_ms * 2,
        // Snapshots are cheap to build (metadata only, see state_machine.rs); take
        // them often enough that the Raft log does not grow without bound.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(20_000),
        max_in_snapshot_log_to_keep: 5_000,
        max_payload_entries: 512,
        // A restarted leader must win a new election, never resume its old term
        // (openraft's default). Shoal acknowledges a leader's own append only once
        // it is fsynced, but followers may commit an entry the leader then loses
        // in a crash; resuming the same term, the leader would write a different
        // entry under the same log id, which followers holding the first one
        // accept as a match — replicas diverge (found by the simulation, seed 8;
        // see docs/simulation.md). Also required since applied state and the
        // commit index are not fsynced (see openraft's docs of this setting).
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_restarted_leader_stands_for_election_again() {
        let config = super::raft_config(100, 800).unwrap();
        assert_eq!(config.enable_leader_restore, Some(false));
    }
}
