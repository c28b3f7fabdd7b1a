//! Shoal's Raft layer: many openraft groups on one node.
//!
//! Read in this order:
//!
//! 1. [`type_config`]: the openraft type configuration every group shares.
//! 2. [`command`]: what a log entry carries — a metadata command or a batch of records.
//! 3. [`log_store`]: the Raft log of every group in the node's one RocksDB; appends
//!    become durable through the shared group-commit syncer.
//! 4. [`state_machine`]: applying entries — records into a shard ([`shard_state`]),
//!    streams and placement into the metadata group ([`meta_state`]).
//! 5. [`transport`]: the network between nodes; messages of all groups bound for
//!    the same peer travel in one batch, and [`faults`] can drop, delay or cut them.
//! 6. [`wire`]: how Raft RPCs are encoded and handled on the receiving node.
//! 7. [`runtime`]: tokio for openraft, with a random generator a simulation seeds
//!    and watch channels that wake receivers in order ([`ordered_watch`]).

pub mod command;
mod command_decoder;
pub mod consumer_group;
pub mod delivery_stream;
pub mod entry_codec;
pub mod faults;
pub mod log_store;
pub mod logged_command;
pub mod meta_state;
pub mod ordered_watch;
pub mod runtime;
pub mod shard_state;
pub mod state_machine;
pub mod transport;
pub mod type_config;
pub mod wire;

pub use command::{
    AppendPart, BatchOrigin, CoalescedBatch, Command, CommandResponse, Landed, MetaCommand, MetaResponse, RecordBatch,
    ShardAppend, ShardAppended, SharedRecords,
};
pub use faults::NetworkFaults;
pub use log_store::GroupLogStore;
pub use logged_command::LoggedCommand;
pub use meta_state::MetaState;
pub use shard_state::ShardProgress;
pub use state_machine::{GroupStateMachine, StateWatch};
pub use transport::PeerNetwork;
pub use type_config::{GroupRaft, TypeConfig, raft_config};
