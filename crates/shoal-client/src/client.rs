//! [`ShoalClient`]: Kinesis-shaped calls over Shoal's gRPC API.

use std::future::Future;
use std::time::{Duration, Instant};

use shoal_proto::v1 as proto;
use shoal_proto::v1::cluster_client::ClusterClient;
use shoal_proto::v1::consumer_groups_client::ConsumerGroupsClient;
use shoal_proto::v1::firehose_client::FirehoseClient;
use shoal_proto::v1::records_client::RecordsClient;
use shoal_proto::v1::stream_control_client::StreamControlClient;
use shoal_tls::Dialer;
use shoal_types::{ShoalError, ShoalResult};
use tonic::transport::Channel;

use crate::status::from_status;

pub use proto::RecordEntry as Record;
pub use proto::StoredRecordEntry as StoredRecord;

/// Calls a tonic client method on a clone of the client, so the future owns it.
macro_rules! call {
    ($client:expr, $method:ident, $request:expr) => {{
        let mut client = $client.clone();
        let request = $request.clone();
        async move { client.$method(request).await }
    }};
}

const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A connection to any node of a Shoal cluster. Cheap to clone.
#[derive(Clone)]
pub struct ShoalClient {
    streams: StreamControlClient<Channel>,
    records: RecordsClient<Channel>,
    cluster: ClusterClient<Channel>,
    groups: ConsumerGroupsClient<Channel>,
    firehose: FirehoseClient<Channel>,
    /// How long calls answered with `Unavailable` are retried.
    retry_for: Duration,
}

impl ShoalClient {
    /// Connects to `addr` (`host:port` or `http://host:port`) without TLS.
    pub async fn connect(addr: &str) -> ShoalResult<ShoalClient> {
        Self::connect_with(addr, &Dialer::plain()).await
    }

