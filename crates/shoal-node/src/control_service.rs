//! The gRPC `StreamControl` service: creating, deleting and describing streams.
//!
//! Changes are proposed to the metadata group from whichever node takes the call
//! (`meta_writer::propose` forwards them to the leader and rides out leader
//! changes). Reads are answered by the metadata leader: a node that is not the
//! leader passes the call on unchanged, so reads see every committed change.

use std::sync::Arc;
use std::time::Duration;

use shoal_client::status::to_status;
use shoal_proto::v1 as proto;
use shoal_proto::v1::stream_control_client::StreamControlClient;
use shoal_proto::v1::stream_control_server::StreamControl;
use shoal_raft::MetaCommand;
use shoal_raft::meta_state::stream_group_count;
use shoal_types::limits::*;
use shoal_types::validation::{validate_retention_hours, validate_shard_count, validate_stream_name};
use shoal_types::{Shard, ShardId, ShoalError, ShoalResult, Stream, StreamStatus, now_millis};
use tonic::{Request, Response, Status};

use crate::meta_writer;
use crate::node::Node;
use crate::peers::{forwarded, is_forwarded, relay};

pub struct ControlService {
    node: Arc<Node>,
}

/// Either this node answers (it leads the metadata group) or the leader does.
enum Answerer {
    Here,
    Leader(StreamControlClient<tonic::transport::Channel>),
}

pub fn shard_description(stream: &Stream, shard: &Shard) -> proto::ShardDescription {
    proto::ShardDescription {
        shard_id: shard.id.to_string(),
        parent_shard_id: shard.parent.map(|p| p.to_string()).unwrap_or_default(),
        adjacent_parent_shard_id: shard.adjacent_parent.map(|p| p.to_string()).unwrap_or_default(),
        starting_hash_key: shard.hash_key_range.start.to_string(),
        ending_hash_key: shard.hash_key_range.end.to_string(),
        starting_sequence_number: stream.starting_sequence_number(shard.id).to_string(),
        ending_sequence_number: shard
            .closed_at
            .map(|p| stream.sequence_number(shard.id, p).to_string())
            .unwrap_or_default(),
    }
}

pub fn stream_summary(stream: &Stream) -> proto::StreamSummary {
    proto::StreamSummary {
        stream_name: stream.name.clone(),
        stream_arn: stream.arn(DEFAULT_REGION, DEFAULT_ACCOUNT_ID),
        stream_status: stream.status.as_str().into(),
        retention_period_hours: stream.retention_hours,
        stream_creation_timestamp_millis: stream.created_millis,
        open_shard_count: stream.open_shards().count() as u32,
        stream_mode: stream.settings.mode.clone(),
    }
}

/// The page of shards after `exclusive_start` (a shard id), at most `limit`.
/// Closed shards whose records have all expired (closed before `expired_before`)
/// are not listed, as in Kinesis.
fn shard_page<'a>(
    stream: &'a Stream,
    exclusive_start: &str,
    limit: usize,
    expired_before: u64,
) -> ShoalResult<(Vec<&'a Shard>, bool)> {
    let after = if exclusive_start.is_empty() { None } else { Some(ShardId::parse(exclusive_start)?) };
    let mut shards: Vec<&Shard> =
        stream.shards.iter().filter(|s| after.is_none_or(|a| s.id > a) && !s.is_expired(expired_before)).collect();
    let has_more = shards.len() > limit;
    shards.truncate(limit);
    Ok((shards, has_more))
}

fn invalid_stream_mode(mode: &str) -> ShoalError {
    ShoalError::new(
        shoal_types::ErrorCode::Validation,
        format!("StreamMode {mode} is invalid: it must be PROVISIONED or ON_DEMAND."),
    )
}

fn page_limit(requested: u32, default: u32, max: u32, name: &str) -> ShoalResult<usize> {
    match requested {
        0 => Ok(default as usize),
        n if n > max => {
            Err(ShoalError::invalid_argument(format!("{name} {n} is invalid: it must be between 1 and {max}.")))
        }
        n => Ok(n as usize),
    }
}

impl ControlService {
    pub fn new(node: Arc<Node>) -> Self {
        ControlService { node }
    }

    async fn answerer<T>(&self, request: &Request<T>) -> Result<Answerer, Status> {
        match self.node.wait_for_meta_leader(Duration::from_secs(5)).await.map_err(to_status)? {
            None => Ok(Answerer::Here),
            Some(_) if is_forwarded(request) => {
                Err(to_status(ShoalError::unavailable("metadata leadership is moving; retry")))
            }
            Some((_, addr)) => {
                Ok(Answerer::Leader(StreamControlClient::new(self.node.peers.channel(&addr).map_err(to_status)?)))
            }
        }
    }

