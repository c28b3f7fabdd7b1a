//! The gRPC `Records` service: PutRecord(s), GetShardIterator, GetRecords.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_client::status::{from_status, to_status};
use shoal_proto::v1 as proto;
use shoal_proto::v1::records_client::RecordsClient;
use shoal_proto::v1::records_server::Records;
use shoal_raft::{SharedRecords, shard_state};
use shoal_types::limits::{MAX_GET_RECORDS_LIMIT, MAX_RECORD_BYTES_CEILING};
use shoal_types::validation::{validate_put_records, validate_record};
use shoal_types::{
    ErrorCode, HashKey, IteratorStart, Record, RecordPosition, Shard, ShardId, ShardIterator, ShoalError, ShoalResult,
    Stream, now_millis,
};
use tonic::{Request, Response, Status};

use crate::node::Node;
use crate::peers::{forwarded, is_forwarded};
use crate::records_read::{Read, Reader};
use crate::routing::{ShardLeader, locate};
use crate::shard_writer;

#[derive(Clone)]
pub struct DataService {
    node: Arc<Node>,
}

fn to_record(entry: proto::RecordEntry) -> Record {
    Record { partition_key: entry.partition_key, explicit_hash_key: entry.explicit_hash_key, data: entry.data }
}

pub(crate) fn find_shard<'a>(stream: &'a Stream, shard_id: &str) -> ShoalResult<&'a Shard> {
    let id = ShardId::parse(shard_id)?;
    stream.shard(id).ok_or_else(|| {
        ShoalError::not_found(format!(
            "Shard {id} in stream {} under account {} does not exist",
            stream.name,
            shoal_types::limits::DEFAULT_ACCOUNT_ID
        ))
    })
}

/// Marks a GetRecords call made for an enhanced fan-out subscription, which does
/// not count against the shard's shared read limit.
pub const FAN_OUT_HEADER: &str = "x-shoal-fan-out";

/// How many times records refused by a sealed shard are routed again.
const ROUTING_ROUNDS: usize = 3;

/// A per-record failure as PutRecords reports it (Kinesis knows only two codes).
fn failure_entry(error: &ShoalError) -> proto::PutRecordsResultEntry {
    let code = match error.code {
        ErrorCode::ProvisionedThroughputExceeded => error.code.aws_type(),
        _ => ErrorCode::InternalFailure.aws_type(),
    };
    proto::PutRecordsResultEntry { error_code: code.into(), error_message: error.message.clone(), ..Default::default() }
}

/// How long a read waits for a shard leader before answering `Unavailable`.
pub(crate) const LEADER_WAIT: Duration = Duration::from_secs(5);

/// One shard's share of a PutRecords call, once its append is done.
struct ShardShare {
    shard_id: ShardId,
    /// Where each of the share's records sits in the call.
    indexes: Vec<usize>,
    /// The records, shared with the append (which does not copy them).
    records: SharedRecords,
    outcome: ShoalResult<shard_writer::Appended>,
}

impl DataService {
    pub fn new(node: Arc<Node>) -> Self {
        DataService { node }
    }