    /// Connects to `addr` as `dialer` says: plain, or TLS trusting the cluster's CA
    /// (presenting a client certificate where the cluster requires one).
    pub async fn connect_with(addr: &str, dialer: &Dialer) -> ShoalResult<ShoalClient> {
        let endpoint = dialer
            .endpoint(addr)
            .map_err(|e| ShoalError::invalid_argument(e.to_string()))?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true);
        let channel =
            endpoint.connect().await.map_err(|e| ShoalError::unavailable(format!("cannot connect to {addr}: {e}")))?;
        Ok(Self::from_channel(channel))
    }

    /// A client over an existing channel; connects lazily.
    pub fn from_channel(channel: Channel) -> ShoalClient {
        ShoalClient {
            streams: StreamControlClient::new(channel.clone()),
            records: RecordsClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            cluster: ClusterClient::new(channel.clone()),
            groups: ConsumerGroupsClient::new(channel.clone()),
            firehose: FirehoseClient::new(channel).max_encoding_message_size(MAX_MESSAGE_BYTES),
            retry_for: Duration::from_secs(10),
        }
    }

    /// Sets how long calls are retried while the cluster answers `Unavailable`.
    pub fn with_retry_for(mut self, retry_for: Duration) -> ShoalClient {
        self.retry_for = retry_for;
        self
    }

    async fn retry<T, F, Fut>(&self, mut call: F) -> ShoalResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(20);
        loop {
            match call().await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) => {
                    let error = from_status(&status);
                    // Unavailable (an election) and throttling both pass with time.
                    if !error.code.is_retryable() || Instant::now() >= deadline {
                        return Err(error);
                    }
                    tracing::debug!(message = %error.message, "cluster unavailable, retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
    }

    /// Every Firehose delivery stream with its stored destination (for delivery workers).
    pub async fn list_delivery_streams(&self) -> ShoalResult<Vec<proto::DeliveryStreamRecord>> {
        let request = proto::ListDeliveryStreamsRequest {};
        self.retry(|| call!(self.firehose, list_delivery_streams, request)).await.map(|r| r.delivery_streams)
    }

    /// Creates a delivery stream from the AWS `CreateDeliveryStream` input (JSON).
    pub async fn create_delivery_stream(&self, request_json: &str) -> ShoalResult<()> {
        let request = proto::CreateDeliveryStreamRequest { request_json: request_json.into() };
        self.retry(|| call!(self.firehose, create_delivery_stream, request)).await.map(|_| ())
    }

    pub async fn delete_delivery_stream(&self, name: &str) -> ShoalResult<()> {
        let request = proto::DeleteDeliveryStreamRequest { delivery_stream_name: name.into() };
        self.retry(|| call!(self.firehose, delete_delivery_stream, request)).await.map(|_| ())
    }

    /// Puts up to 500 records into a DirectPut delivery stream.
    pub async fn put_record_batch(
        &self,
        name: &str,
        records: Vec<Vec<u8>>,
    ) -> ShoalResult<proto::PutRecordBatchResponse> {
        let request = proto::PutRecordBatchRequest { delivery_stream_name: name.into(), records };
        self.retry(|| call!(self.firehose, put_record_batch, request)).await
    }

    pub async fn create_stream(&self, name: &str, shard_count: u32) -> ShoalResult<()> {
        let request = proto::CreateStreamRequest {
            stream_name: name.into(),
            shard_count,
            retention_hours: 0,
            stream_mode: String::new(),
        };
        self.retry(|| call!(self.streams, create_stream, request)).await.map(|_| ())
    }

    /// Waits until the stream is ACTIVE and returns its description.
    pub async fn wait_for_active(&self, name: &str, timeout: Duration) -> ShoalResult<proto::StreamDescription> {
        let deadline = Instant::now() + timeout;
        loop {
            let description = self.describe_stream(name).await?;
            let status = description.summary.as_ref().map(|s| s.stream_status.as_str()).unwrap_or_default();
            if status == "ACTIVE" {
                return Ok(description);
            }
            if Instant::now() >= deadline {
                return Err(ShoalError::unavailable(format!("stream {name} is still {status} after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn delete_stream(&self, name: &str) -> ShoalResult<()> {
        let request = proto::DeleteStreamRequest { stream_name: name.into() };
        self.retry(|| call!(self.streams, delete_stream, request)).await.map(|_| ())
    }

    /// Describes a stream with all of its shards (following pages).
    pub async fn describe_stream(&self, name: &str) -> ShoalResult<proto::StreamDescription> {
        let mut request = proto::DescribeStreamRequest {
            stream_name: name.into(),
            limit: 0,
            exclusive_start_shard_id: String::new(),
        };
        let mut all: Option<proto::StreamDescription> = None;
        loop {
            let page = self.retry(|| call!(self.streams, describe_stream, request)).await?;
            let page = page.stream.ok_or_else(|| ShoalError::internal("DescribeStream returned no stream"))?;
            let more = page.has_more_shards;
            let last = page.shards.last().map(|s| s.shard_id.clone());
            match &mut all {
                None => all = Some(page),
                Some(all) => {
                    all.shards.extend(page.shards);
                    all.summary = page.summary;
                }
            }
            match (more, last) {
                (true, Some(last)) => request.exclusive_start_shard_id = last,
                _ => break,
            }
        }
        let mut all = all.ok_or_else(|| ShoalError::internal("DescribeStream returned nothing"))?;
        all.has_more_shards = false;
        Ok(all)
    }

    pub async fn describe_stream_summary(&self, name: &str) -> ShoalResult<proto::StreamSummary> {
        let request = proto::DescribeStreamSummaryRequest { stream_name: name.into() };
        let response = self.retry(|| call!(self.streams, describe_stream_summary, request)).await?;
        response.summary.ok_or_else(|| ShoalError::internal("DescribeStreamSummary returned nothing"))
    }

    /// Every stream (following pages).
    pub async fn list_streams(&self) -> ShoalResult<Vec<proto::StreamSummary>> {
        let mut request = proto::ListStreamsRequest { limit: 0, exclusive_start_stream_name: String::new() };
        let mut all = Vec::new();
        loop {
            let page = self.retry(|| call!(self.streams, list_streams, request)).await?;
            let more = page.has_more_streams;
            all.extend(page.streams);
            match (more, all.last()) {
                (true, Some(last)) => request.exclusive_start_stream_name = last.stream_name.clone(),
                _ => return Ok(all),
            }
        }
    }

    pub async fn list_shards(&self, name: &str) -> ShoalResult<Vec<proto::ShardDescription>> {
        let mut request = proto::ListShardsRequest {
            stream_name: name.into(),
            max_results: 0,
            exclusive_start_shard_id: String::new(),
        };
        let mut all = Vec::new();
        loop {
            let page = self.retry(|| call!(self.streams, list_shards, request)).await?;
            let more = page.has_more_shards;
            all.extend(page.shards);
            match (more, all.last()) {
                (true, Some(last)) => request.exclusive_start_shard_id = last.shard_id.clone(),
                _ => return Ok(all),
            }
        }
    }

    pub async fn put_record(
        &self,
        stream: &str,
        partition_key: &str,
        data: Vec<u8>,
    ) -> ShoalResult<proto::PutRecordResponse> {
        let request = proto::PutRecordRequest {
            stream_name: stream.into(),
            record: Some(Record { data: data.into(), partition_key: partition_key.into(), explicit_hash_key: None }),
        };
        self.retry(|| call!(self.records, put_record, request)).await
    }

    pub async fn put_records(&self, stream: &str, records: Vec<Record>) -> ShoalResult<proto::PutRecordsResponse> {
        let request = proto::PutRecordsRequest { stream_name: stream.into(), records };
        self.retry(|| call!(self.records, put_records, request)).await
    }

    pub async fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        iterator_type: &str,
        starting_sequence_number: Option<&str>,
        timestamp_millis: Option<u64>,
    ) -> ShoalResult<String> {
        let request = proto::GetShardIteratorRequest {
            stream_name: stream.into(),
            shard_id: shard_id.into(),
            shard_iterator_type: iterator_type.into(),
            starting_sequence_number: starting_sequence_number.unwrap_or_default().into(),
            timestamp_millis,
        };
        self.retry(|| call!(self.records, get_shard_iterator, request)).await.map(|r| r.shard_iterator)
    }

    pub async fn get_records(&self, shard_iterator: &str, limit: u32) -> ShoalResult<proto::GetRecordsResponse> {
        let request = proto::GetRecordsRequest { shard_iterator: shard_iterator.into(), limit };
        self.retry(|| call!(self.records, get_records, request)).await
    }

    /// Subscribes to a shard: its records are pushed as they are committed (see
    /// `SubscribeToShard` in records.proto). `position` is an iterator type.
    pub async fn subscribe_to_shard(
        &self,
        stream: &str,
        shard_id: &str,
        position: &str,
        starting_sequence_number: Option<&str>,
    ) -> ShoalResult<tonic::Streaming<proto::SubscribeToShardEvent>> {
        let request = proto::SubscribeToShardRequest {
            stream_name: stream.into(),
            shard_id: shard_id.into(),
            starting_position: position.into(),
            starting_sequence_number: starting_sequence_number.unwrap_or_default().into(),
            timestamp_millis: None,
        };
        self.retry(|| call!(self.records, subscribe_to_shard, request)).await
    }

    /// Reads one shard from TRIM_HORIZON to its current end.
    pub async fn read_shard(&self, stream: &str, shard_id: &str) -> ShoalResult<Vec<StoredRecord>> {
        let mut iterator = self.get_shard_iterator(stream, shard_id, "TRIM_HORIZON", None, None).await?;
        let mut records = Vec::new();
        loop {
            let page = self.get_records(&iterator, 10_000).await?;
            let caught_up = page.records.is_empty() && page.millis_behind_latest == 0;
            records.extend(page.records);
            if caught_up || page.next_shard_iterator.is_empty() {
                return Ok(records);
            }
            iterator = page.next_shard_iterator;
        }
    }

    /// Joins `member` to `application`'s consumer group on `stream`; returns its leases.
    pub async fn join_group(
        &self,
        stream: &str,
        application: &str,
        member: &str,
        lease_timeout: Duration,
    ) -> ShoalResult<proto::GroupAssignment> {
        let request = proto::JoinGroupRequest {
            group: Some(group_ref(stream, application)),
            member: member.into(),
            lease_timeout_millis: lease_timeout.as_millis() as u64,
        };
        self.retry(|| call!(self.groups, join_group, request)).await
    }

    /// Renews `member`'s leases; returns the leases it holds now.
    pub async fn group_heartbeat(
        &self,
        stream: &str,
        application: &str,
        member: &str,
    ) -> ShoalResult<proto::GroupAssignment> {
        let request = proto::HeartbeatRequest { group: Some(group_ref(stream, application)), member: member.into() };
        self.retry(|| call!(self.groups, heartbeat, request)).await
    }

    pub async fn leave_group(&self, stream: &str, application: &str, member: &str) -> ShoalResult<()> {
        let request = proto::LeaveGroupRequest { group: Some(group_ref(stream, application)), member: member.into() };
        self.retry(|| call!(self.groups, leave_group, request)).await.map(|_| ())
    }

    /// Records `member`'s progress on a shard it holds under lease `epoch`;
    /// refused with `ResourceInUse` once the lease is gone.
    pub async fn checkpoint(&self, request: proto::CheckpointRequest) -> ShoalResult<()> {
        self.retry(|| call!(self.groups, checkpoint, request)).await.map(|_| ())
    }

    pub async fn describe_group(&self, stream: &str, application: &str) -> ShoalResult<proto::DescribeGroupResponse> {
        let request = proto::DescribeGroupRequest { group: Some(group_ref(stream, application)) };
        self.retry(|| call!(self.groups, describe_group, request)).await
    }

    /// How many records, and how long the oldest of them has waited (ms), `shard_id` holds after the
    /// checkpoint `after` (empty: from the start), counting at most `cap` records.
    pub async fn lag_after(&self, stream: &str, shard_id: &str, after: &str, cap: usize) -> ShoalResult<(u64, u64)> {
        let mut iterator = if after.is_empty() {
            self.get_shard_iterator(stream, shard_id, "TRIM_HORIZON", None, None).await?
        } else {
            self.get_shard_iterator(stream, shard_id, "AFTER_SEQUENCE_NUMBER", Some(after), None).await?
        };
        let (mut records, mut oldest) = (0u64, None);
        while (records as usize) < cap {
            let page = self.get_records(&iterator, 10_000).await?;
            if let Some(first) = page.records.first() {
                oldest.get_or_insert(first.approximate_arrival_timestamp_millis);
            }
            records += page.records.len() as u64;
            if page.records.is_empty() || page.next_shard_iterator.is_empty() {
                break;
            }
            iterator = page.next_shard_iterator;
        }
        // The oldest unprocessed record has waited this long.
        let millis = oldest.map(|arrival| shoal_types::now_millis().saturating_sub(arrival)).unwrap_or(0);
        Ok((records, millis))
    }

    /// Reads every shard of a stream to its current end: `(shard id, records)`.
    pub async fn read_stream(&self, stream: &str) -> ShoalResult<Vec<(String, Vec<StoredRecord>)>> {
        let mut out = Vec::new();
        for shard in self.list_shards(stream).await? {
            let records = self.read_shard(stream, &shard.shard_id).await?;
            out.push((shard.shard_id, records));
        }
        Ok(out)
    }

    /// Closes `shard_id` and opens two children split at `new_starting_hash_key`.
    pub async fn split_shard(&self, stream: &str, shard_id: &str, new_starting_hash_key: &str) -> ShoalResult<()> {
        let request = proto::SplitShardRequest {
            stream_name: stream.into(),
            shard_to_split: shard_id.into(),
            new_starting_hash_key: new_starting_hash_key.into(),
        };
        self.retry(|| call!(self.streams, split_shard, request)).await.map(|_| ())
    }

    /// Closes two adjacent shards and opens one child covering both.
    pub async fn merge_shards(&self, stream: &str, shard_id: &str, adjacent_shard_id: &str) -> ShoalResult<()> {
        let request = proto::MergeShardsRequest {
            stream_name: stream.into(),
            shard_to_merge: shard_id.into(),
            adjacent_shard_to_merge: adjacent_shard_id.into(),
        };
        self.retry(|| call!(self.streams, merge_shards, request)).await.map(|_| ())
    }

    /// Splits or merges shards until `target` are open; returns the count before.
    pub async fn update_shard_count(&self, stream: &str, target: u32) -> ShoalResult<u32> {
        let request = proto::UpdateShardCountRequest { stream_name: stream.into(), target_shard_count: target };
        self.retry(|| call!(self.streams, update_shard_count, request)).await.map(|r| r.current_shard_count)
    }

    /// Creates an ON_DEMAND stream: it starts with 4 shards and scales itself.
    pub async fn create_on_demand_stream(&self, name: &str) -> ShoalResult<()> {
        let request = proto::CreateStreamRequest {
            stream_name: name.into(),
            shard_count: 0,
            retention_hours: 0,
            stream_mode: "ON_DEMAND".into(),
        };
        self.retry(|| call!(self.streams, create_stream, request)).await.map(|_| ())
    }

    /// Switches a stream between `PROVISIONED` and `ON_DEMAND`.
    pub async fn update_stream_mode(&self, stream: &str, mode: &str) -> ShoalResult<()> {
        let request = proto::UpdateStreamModeRequest { stream_name: stream.into(), stream_mode: mode.into() };
        self.retry(|| call!(self.streams, update_stream_mode, request)).await.map(|_| ())
    }

    pub async fn cluster_status(&self) -> ShoalResult<proto::ClusterStatusResponse> {
        self.retry(|| call!(self.cluster, status, proto::ClusterStatusRequest {})).await
    }

    /// Adds a running node to the cluster; returns whether it votes in the metadata group.
    pub async fn add_node(&self, id: u64, addr: &str, zone: &str) -> ShoalResult<bool> {
        let request = proto::AddNodeRequest { node_id: id, addr: addr.into(), zone: zone.into() };
        self.retry(|| call!(self.cluster, add_node, request)).await.map(|r| r.voter)
    }

    /// Starts (or cancels) draining a node; returns the replicas it still holds.
    pub async fn drain_node(&self, id: u64, cancel: bool) -> ShoalResult<u32> {
        let request = proto::DrainNodeRequest { node_id: id, cancel };
        self.retry(|| call!(self.cluster, drain_node, request)).await.map(|r| r.replicas_left)
    }

    /// Drains a node, waits until it holds nothing, and removes it from the cluster.
    pub async fn remove_node(&self, id: u64, timeout: Duration) -> ShoalResult<()> {
        let request = proto::RemoveNodeRequest { node_id: id, timeout_secs: timeout.as_secs().max(1) as u32 };
        self.retry(|| call!(self.cluster, remove_node, request)).await.map(|_| ())
    }
}

fn group_ref(stream: &str, application: &str) -> proto::GroupRef {
    proto::GroupRef { stream_name: stream.into(), application: application.into() }
}