    /// Closed shards that closed before this time hold only expired records.
    fn expired_before(&self, stream: &Stream) -> u64 {
        self.node.config.retention_cutoff(stream.retention_hours, now_millis())
    }

    fn stream(&self, name: &str) -> ShoalResult<Stream> {
        self.node.meta_snapshot().stream(name).cloned()
    }
}

#[tonic::async_trait]
impl StreamControl for ControlService {
    async fn create_stream(
        &self,
        request: Request<proto::CreateStreamRequest>,
    ) -> Result<Response<proto::CreateStreamResponse>, Status> {
        let mut message = request.get_ref().clone();
        validate_stream_name(&message.stream_name).map_err(to_status)?;
        let on_demand = match message.stream_mode.as_str() {
            "" | "PROVISIONED" => false,
            "ON_DEMAND" => true,
            other => return Err(to_status(invalid_stream_mode(other))),
        };
        if on_demand && message.shard_count == 0 {
            message.shard_count = ON_DEMAND_INITIAL_SHARDS;
        }
        validate_shard_count(message.shard_count).map_err(to_status)?;
        let retention_hours =
            if message.retention_hours == 0 { DEFAULT_RETENTION_HOURS } else { message.retention_hours };
        validate_retention_hours(retention_hours).map_err(to_status)?;
        let command = match self.node.config.shards_per_group {
            0 | 1 => MetaCommand::CreateStream {
                name: message.stream_name.clone(),
                shard_count: message.shard_count,
                retention_hours,
                now_millis: now_millis(),
            },
            shards_per_group => MetaCommand::CreateStreamInGroups {
                name: message.stream_name.clone(),
                shard_count: message.shard_count,
                retention_hours,
                now_millis: now_millis(),
                group_count: stream_group_count(message.shard_count, shards_per_group),
            },
        };
        meta_writer::propose(&self.node, command).await.map_err(to_status)?;
        if on_demand {
            let command = MetaCommand::SetStreamMode { name: message.stream_name.clone(), mode: "ON_DEMAND".into() };
            meta_writer::propose(&self.node, command).await.map_err(to_status)?;
        }
        tracing::info!(stream = %message.stream_name, shards = message.shard_count, on_demand, "stream created");
        Ok(Response::new(proto::CreateStreamResponse {}))
    }

    async fn delete_stream(
        &self,
        request: Request<proto::DeleteStreamRequest>,
    ) -> Result<Response<proto::DeleteStreamResponse>, Status> {
        let message = request.get_ref().clone();
        validate_stream_name(&message.stream_name).map_err(to_status)?;
        meta_writer::propose(&self.node, MetaCommand::MarkStreamDeleting { name: message.stream_name.clone() })
            .await
            .map_err(to_status)?;
        tracing::info!(stream = %message.stream_name, "stream deleting");
        Ok(Response::new(proto::DeleteStreamResponse {}))
    }

    async fn describe_stream(
        &self,
        request: Request<proto::DescribeStreamRequest>,
    ) -> Result<Response<proto::DescribeStreamResponse>, Status> {
        let message = request.get_ref().clone();
        validate_stream_name(&message.stream_name).map_err(to_status)?;
        if let Answerer::Leader(mut leader) = self.answerer(&request).await? {
            return relay(leader.describe_stream(forwarded(message)).await);
        }
        let limit = page_limit(message.limit, MAX_DESCRIBE_STREAM_LIMIT, MAX_DESCRIBE_STREAM_LIMIT, "Limit")
            .map_err(to_status)?;
        let stream = self.stream(&message.stream_name).map_err(to_status)?;
        let (shards, has_more_shards) =
            shard_page(&stream, &message.exclusive_start_shard_id, limit, self.expired_before(&stream))
                .map_err(to_status)?;
        Ok(Response::new(proto::DescribeStreamResponse {
            stream: Some(proto::StreamDescription {
                summary: Some(stream_summary(&stream)),
                shards: shards.into_iter().map(|s| shard_description(&stream, s)).collect(),
                has_more_shards,
            }),
        }))
    }

    async fn describe_stream_summary(
        &self,
        request: Request<proto::DescribeStreamSummaryRequest>,
    ) -> Result<Response<proto::DescribeStreamSummaryResponse>, Status> {
        let message = request.get_ref().clone();
        validate_stream_name(&message.stream_name).map_err(to_status)?;
        if let Answerer::Leader(mut leader) = self.answerer(&request).await? {
            return relay(leader.describe_stream_summary(forwarded(message)).await);
        }
        let stream = self.stream(&message.stream_name).map_err(to_status)?;
        Ok(Response::new(proto::DescribeStreamSummaryResponse { summary: Some(stream_summary(&stream)) }))
    }

