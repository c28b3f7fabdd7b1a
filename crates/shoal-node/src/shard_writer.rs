//! Appending records to a shard: one Raft entry per call, on the shard's leader.

use std::sync::Arc;
use std::time::Duration;

use shoal_client::status::from_status;
use shoal_proto::v1::ShardAppendRequest;
use shoal_proto::v1::raft_transport_client::RaftTransportClient;
use std::sync::atomic::{AtomicU64, Ordering};

use shoal_raft::{BatchOrigin, Command, CommandResponse, SharedRecords};
use shoal_types::{ErrorCode, Record, RecordPosition, Shard, ShoalError, ShoalResult, Stream, now_millis};

use crate::groups::GroupHandle;
use crate::node::Node;
use crate::routing::{ShardLeader, locate};

/// What an append to a shard sealed for resharding is told: the records must be
/// routed again, to the shard's children, once the metadata shows them.
const SHARD_SEALED: &str = "the shard is closed for resharding";

pub(crate) fn sealed_error() -> ShoalError {
    ShoalError::unavailable(format!("{SHARD_SEALED}; route the records to its children"))
}

/// Whether an append failed because the shard was sealed (and must be re-routed).
pub fn is_sealed(error: &ShoalError) -> bool {
    error.code == ErrorCode::Unavailable && error.message.starts_with(SHARD_SEALED)
}

/// Where a batch landed: its records sit at offsets
/// `first_offset..first_offset + count` of entry `log_index`.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub log_index: u64,
    pub first_offset: u32,
    pub count: u32,
    pub arrival_millis: u64,
    /// Another node led the shard: the records went there.
    pub forwarded: bool,
}

/// Proposes `records` for the shard stored under `store` on the local group,
/// which must be the shard's leader, through the group commit
/// ([`crate::append_coalescer`]). Returns once a quorum has the entry on disk
/// and it is applied.
pub async fn append_local(
    handle: &Arc<GroupHandle>,
    store: u64,
    records: SharedRecords,
    origin: BatchOrigin,
) -> ShoalResult<Appended> {
    if !handle.raft.is_leader() {
        return Err(ShoalError::unavailable("this node is not the shard's leader; retry"));
    }
    let slot = handle.shard(store)?;
    let bytes: usize = records.iter().map(Record::billed_size).sum();
    if !slot.throttle.admit_write(bytes, records.len()) {
        metrics::counter!("shoal_write_throttled_records_total").increment(records.len() as u64);
        let (stream, shard) = slot.labels.clone();
        metrics::counter!("shoal_shard_write_throughput_exceeded_total", "stream" => stream, "shard" => shard)
            .increment(records.len() as u64);
        return Err(ShoalError::new(
            ErrorCode::ProvisionedThroughputExceeded,
            "Rate exceeded for shard: more than its write limit (records or bytes per second).",
        ));
    }
    let started = std::time::Instant::now();
    let landed = crate::append_coalescer::append(handle, store, records, bytes, origin).await?;
    crate::write_metrics::write_metrics().append_seconds.record(started.elapsed().as_secs_f64());
    Ok(Appended {
        log_index: landed.log_index,
        first_offset: landed.first_offset,
        count: landed.count,
        arrival_millis: landed.arrival_millis,
        forwarded: false,
    })
}

/// How far before a batch's first attempt a retry looks for it: more than any
/// clock skew between the nodes of a cluster.
const RETRY_LOOKBACK_MILLIS: u64 = 30_000;

/// A batch id unique to this node and this process run (never 0: node ids start at 1).
fn new_origin_id(node: &Node) -> u128 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static RUN: std::sync::LazyLock<u32> = std::sync::LazyLock::new(|| {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        since_epoch.subsec_nanos() ^ (since_epoch.as_secs() as u32)
    });
    (u128::from(node.id) << 96) | (u128::from(*RUN) << 64) | u128::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Appends `records` to `shard` wherever its leader is, retrying through leader
