//! The Rust client of Shoal.
//!
//! [`ShoalClient`] wraps the gRPC services with Kinesis-shaped methods, turns gRPC
//! statuses back into [`ShoalError`]s ([`status`]), and retries calls the cluster
//! answered with `Unavailable` (a leader election in progress) for a few seconds.

pub mod aggregation;
pub mod collection;
pub mod consumer;
pub mod producer;
pub mod routing;
pub mod status;

mod client;

pub use client::{Record, ShoalClient, StoredRecord};
pub use routing::LeaderRouter;
pub use shoal_proto::v1 as proto;
pub use shoal_tls::Dialer;
pub use shoal_types::{ErrorCode, ShoalError, ShoalResult};
