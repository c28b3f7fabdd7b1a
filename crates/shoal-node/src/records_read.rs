//! Reading a page of a shard's records at a decoded position: what GetRecords
//! answers, for callers that keep their position as a [`ShardIterator`].
//!
//! GetRecords decodes the caller's iterator, reads here and encodes the next one.
//! A push subscription reads a page every time its shard's replica applies
//! something, many times a second per shard: it keeps its position decoded and
//! reads here directly, so a wake does not pay for an iterator's checksum and
//! base64 twice, nor for a copy of the stream's metadata.

use shoal_client::status::{from_status, to_status};
use shoal_proto::v1 as proto;
use shoal_raft::shard_state;
use shoal_types::limits::MAX_GET_RECORDS_BYTES;
use shoal_types::{ErrorCode, Shard, ShardId, ShardIterator, ShoalError, ShoalResult, Stream, now_millis};
use tonic::Status;

use crate::data_service::{DataService, FAN_OUT_HEADER, LEADER_WAIT};
use crate::peers::forwarded;
use crate::routing::{ShardLeader, locate};
use crate::shard_metrics::ShardMetrics;

/// A page of records read on this node, with the next position still decoded.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<proto::StoredRecordEntry>,
    /// Where the next read starts; `None` once a closed shard is read to its end.
    pub next: Option<ShardIterator>,
    pub millis_behind_latest: u64,
    /// A closed shard's children, once it is read to its end.
    pub child_shards: Vec<proto::ChildShard>,
}

impl Page {
    pub fn into_response(self) -> proto::GetRecordsResponse {
        proto::GetRecordsResponse {
            records: self.records,
            next_shard_iterator: self.next.map(|next| next.encode()).unwrap_or_default(),
            millis_behind_latest: self.millis_behind_latest,
            child_shards: self.child_shards,
        }
    }

    /// A page another node answered, its next iterator decoded.
    pub fn from_response(response: proto::GetRecordsResponse, ttl_millis: u64) -> Result<Page, Status> {
        let next = match response.next_shard_iterator.as_str() {
            "" => None,
            text => Some(ShardIterator::decode_with_ttl(text, now_millis(), ttl_millis).map_err(to_status)?),
        };
        Ok(Page {
            records: response.records,
            next,
            millis_behind_latest: response.millis_behind_latest,
            child_shards: response.child_shards,
        })
    }
}

/// Where a page was read.
pub enum Read {
    /// On this node, which leads the shard.
    Here(Page),
    /// By the shard's leader, whose answer is passed on as it came.
    There(proto::GetRecordsResponse),
}

impl Read {
    /// The page with its next position decoded, wherever it was read.
    pub fn into_page(self, ttl_millis: u64) -> Result<Page, Status> {
        match self {
            Read::Here(page) => Ok(page),
            Read::There(response) => Page::from_response(response, ttl_millis),
        }
    }
}

/// Who asks for a page, which decides where it may be read and what it costs.
#[derive(Debug, Clone, Copy)]
pub struct Reader {
    /// An enhanced fan-out read, with its own budget rather than the shard's.
    pub fan_out: bool,
    /// Forwarded by another node that found this one the leader: answered here
    /// or refused, never forwarded again.
    pub forwarded: bool,
}

impl DataService {
    /// Up to `limit` records of the shard at `iterator`'s position, read by the
    /// shard's leader: here if this node leads it, otherwise forwarded.
    pub async fn read_at(&self, iterator: &ShardIterator, limit: u32, reader: Reader) -> Result<Read, Status> {
        let node = self.node();
        // The metadata as it is now, shared; only a stream not (yet) known here
        // waits for it, as a lookup by name does.
        let meta = node.meta_snapshot();
        let waited;
        let stream = match meta.stream(&iterator.stream_name) {
            Ok(stream) => stream,
            Err(_) => {
                waited = node.stream(&iterator.stream_name).await.map_err(to_status)?;
                &waited
            }
        };
        if stream.created_millis != iterator.stream_created_millis {
            return Err(to_status(ShoalError::not_found(format!(
                "Stream {} was deleted and re-created after this iterator was issued.",
                iterator.stream_name
            ))));
        }
        let shard = stream
            .shard(ShardId(iterator.shard_index))
            .ok_or_else(|| to_status(ShoalError::invalid_argument("Invalid ShardIterator.")))?;
        match locate(node, shard, LEADER_WAIT).await.map_err(to_status)? {
            ShardLeader::Local(handle) => {
                let slot = handle.shard(shard.store()).map_err(to_status)?;
                // Enhanced fan-out reads have their own budget, not the shard's five calls.
                if !reader.fan_out && !slot.throttle.admit_read() {
                    metrics::counter!("shoal_read_throttled_calls_total").increment(1);
                    let labels = [("stream", stream.name.clone()), ("shard", shard.id.to_string())];
                    metrics::counter!("shoal_shard_read_throughput_exceeded_total", &labels).increment(1);
                    return Err(to_status(ShoalError::new(
                        ErrorCode::ProvisionedThroughputExceeded,
                        format!("Rate exceeded for {} of stream {}: more than its read limit.", shard.id, stream.name),
                    )));
                }
                let started = std::time::Instant::now();
                let page = self.read_local(iterator, limit, shard, stream, &slot.metrics).map_err(to_status)?;
                metrics::histogram!("shoal_get_records_seconds").record(started.elapsed().as_secs_f64());
                if !reader.fan_out {
                    slot.throttle.charge_read(page.records.iter().map(|r| r.data.len() + r.partition_key.len()).sum());
                }
                Ok(Read::Here(page))
            }
            ShardLeader::Remote { .. } if reader.forwarded => {
                Err(to_status(ShoalError::unavailable("shard leadership is moving; retry")))
            }
            ShardLeader::Remote { addr, .. } => {
                let mut peer = self.peer_records(&addr).map_err(to_status)?;
                let mut call = forwarded(proto::GetRecordsRequest { shard_iterator: iterator.encode(), limit });
                if reader.fan_out {
                    call.metadata_mut().insert(FAN_OUT_HEADER, tonic::metadata::MetadataValue::from_static("1"));
                }
                let response = peer.get_records(call).await.map_err(|s| to_status(from_status(&s)))?;
                Ok(Read::There(response.into_inner()))
            }
        }
    }