/// changes for a few seconds. Retries carry the batch's origin, so a first
/// attempt that did commit despite the error is not stored a second time. Every
/// attempt shares `records`; none copies them.
pub async fn append(node: &Node, stream: &Stream, shard: &Shard, records: SharedRecords) -> ShoalResult<Appended> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut origin = BatchOrigin { id: new_origin_id(node), retry_since_millis: 0 };
    let first_attempt_millis = now_millis();
    loop {
        let attempt = match locate(node, shard, Duration::from_secs(5)).await? {
            ShardLeader::Local(handle) => append_local(&handle, shard.store(), records.clone(), origin).await,
            ShardLeader::Remote { addr, .. } => append_remote(node, &addr, stream, shard, &records, origin).await,
        };
        match attempt {
            Err(error) if is_sealed(&error) => return Err(error),
            Err(error) if error.code == ErrorCode::Unavailable && tokio::time::Instant::now() < deadline => {
                tracing::debug!(shard = %shard.id, message = %error.message, "append retry");
                origin.retry_since_millis = first_attempt_millis.saturating_sub(RETRY_LOOKBACK_MILLIS).max(1);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            other => return other,
        }
    }
}

async fn append_remote(
    node: &Node,
    addr: &str,
    stream: &Stream,
    shard: &Shard,
    records: &[Record],
    origin: BatchOrigin,
) -> ShoalResult<Appended> {
    let channel = node.peers.channel(addr)?;
    let request = ShardAppendRequest {
        stream_name: stream.name.clone(),
        stream_created_millis: stream.created_millis,
        shard_index: shard.id.index(),
        records: bincode::serialize(records).map_err(|e| ShoalError::internal(e.to_string()))?,
        seal: false,
        origin_id: origin.id.to_be_bytes().to_vec(),
        retry_since_millis: origin.retry_since_millis,
    };
    let reply = RaftTransportClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
        .append_to_shard(request)
        .await
        .map_err(|status| from_status(&status))?
        .into_inner();
    Ok(Appended {
        log_index: reply.log_index,
        first_offset: reply.first_offset,
        count: reply.count,
        arrival_millis: reply.arrival_millis,
        forwarded: true,
    })
}

/// Seals the shard stored under `store` on the local group, which must lead it:
/// no record is accepted after the seal entry. Returns the seal's position, past
/// every record of the shard.
pub async fn seal_local(handle: &GroupHandle, store: u64) -> ShoalResult<RecordPosition> {
    if !handle.raft.is_leader() {
        return Err(ShoalError::unavailable("this node is not the shard's leader; retry"));
    }
    handle.shard(store)?;
    handle.wake();
    // A shard alone in its group is sealed with the entry every version reads.
    let command = if store == handle.group { Command::Seal } else { Command::SealShard(store) };
    match handle.raft.client_write(Arc::new(command.into())).await {
        Ok(written) => match written.data {
            CommandResponse::Sealed { end } => Ok(end),
            other => Err(ShoalError::internal(format!("unexpected seal response {other:?}"))),
        },
        Err(error) if error.forward_to_leader().is_some() => {
            Err(ShoalError::unavailable("shard leadership moved; retry"))
        }
        Err(error) => Err(ShoalError::unavailable(format!("seal failed: {error}"))),
    }
}

/// Seals `shard` wherever its leader is. Sealing twice returns the first seal.
pub async fn seal(node: &Node, stream: &Stream, shard: &Shard) -> ShoalResult<RecordPosition> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = match locate(node, shard, Duration::from_secs(5)).await? {
            ShardLeader::Local(handle) => seal_local(&handle, shard.store()).await,
            ShardLeader::Remote { addr, .. } => {
                let request = ShardAppendRequest {
                    stream_name: stream.name.clone(),
                    stream_created_millis: stream.created_millis,
                    shard_index: shard.id.index(),
                    seal: true,
                    ..Default::default()
                };
                match RaftTransportClient::new(node.peers.channel(&addr)?).append_to_shard(request).await {
                    Ok(reply) => Ok(RecordPosition { log_index: reply.into_inner().log_index, offset: 0 }),
                    Err(status) => Err(from_status(&status)),
                }
            }
        };
        match attempt {
            Err(error) if error.code == ErrorCode::Unavailable && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            other => return other,
        }
    }
}
