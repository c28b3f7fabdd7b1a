//! The fixed column families of a node's database.

/// Every column family Shoal keeps. Keys in all of them start with the owning
/// group's id (big-endian u64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    /// Raft log entries: `group | index`.
    RaftLog,
    /// Per-group Raft state: vote, committed id, last purged id: `group | kind`.
    RaftState,
    /// Where a shard's applied records are: `store | log index` rows that point
    /// into the group's Raft log entry holding them, and records stored whole
    /// (by older versions, or from a snapshot) under `store | log index | offset`.
    Records,
    /// Arrival-time index of shard groups: `group | arrival millis | log index`.
    Arrivals,
    /// State-machine metadata: applied log id, membership, snapshot meta, and the
    /// metadata group's state: `group | kind`.
    StateMachine,
}

impl Cf {
    pub const ALL: [Cf; 5] = [Cf::RaftLog, Cf::RaftState, Cf::Records, Cf::Arrivals, Cf::StateMachine];

    /// Position in [`Cf::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Cf::RaftLog => "raft_log",
            Cf::RaftState => "raft_state",
            Cf::Records => "records",
            Cf::Arrivals => "arrivals",
            Cf::StateMachine => "state_machine",
        }
    }
}