    /// Reads the page at `iterator` from this node's replica of `shard`.
    fn read_local(
        &self,
        iterator: &ShardIterator,
        limit: u32,
        shard: &Shard,
        stream: &Stream,
        series: &ShardMetrics,
    ) -> ShoalResult<Page> {
        let node = self.node();
        let shard_state::RecordsPage { records: read, more_follow } =
            shard_state::read_page(&node.db, shard.store(), iterator.position, limit as usize, MAX_GET_RECORDS_BYTES)
                .map_err(|e| ShoalError::internal(format!("reading {}: {e}", shard.id)))?;
        let next_position = read.last().map(|r| r.position.next()).unwrap_or(iterator.position);
        // Behind by the age of the last record returned, if anything follows it.
        let millis_behind_latest = match read.last() {
            Some(last) if more_follow => now_millis().saturating_sub(last.record.arrival_millis).max(1),
            _ => 0,
        };
        // Records past retention are gone for readers at once, even before the
        // retention pass removes them (a decreased retention acts immediately).
        let cutoff = node.config.retention_cutoff(stream.retention_hours, now_millis());
        let shard_ended = read.is_empty();
        metrics::counter!("shoal_records_read_total").increment(read.len() as u64);
        series.outgoing_records.increment(read.len() as u64);
        series
            .outgoing_bytes
            .increment(read.iter().map(|r| (r.record.data.len() + r.record.partition_key.len()) as u64).sum());
        series.iterator_age_millis.set(millis_behind_latest as f64);
        let records: Vec<proto::StoredRecordEntry> = read
            .into_iter()
            .filter(|r| r.record.arrival_millis >= cutoff)
            .map(|r| proto::StoredRecordEntry {
                sequence_number: stream.sequence_number(shard.id, r.position).to_string(),
                approximate_arrival_timestamp_millis: r.record.arrival_millis,
                data: r.record.data,
                partition_key: r.record.partition_key,
            })
            .collect();
        // A closed shard read to its end: no next iterator, but its children.
        if shard.closed_at.is_some() && shard_ended {
            let child_shards = stream
                .shards
                .iter()
                .filter(|c| c.parent == Some(shard.id) || c.adjacent_parent == Some(shard.id))
                .map(|c| proto::ChildShard {
                    shard_id: c.id.to_string(),
                    parent_shards: c.parent.iter().chain(c.adjacent_parent.iter()).map(|p| p.to_string()).collect(),
                    starting_hash_key: c.hash_key_range.start.to_string(),
                    ending_hash_key: c.hash_key_range.end.to_string(),
                })
                .collect();
            return Ok(Page { records, next: None, millis_behind_latest: 0, child_shards });
        }
        let next = ShardIterator { position: next_position, issued_at_millis: now_millis(), ..iterator.clone() };
        Ok(Page { records, next: Some(next), millis_behind_latest, child_shards: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use shoal_types::RecordPosition;

    use super::*;

    fn page(next: Option<ShardIterator>) -> Page {
        Page { records: Vec::new(), next, millis_behind_latest: 7, child_shards: Vec::new() }
    }

    #[test]
    fn a_page_keeps_its_next_position_through_a_response_and_back() {
        let next = ShardIterator {
            stream_name: "orders".into(),
            stream_created_millis: 11,
            shard_index: 3,
            position: RecordPosition { log_index: 42, offset: 5 },
            issued_at_millis: now_millis(),
        };
        let response = page(Some(next.clone())).into_response();
        assert_eq!(ShardIterator::decode(&response.next_shard_iterator, now_millis()).unwrap(), next);
        let back = Page::from_response(response, 300_000).unwrap();
        assert_eq!(back.next, Some(next));
        assert_eq!(back.millis_behind_latest, 7);
    }

    #[test]
    fn a_shard_read_to_its_end_has_no_next_iterator_either_way() {
        let response = page(None).into_response();
        assert!(response.next_shard_iterator.is_empty());
        assert_eq!(Page::from_response(response, 300_000).unwrap().next, None);
    }

    #[test]
    fn a_garbled_next_iterator_from_a_peer_is_an_error_not_a_panic() {
        let response =
            proto::GetRecordsResponse { next_shard_iterator: "not-an-iterator".into(), ..Default::default() };
        assert_eq!(Page::from_response(response, 300_000).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
