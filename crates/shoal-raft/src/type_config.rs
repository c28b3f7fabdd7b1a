//! The openraft type configuration shared by the metadata group and every shard group.

use std::sync::Arc;

use shoal_types::NodeInfo;

use crate::command::CommandResponse;
use crate::logged_command::LoggedCommand;
use crate::state_machine::GroupStateMachine;

openraft::declare_raft_types!(
    /// Raft types of every Shoal group: node ids are `u64`, nodes carry their
    /// address and zone, entries carry [`Command`]s; tokio runs them, with a
    /// random generator the simulation can seed.
    ///
    /// An entry's command is shared, not copied, when openraft clones the entry
    /// (to apply it, and once per follower it replicates to) and when the state
    /// machine hands it to the records' readers; on disk and on the wire it is
    /// the command itself, as before (serde writes an `Arc<T>` as its `T`, and a
    /// [`LoggedCommand`] as its command). The command keeps its encoding once
    /// made, so the log write and the followers' messages share one.
    pub TypeConfig:
        D = Arc<LoggedCommand>,
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

/// Entries openraft keeps in a log after a snapshot, for followers a little
/// behind (beyond them, a follower gets the snapshot).
pub const LOG_KEPT_AFTER_SNAPSHOT: u64 = 5_000;

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
        max_in_snapshot_log_to_keep: LOG_KEPT_AFTER_SNAPSHOT,
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
        // While a follower acknowledges appends, heartbeats to it are redundant:
        // skip them (see `heartbeat_min_interval`). Under load this saves a core
        // turn and an RPC per follower per heartbeat.
        heartbeat_min_interval: Some(heartbeat_suppression(heartbeat_ms, election_min_ms)),
        ..Default::default()
    };
    Ok(Arc::new(config.validate()?))
}

/// How long after a follower's last acknowledgement its heartbeat is skipped: one
/// heartbeat interval, but at most half the slack between the longest gap this
/// allows between heartbeats and the shortest election timeout (0: never skip).
fn heartbeat_suppression(heartbeat_ms: u64, election_min_ms: u64) -> u64 {
    let tick = (heartbeat_ms * 13 / 64).max(1);
    let slack = election_min_ms.saturating_sub(heartbeat_ms + tick) / 2;
    heartbeat_ms.min(slack)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_restarted_leader_stands_for_election_again() {
        let config = super::raft_config(100, 800).unwrap();
        assert_eq!(config.enable_leader_restore, Some(false));
    }

    #[test]
    fn a_shared_command_keeps_the_layout_of_entries_already_logged() {
        use crate::command::{BatchOrigin, Command, RecordBatch};
        use crate::log_store::{decode, encode};
        let command = Command::Append(RecordBatch {
            records: std::sync::Arc::new(vec![shoal_types::Record {
                partition_key: "k".into(),
                explicit_hash_key: None,
                data: vec![0, 1, 255].into(),
            }]),
            arrival_millis: 7,
            origin: BatchOrigin { id: 42, retry_since_millis: 0 },
        });
        let logged = encode(&command).unwrap();
        let shared = std::sync::Arc::new(crate::logged_command::LoggedCommand::new(command.clone()));
        assert_eq!(encode(&shared).unwrap(), logged);
        assert_eq!(**decode::<std::sync::Arc<crate::logged_command::LoggedCommand>>(&logged).unwrap(), command);
    }

    #[test]
    fn heartbeats_are_skipped_only_with_room_before_an_election() {
        assert_eq!(super::heartbeat_suppression(100, 500), 100);
        assert_eq!(super::heartbeat_suppression(100, 300), 90);
        assert_eq!(super::heartbeat_suppression(100, 120), 0);
        // Every configuration the node accepts still validates.
        for (heartbeat, election) in [(100, 500), (50, 100), (100, 101), (1, 2), (20, 150)] {
            let config = super::raft_config(heartbeat, election).unwrap();
            assert!(config.heartbeat_min_interval.unwrap_or(0) <= heartbeat);
        }
    }
}
