//! Appending records to a shard: one Raft entry per call, on the shard's leader.

use std::time::Duration;

use shoal_client::status::from_status;
use shoal_proto::v1::ShardAppendRequest;
use shoal_proto::v1::raft_transport_client::RaftTransportClient;
use shoal_raft::{Command, CommandResponse, RecordBatch};
use shoal_types::{ErrorCode, Record, Shard, ShoalError, ShoalResult, Stream, now_millis};

use crate::groups::GroupHandle;
use crate::node::Node;
use crate::routing::{ShardLeader, locate};

/// Where a batch landed: records `0..count` sit at offsets of entry `log_index`.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub log_index: u64,
    pub count: u32,
    pub arrival_millis: u64,
}

/// Proposes `records` on the local group, which must be the shard's leader. Returns
/// once a quorum has the entry on disk and it is applied.
pub async fn append_local(handle: &GroupHandle, records: Vec<Record>) -> ShoalResult<Appended> {
    if !handle.raft.is_leader() {
        return Err(ShoalError::unavailable("this node is not the shard's leader; retry"));
    }
    let arrival_millis = handle.next_arrival(now_millis());
    let count = records.len();
    let started = std::time::Instant::now();
    match handle.raft.client_write(Command::Append(RecordBatch { records, arrival_millis })).await {
        Ok(written) => match written.data {
            CommandResponse::Appended { log_index, count, arrival_millis } => {
                metrics::counter!("shoal_records_appended_total").increment(u64::from(count));
                metrics::histogram!("shoal_append_seconds").record(started.elapsed().as_secs_f64());
                Ok(Appended { log_index, count, arrival_millis })
            }
            other => Err(ShoalError::internal(format!("unexpected append response {other:?} for {count} records"))),
        },
        Err(error) if error.forward_to_leader().is_some() => {
            Err(ShoalError::unavailable("shard leadership moved; retry"))
        }
        Err(error) => Err(ShoalError::unavailable(format!("append failed: {error}"))),
    }
}

/// Appends `records` to `shard` wherever its leader is, retrying through leader
/// changes for a few seconds.
pub async fn append(node: &Node, stream: &Stream, shard: &Shard, records: Vec<Record>) -> ShoalResult<Appended> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = match locate(node, shard, Duration::from_secs(5)).await? {
            ShardLeader::Local(handle) => append_local(&handle, records.clone()).await,
            ShardLeader::Remote { addr, .. } => append_remote(node, &addr, stream, shard, &records).await,
        };
        match attempt {
            Err(error) if error.code == ErrorCode::Unavailable && tokio::time::Instant::now() < deadline => {
                tracing::debug!(shard = %shard.id, message = %error.message, "append retry");
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
) -> ShoalResult<Appended> {
    let channel = node.peers.channel(addr)?;
    let request = ShardAppendRequest {
        stream_name: stream.name.clone(),
        stream_created_millis: stream.created_millis,
        shard_index: shard.id.index(),
        records: bincode::serialize(records).map_err(|e| ShoalError::internal(e.to_string()))?,
    };
    let reply = RaftTransportClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
        .append_to_shard(request)
        .await
        .map_err(|status| from_status(&status))?
        .into_inner();
    Ok(Appended { log_index: reply.log_index, count: reply.count, arrival_millis: reply.arrival_millis })
}