    async fn list_streams(
        &self,
        request: Request<proto::ListStreamsRequest>,
    ) -> Result<Response<proto::ListStreamsResponse>, Status> {
        let message = request.get_ref().clone();
        if let Answerer::Leader(mut leader) = self.answerer(&request).await? {
            return relay(leader.list_streams(forwarded(message)).await);
        }
        let limit = page_limit(message.limit, DEFAULT_LIST_STREAMS_LIMIT, MAX_LIST_STREAMS_LIMIT, "Limit")
            .map_err(to_status)?;
        let meta = self.node.meta_snapshot();
        let start = message.exclusive_start_stream_name;
        let mut streams: Vec<&Stream> =
            meta.streams.values().map(|s| &**s).filter(|s| start.is_empty() || s.name > start).collect();
        let has_more_streams = streams.len() > limit;
        streams.truncate(limit);
        Ok(Response::new(proto::ListStreamsResponse {
            streams: streams.into_iter().map(stream_summary).collect(),
            has_more_streams,
        }))
    }

    async fn list_shards(
        &self,
        request: Request<proto::ListShardsRequest>,
    ) -> Result<Response<proto::ListShardsResponse>, Status> {
        let message = request.get_ref().clone();
        validate_stream_name(&message.stream_name).map_err(to_status)?;
        if let Answerer::Leader(mut leader) = self.answerer(&request).await? {
            return relay(leader.list_shards(forwarded(message)).await);
        }
        let limit = page_limit(message.max_results, DEFAULT_LIST_SHARDS_RESULTS, MAX_LIST_SHARDS_RESULTS, "MaxResults")
            .map_err(to_status)?;
        let stream = self.stream(&message.stream_name).map_err(to_status)?;
        if stream.status == StreamStatus::Deleting {
            return Err(to_status(ShoalError::stream_not_found(&stream.name)));
        }
        let (shards, has_more_shards) =
            shard_page(&stream, &message.exclusive_start_shard_id, limit, self.expired_before(&stream))
                .map_err(to_status)?;
        Ok(Response::new(proto::ListShardsResponse {
            shards: shards.into_iter().map(|s| shard_description(&stream, s)).collect(),
            has_more_shards,
        }))
    }

    async fn split_shard(
        &self,
        request: Request<proto::SplitShardRequest>,
    ) -> Result<Response<proto::SplitShardResponse>, Status> {
        let message = request.into_inner();
        validate_stream_name(&message.stream_name).map_err(to_status)?;
        crate::resharding::split_shard(
            &self.node,
            &message.stream_name,
            &message.shard_to_split,
            &message.new_starting_hash_key,
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(proto::SplitShardResponse {}))
    }

    async fn merge_shards(
        &self,
        request: Request<proto::MergeShardsRequest>,
    ) -> Result<Response<proto::MergeShardsResponse>, Status> {
        let message = request.into_inner();
        validate_stream_name(&message.stream_name).map_err(to_status)?;
        crate::resharding::merge_shards(
            &self.node,
            &message.stream_name,
            &message.shard_to_merge,
            &message.adjacent_shard_to_merge,
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(proto::MergeShardsResponse {}))
    }

    async fn update_shard_count(
        &self,
        request: Request<proto::UpdateShardCountRequest>,
    ) -> Result<Response<proto::UpdateShardCountResponse>, Status> {
        let message = request.into_inner();
        validate_stream_name(&message.stream_name).map_err(to_status)?;
        let current =
            crate::resharding::update_shard_count(&self.node, &message.stream_name, message.target_shard_count)
                .await
                .map_err(to_status)?;
        Ok(Response::new(proto::UpdateShardCountResponse {
            current_shard_count: current,
            target_shard_count: message.target_shard_count,
        }))
    }

    async fn update_stream_mode(
        &self,
        request: Request<proto::UpdateStreamModeRequest>,
    ) -> Result<Response<proto::UpdateStreamModeResponse>, Status> {
        let message = request.into_inner();
        validate_stream_name(&message.stream_name).map_err(to_status)?;
        if message.stream_mode != "PROVISIONED" && message.stream_mode != "ON_DEMAND" {
            return Err(to_status(invalid_stream_mode(&message.stream_mode)));
        }
        let command =
            MetaCommand::SetStreamMode { name: message.stream_name.clone(), mode: message.stream_mode.clone() };
        meta_writer::propose(&self.node, command).await.map_err(to_status)?;
        tracing::info!(stream = %message.stream_name, mode = %message.stream_mode, "stream mode changed");
        Ok(Response::new(proto::UpdateStreamModeResponse {}))
    }
}
