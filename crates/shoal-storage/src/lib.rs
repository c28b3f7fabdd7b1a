//! The one RocksDB of a Shoal node, shared by every Raft group it hosts.
//!
//! This is the only crate that links RocksDB. It offers:
//!
//! * [`NodeDb`]: the database with a few fixed column families ([`Cf`]); every
//!   group's keys are prefixed by its big-endian group id ([`keys`]), so one
//!   `WriteBatch` can cover many groups and one WAL serves them all;
//! * [`WalSyncer`](wal_syncer): group commit — callers write without syncing and
//!   queue a completion; one thread fsyncs the WAL once for everything queued and
//!   then completes them all;
//! * [`DecodedEntries`]: recently used Raft log entries, decoded once and shared
//!   by every reader of the node;
//! * [`direct_io`]: whether a data directory takes `O_DIRECT` and how fast (probed in turns, remembered in the directory);
//! * [`StorageFaults`]: a switch that fails every write, as a full disk makes
//!   RocksDB do, for fault tests;
//! * an in-memory backend ([`NodeDb::in_memory`]) for deterministic simulation,
//!   which loses on a simulated crash exactly the writes no sync covered.

mod column_family;
mod decoded_entries;
pub mod direct_io;
mod memory_db;
mod node_db;
mod storage_faults;
mod wal_syncer;

pub mod keys;

pub use column_family::Cf;
pub use decoded_entries::{DecodedEntries, DecodedEntry};
pub use node_db::{Batch, NodeDb};
pub use storage_faults::StorageFaults;
