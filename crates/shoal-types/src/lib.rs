//! Shoal's domain vocabulary, shared by every other crate.
//!
//! Nothing here does I/O: these are the plain types and pure functions that decide
//! how Kinesis semantics map onto Shoal — which shard a record goes to
//! ([`hash_key`]), what a sequence number looks like ([`sequence_number`]), what a
//! shard iterator carries ([`shard_iterator`]), which inputs are valid
//! ([`validation`]), what a stream is ([`stream`]) and the one error vocabulary
//! every API speaks ([`error`]).

pub mod error;
pub mod hash_key;
pub mod limits;
pub mod node;
pub mod placement;
pub mod record;
pub mod scaling;
pub mod scope;
pub mod sequence_number;
pub mod shard_id;
pub mod shard_iterator;
pub mod stream;
pub mod validation;

pub use error::{ErrorCode, ShoalError, ShoalResult};
pub use hash_key::{HashKey, HashKeyRange};
pub use node::{NodeId, NodeInfo};
pub use record::{Record, RecordPosition, StoredRecord};
pub use sequence_number::SequenceNumber;
pub use shard_id::ShardId;
pub use shard_iterator::{IteratorStart, ShardIterator};
pub use stream::{Consumer, GroupId, Shard, Stream, StreamSettings, StreamStatus};

/// Milliseconds since the Unix epoch, the one clock unit Shoal stores.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
