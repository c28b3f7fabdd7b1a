//! Firehose delivery for Shoal.
//!
//! A delivery stream's records sit in a Shoal stream (its own one for DirectPut,
//! an existing one for KinesisStreamAsSource). The [`worker`] reads them like any
//! consumer application — consumer-group leases, so several workers share the
//! shards — buffers each shard's records until the buffering hints say so,
//! compresses them and writes one object, and only then checkpoints: a crash
//! re-delivers, never loses.
//!
//! Read in this order:
//!
//! 1. [`destination`]: the S3 destination configuration, from the AWS JSON shapes.
//! 2. [`naming`]: object keys — AWS's layout, with a name derived from the shard
//!    and the first record's sequence number, so a re-delivery overwrites the
//!    object it repeats instead of adding a duplicate.
//! 3. [`compression`]: GZIP, Snappy and Hadoop-Snappy.
//! 4. [`store`]: where a bucket lives (an S3-compatible server, or a directory).
//! 5. [`delivery`]: one delivery stream's record processor: buffer, flush, checkpoint.
//! 6. [`worker`]: runs a consumer per delivery stream as they come and go.

pub mod backoff;
pub mod compression;
pub mod conversion;
pub mod delivery;
pub mod destination;
pub mod endpoint_settings;
pub mod failure;
pub mod http_endpoint;
pub mod naming;
pub mod partitioning;
pub mod postgres;
pub mod request;
pub mod search;
pub mod splunk;
pub mod store;
pub mod transform;
pub mod worker;

pub use destination::{Destination, S3Destination};
pub use store::{FirehoseConfig, StoreConfig};
pub use worker::Worker;