    /// The local group of a shard, when this node hosts one (to wait for new records).
    pub(crate) fn local_progress(
        &self,
        stream: &str,
        shard_id: &str,
    ) -> Option<tokio::sync::watch::Receiver<shoal_raft::ShardProgress>> {
        let meta = self.node.meta_snapshot();
        let shard = meta.stream(stream).ok()?.shard(ShardId::parse(shard_id).ok()?)?;
        Some(self.node.groups.get(shard.group_id)?.shard(shard.store()).ok()?.progress.clone())
    }

    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    pub(crate) fn peer_records(&self, addr: &str) -> ShoalResult<RecordsClient<tonic::transport::Channel>> {
        Ok(RecordsClient::new(self.node.peers.channel(addr)?)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024))
    }

    /// Routes every record to its shard, appends each shard's records as one
    /// entry (all shards in parallel), and reports per record, in request order.
    async fn put_many(&self, stream_name: &str, records: Vec<Record>) -> ShoalResult<proto::PutRecordsResponse> {
        let mut stream = self.node.writable_stream(stream_name).await?;
        // The call was checked against the largest limit any stream can have;
        // now hold it to this stream's own.
        let max_record_bytes = stream.settings.max_record_size_kib as usize * 1024;
        if max_record_bytes < MAX_RECORD_BYTES_CEILING {
            validate_put_records(&records, max_record_bytes)?;
        }
        let mut results = vec![proto::PutRecordsResultEntry::default(); records.len()];
        let (mut failed, mut forwarded) = (0u32, 0u32);
        let mut pending: Vec<(usize, Record)> = records.into_iter().enumerate().collect();
        for round in 0..ROUTING_ROUNDS {
            if round > 0 {
                // Records met a shard sealed for resharding: route them again once
                // the metadata shows its children.
                stream = self.wait_for_children(&stream).await?;
            }
            let mut sealed = Vec::new();
            for share in self.append_round(&stream, pending).await? {
                match share.outcome {
                    Err(error) if shard_writer::is_sealed(&error) => {
                        sealed.extend(share.indexes.into_iter().zip(Arc::unwrap_or_clone(share.records)));
                    }
                    Err(error) => {
                        failed += share.indexes.len() as u32;
                        for index in share.indexes {
                            results[index] = failure_entry(&error);
                        }
                    }
                    Ok(appended) => {
                        if appended.forwarded {
                            forwarded += share.indexes.len() as u32;
                        }
                        let shard_id = share.shard_id.to_string();
                        for (offset, index) in share.indexes.into_iter().enumerate() {
                            let position = RecordPosition {
                                log_index: appended.log_index,
                                offset: appended.first_offset + offset as u32,
                            };
                            results[index] = proto::PutRecordsResultEntry {
                                shard_id: shard_id.clone(),
                                sequence_number: stream.sequence_number(share.shard_id, position).to_string(),
                                ..Default::default()
                            };
                        }
                    }
                }
            }
            pending = sealed;
            if pending.is_empty() {
                break;
            }
        }
        for (index, _) in pending {
            failed += 1;
            results[index] = failure_entry(&ShoalError::unavailable("the shard was being resharded; retry"));
        }
        crate::write_metrics::write_metrics().put_records_failed.increment(u64::from(failed));
        Ok(proto::PutRecordsResponse {
            failed_record_count: failed,
            records: results,
            forwarded_record_count: forwarded,
        })
    }

    /// Routes `pending` records by hash key and appends each shard's share as one
    /// entry, all shards in parallel.
    async fn append_round(&self, stream: &Stream, pending: Vec<(usize, Record)>) -> ShoalResult<Vec<ShardShare>> {
        let mut by_shard: BTreeMap<ShardId, (Vec<usize>, Vec<Record>)> = BTreeMap::new();
        for (index, record) in pending {
            let key = HashKey::for_record(&record.partition_key, record.explicit_hash_key.as_deref())?;
            let shard = stream.route(key).ok_or_else(|| {
                ShoalError::internal(format!("no open shard of {} covers hash key {key}", stream.name))
            })?;
            let (indexes, records) = by_shard.entry(shard.id).or_default();
            indexes.push(index);
            records.push(record);
        }
        let appends = by_shard.into_iter().map(|(shard_id, (indexes, records))| async move {
            let records = Arc::new(records);
            let outcome = match stream.shard(shard_id) {
                Some(shard) => shard_writer::append(&self.node, stream, shard, records.clone()).await,
                None => Err(ShoalError::internal("routed to a missing shard")),
            };
            ShardShare { shard_id, indexes, records, outcome }
        });
        Ok(futures::future::join_all(appends).await)
    }

    /// The stream once a resharding that sealed one of its shards is in the
    /// metadata (a few seconds at most).
    async fn wait_for_children(&self, before: &Stream) -> ShoalResult<Arc<Stream>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let now = self.node.stream(&before.name).await?;
            if now.shards.len() != before.shards.len() || tokio::time::Instant::now() >= deadline {
                return Ok(now);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shard_iterator(
        &self,
        request: &proto::GetShardIteratorRequest,
        handle: &crate::groups::GroupHandle,
        stream: &Stream,
        shard: &Shard,
    ) -> ShoalResult<String> {
        let progress = handle.shard(shard.store())?.progress();
        let start = IteratorStart::from_request(
            &request.shard_iterator_type,
            Some(request.starting_sequence_number.as_str()).filter(|s| !s.is_empty()),
            request.timestamp_millis,
        )?;
        let belongs = |seq: &shoal_types::SequenceNumber| -> ShoalResult<()> {
            if seq.shard_index != shard.id.index() || seq.stream_epoch_secs != stream.epoch_secs() % 10_000_000_000 {
                return Err(ShoalError::invalid_argument(format!(
                    "Invalid StartingSequenceNumber. It encodes a different shard or stream than {} of {}.",
                    shard.id, stream.name
                )));
            }
            Ok(())
        };
        let position = match start {
            IteratorStart::TrimHorizon => RecordPosition::START,
            IteratorStart::Latest => progress.next_position,
            IteratorStart::AtSequenceNumber(seq) => {
                belongs(&seq)?;
                seq.position
            }
            IteratorStart::AfterSequenceNumber(seq) => {
                belongs(&seq)?;
                seq.position.next()
            }
            IteratorStart::AtTimestamp { millis } => {
                shard_state::position_at_timestamp(&self.node.db, shard.store(), millis)
                    .map_err(|e| ShoalError::internal(e.to_string()))?
                    .unwrap_or(progress.next_position)
            }
        };
        let iterator = ShardIterator {
            stream_name: stream.name.clone(),
            stream_created_millis: stream.created_millis,
            shard_index: shard.id.index(),
            position,
            issued_at_millis: now_millis(),
        };
        Ok(iterator.encode())
    }
}

