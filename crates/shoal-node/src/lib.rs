//! A Shoal node.
//!
//! The write path, in the order a record travels:
//!
//! 1. [`data_service`]: the gRPC `Records` service validates a PutRecords call and
//!    routes each record to its shard by hash key.
//! 2. [`shard_writer`]: finds the shard's leader ([`routing`]), proposes the
//!    shard's records as one Raft entry there — or forwards them to the leader node.
//! 3. `shoal_raft::log_store`: the entry is appended to RocksDB and made durable by
//!    the node's group-commit syncer, on the leader and on the followers.
//! 4. `shoal_raft::state_machine`: once a quorum has it on disk the entry is
//!    committed and applied; the sequence numbers come from its log index.
//!
//! Around it: [`node`] wires a node together (`run(listener, config, shutdown)`),
//! [`reconciler`] starts and stops the local shard groups the metadata group
//! assigns, [`control_service`] serves streams and shards, [`cluster_service`]
//! reports leaders and lag, [`transport_service`] receives Raft batches and
//! forwarded writes, and [`retention`] drops expired records.

pub mod append_coalescer;
pub mod autoscaler;
pub mod balancer;
pub mod cluster_service;
pub mod config;
pub mod consumer_service;
pub mod control_service;
pub mod data_service;
pub mod firehose_service;
pub mod groups;
pub mod liveness;
pub mod membership;
pub mod meta_writer;
pub mod node;
pub mod peers;
pub mod quiescence;
pub mod reconciler;
pub mod records_read;
pub mod resharding;
pub mod retention;
pub mod routing;
pub mod shard_metrics;
pub mod shard_writer;
pub mod storage_metrics;
pub mod subscription;
pub mod throughput;
pub mod transport_service;
pub mod write_metrics;

pub use autoscaler::AutoscalerConfig;
pub use config::{AwsCredential, DirectIo, NodeConfig, PeerConfig, RaftTiming};
pub use node::{Node, NodeHandle, run, serve, start};
pub use throughput::ThroughputLimits;