#[tonic::async_trait]
impl Records for DataService {
    type SubscribeToShardStream = crate::subscription::EventStream;

    async fn subscribe_to_shard(
        &self,
        request: Request<proto::SubscribeToShardRequest>,
    ) -> Result<Response<Self::SubscribeToShardStream>, Status> {
        let was_forwarded = is_forwarded(&request);
        crate::subscription::subscribe(self.clone(), request.into_inner(), was_forwarded).await.map(Response::new)
    }

    async fn put_record(
        &self,
        request: Request<proto::PutRecordRequest>,
    ) -> Result<Response<proto::PutRecordResponse>, Status> {
        let request = request.into_inner();
        let entry = request.record.ok_or_else(|| to_status(ShoalError::invalid_argument("Record must be given.")))?;
        let record = to_record(entry);
        validate_record(&record, None, MAX_RECORD_BYTES_CEILING).map_err(to_status)?;
        let mut response = self.put_many(&request.stream_name, vec![record]).await.map_err(to_status)?;
        let result =
            response.records.pop().ok_or_else(|| to_status(ShoalError::internal("no result for the record")))?;
        if !result.error_code.is_empty() {
            let code = ErrorCode::from_aws_type(&result.error_code).unwrap_or(ErrorCode::InternalFailure);
            let code = if code == ErrorCode::InternalFailure { ErrorCode::Unavailable } else { code };
            return Err(to_status(ShoalError::new(code, result.error_message)));
        }
        Ok(Response::new(proto::PutRecordResponse {
            shard_id: result.shard_id,
            sequence_number: result.sequence_number,
        }))
    }

    async fn put_records(
        &self,
        request: Request<proto::PutRecordsRequest>,
    ) -> Result<Response<proto::PutRecordsResponse>, Status> {
        let started = std::time::Instant::now();
        let request = request.into_inner();
        let records: Vec<Record> = request.records.into_iter().map(to_record).collect();
        validate_put_records(&records, MAX_RECORD_BYTES_CEILING).map_err(to_status)?;
        let response = self.put_many(&request.stream_name, records).await.map_err(to_status)?;
        crate::write_metrics::write_metrics().put_records_seconds.record(started.elapsed().as_secs_f64());
        Ok(Response::new(response))
    }

    async fn get_shard_iterator(
        &self,
        request: Request<proto::GetShardIteratorRequest>,
    ) -> Result<Response<proto::GetShardIteratorResponse>, Status> {
        let was_forwarded = is_forwarded(&request);
        let request = request.into_inner();
        let stream = self.node.stream(&request.stream_name).await.map_err(to_status)?;
        let shard = find_shard(&stream, &request.shard_id).map_err(to_status)?;
        // Validate before routing, so bad input fails fast on any node.
        IteratorStart::from_request(
            &request.shard_iterator_type,
            Some(request.starting_sequence_number.as_str()).filter(|s| !s.is_empty()),
            request.timestamp_millis,
        )
        .map_err(to_status)?;
        match locate(&self.node, shard, LEADER_WAIT).await.map_err(to_status)? {
            ShardLeader::Local(handle) => {
                let iterator = self.shard_iterator(&request, &handle, &stream, shard).await.map_err(to_status)?;
                Ok(Response::new(proto::GetShardIteratorResponse { shard_iterator: iterator }))
            }
            ShardLeader::Remote { .. } if was_forwarded => {
                Err(to_status(ShoalError::unavailable("shard leadership is moving; retry")))
            }
            ShardLeader::Remote { addr, .. } => {
                let mut peer = self.peer_records(&addr).map_err(to_status)?;
                peer.get_shard_iterator(forwarded(request)).await.map_err(|s| to_status(from_status(&s)))
            }
        }
    }

    async fn get_records(
        &self,
        request: Request<proto::GetRecordsRequest>,
    ) -> Result<Response<proto::GetRecordsResponse>, Status> {
        let was_forwarded = is_forwarded(&request);
        let fan_out = request.metadata().contains_key(FAN_OUT_HEADER);
        let request = request.into_inner();
        let limit = match request.limit {
            0 => MAX_GET_RECORDS_LIMIT,
            n if n > MAX_GET_RECORDS_LIMIT => {
                return Err(to_status(ShoalError::invalid_argument(format!(
                    "Limit {n} is invalid: it must be between 1 and {MAX_GET_RECORDS_LIMIT}."
                ))));
            }
            n => n,
        };
        let iterator = ShardIterator::decode_with_ttl(
            &request.shard_iterator,
            now_millis(),
            self.node.config.shard_iterator_ttl_millis,
        )
        .map_err(to_status)?;
        let reader = Reader { fan_out, forwarded: was_forwarded };
        match self.read_at(&iterator, limit, reader).await? {
            Read::Here(page) => Ok(Response::new(page.into_response())),
            Read::There(response) => Ok(Response::new(response)),
        }
    }
}
