//! Stream operations: create, delete, describe, list.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_proto::v1 as proto;
use shoal_proto::v1::stream_control_server::StreamControl;
use shoal_raft::MetaCommand;
use tonic::Request;

use super::{KinesisApi, shapes, stream_name};
use crate::error::AwsError;
use crate::request::AwsRequest;

use shoal_types::limits::ON_DEMAND_INITIAL_SHARDS;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamModeDetails {
    stream_mode: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateStreamInput {
    stream_name: String,
    shard_count: Option<u32>,
    stream_mode_details: Option<StreamModeDetails>,
}

pub async fn create_stream(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: CreateStreamInput = request.input()?;
    let on_demand = input.stream_mode_details.as_ref().is_some_and(|m| m.stream_mode == "ON_DEMAND");
    let shard_count = match (input.shard_count, on_demand) {
        (Some(count), _) => count,
        (None, true) => ON_DEMAND_INITIAL_SHARDS,
        (None, false) => return Err(AwsError::invalid_argument("ShardCount is required for PROVISIONED streams.")),
    };
    if let Some(mode) = &input.stream_mode_details
        && mode.stream_mode != "ON_DEMAND"
        && mode.stream_mode != "PROVISIONED"
    {
        return Err(AwsError::validation(format!("Invalid StreamMode {}.", mode.stream_mode)));
    }
    let stream_name = stream_name(&request.scope, Some(input.stream_name), None)?;
    let stream_mode = if on_demand { "ON_DEMAND" } else { "PROVISIONED" };
    let message =
        proto::CreateStreamRequest { stream_name, shard_count, retention_hours: 0, stream_mode: stream_mode.into() };
    api.control.create_stream(Request::new(message)).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(default)]
    enforce_consumer_deletion: bool,
}

pub async fn delete_stream(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: DeleteStreamInput = request.input()?;
    let stream_name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    if !input.enforce_consumer_deletion
        && let Ok(stream) = api.stream(&stream_name)
        && !stream.consumers.is_empty()
    {
        return Err(shoal_types::ShoalError::in_use(format!(
            "Stream {stream_name} has {} registered consumers; deregister them or set EnforceConsumerDeletion.",
            stream.consumers.len()
        ))
        .into());
    }
    api.control.delete_stream(Request::new(proto::DeleteStreamRequest { stream_name })).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    limit: Option<u32>,
    exclusive_start_shard_id: Option<String>,
}

pub async fn describe_stream(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: DescribeStreamInput = request.input()?;
    if input.limit == Some(0) {
        return Err(AwsError::validation("Limit must be between 1 and 100."));
    }
    let message = proto::DescribeStreamRequest {
        stream_name: stream_name(&request.scope, input.stream_name, input.stream_arn)?,
        limit: input.limit.unwrap_or(0),
        exclusive_start_shard_id: input.exclusive_start_shard_id.unwrap_or_default(),
    };
    let response = api.control.describe_stream(Request::new(message)).await?.into_inner();
    let description = response.stream.unwrap_or_default();
    let mut shape = shapes::stream_description(&request.scope, &description);
    let name = description.summary.as_ref().map(|s| s.stream_name.clone()).unwrap_or_default();
    shapes::apply_settings(&mut shape, api.stream(&name).ok().as_ref());
    Ok(json!({ "StreamDescription": shape }))
}

pub async fn describe_stream_summary(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: StreamRef = request.input()?;
    let message = proto::DescribeStreamSummaryRequest {
        stream_name: stream_name(&request.scope, input.stream_name, input.stream_arn)?,
    };
    let summary =
        api.control.describe_stream_summary(Request::new(message)).await?.into_inner().summary.unwrap_or_default();
    let mut shape = shapes::stream_description_summary(&request.scope, &summary);
    shapes::apply_settings(&mut shape, api.stream(&summary.stream_name).ok().as_ref());
    Ok(json!({ "StreamDescriptionSummary": shape }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListStreamsInput {
    limit: Option<u32>,
    exclusive_start_stream_name: Option<String>,
    next_token: Option<String>,
}

pub async fn list_streams(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: ListStreamsInput = request.input()?;
    if input.limit == Some(0) {
        return Err(AwsError::validation("Limit must be between 1 and 10000."));
    }
    let start = match (input.next_token, input.exclusive_start_stream_name) {
        (Some(token), _) => decode_token(&token, "stream")?,
        (None, name) => name.unwrap_or_default(),
    };
    let limit = input.limit.unwrap_or(100) as usize;
    // Streams are per account and region: page through the caller's own.
    let mut mine: Vec<proto::StreamSummary> = Vec::new();
    let mut after = String::new();
    loop {
        let message = proto::ListStreamsRequest { limit: 10_000, exclusive_start_stream_name: after.clone() };
        let page = api.control.list_streams(Request::new(message)).await?.into_inner();
        after = page.streams.last().map(|s| s.stream_name.clone()).unwrap_or_default();
        mine.extend(page.streams.into_iter().filter(|s| request.scope.owns(&s.stream_name)));
        if !page.has_more_streams {
            break;
        }
    }
    mine.sort_by(|a, b| request.scope.external(&a.stream_name).cmp(request.scope.external(&b.stream_name)));
    let after_start: Vec<&proto::StreamSummary> =
        mine.iter().filter(|s| start.is_empty() || request.scope.external(&s.stream_name) > start.as_str()).collect();
    let has_more = after_start.len() > limit;
    let page: Vec<&proto::StreamSummary> = after_start.into_iter().take(limit).collect();
    let names: Vec<&str> = page.iter().map(|s| request.scope.external(&s.stream_name)).collect();
    let mut output = json!({
        "StreamNames": names,
        "HasMoreStreams": has_more,
        "StreamSummaries": page.iter().map(|s| shapes::stream_summary(&request.scope, s)).collect::<Vec<_>>(),
    });
    if has_more && let Some(last) = names.last() {
        output["NextToken"] = json!(encode_token("stream", last));
    }
    Ok(output)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListShardsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    next_token: Option<String>,
    exclusive_start_shard_id: Option<String>,
    max_results: Option<u32>,
    shard_filter: Option<ShardFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ShardFilter {
    #[serde(rename = "Type")]
    kind: String,
    shard_id: Option<String>,
}

pub async fn list_shards(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: ListShardsInput = request.input()?;
    if input.max_results == Some(0) {
        return Err(AwsError::validation("MaxResults must be between 1 and 10000."));
    }
    let (stream, start) = match input.next_token {
        Some(token) => {
            if input.stream_name.is_some() || input.stream_arn.is_some() {
                return Err(AwsError::invalid_argument("NextToken and StreamName cannot be provided together."));
            }
            let decoded = decode_token(&token, "shards")?;
            let (stream, shard) = decoded
                .rsplit_once('/')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| AwsError::invalid_argument("Invalid NextToken."))?;
            (stream, shard)
        }
        None => (
            stream_name(&request.scope, input.stream_name, input.stream_arn)?,
            input.exclusive_start_shard_id.unwrap_or_default(),
        ),
    };
    let message = proto::ListShardsRequest {
        stream_name: stream.clone(),
        max_results: input.max_results.unwrap_or(0),
        exclusive_start_shard_id: start,
    };
    let filter = input.shard_filter;
    let message = match &filter {
        Some(ShardFilter { kind, shard_id: Some(after) }) if kind == "AFTER_SHARD_ID" => {
            proto::ListShardsRequest { exclusive_start_shard_id: after.clone(), ..message }
        }
        _ => message,
    };
    let response = api.control.list_shards(Request::new(message)).await?.into_inner();
    let shards: Vec<&proto::ShardDescription> = match filter.as_ref().map(|f| f.kind.as_str()) {
        // Every shard Shoal keeps is within retention, so the trim-horizon and
        // timestamp filters keep them all; AT_LATEST keeps the open ones.
        None | Some("AFTER_SHARD_ID" | "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" | "AT_TIMESTAMP" | "FROM_TIMESTAMP") => {
            response.shards.iter().collect()
        }
        Some("AT_LATEST") => response.shards.iter().filter(|s| s.ending_sequence_number.is_empty()).collect(),
        Some(other) => return Err(AwsError::validation(format!("Invalid ShardFilter type {other}."))),
    };
    if let Some(ShardFilter { kind, shard_id: None }) = &filter
        && kind == "AFTER_SHARD_ID"
    {
        return Err(AwsError::invalid_argument("ShardFilter AFTER_SHARD_ID needs a ShardId."));
    }
    let mut output = json!({ "Shards": shards.into_iter().map(shapes::shard).collect::<Vec<_>>() });
    if response.has_more_shards
        && let Some(last) = response.shards.last()
    {
        output["NextToken"] = json!(encode_token("shards", &format!("{stream}/{}", last.shard_id)));
    }
    Ok(output)
}

/// Paging tokens: opaque to clients, `kind:value` in base64.
fn encode_token(kind: &str, value: &str) -> String {
    STANDARD.encode(format!("{kind}:{value}"))
}

fn decode_token(token: &str, kind: &str) -> Result<String, AwsError> {
    let invalid = || AwsError::invalid_argument(format!("Invalid NextToken {token:?}."));
    let bytes = STANDARD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix(&format!("{kind}:")).map(str::to_string).ok_or_else(invalid)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateStreamModeInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_mode_details: StreamModeDetails,
}

/// Records the capacity mode. On-demand scaling itself belongs to the resharding
/// work; until then the mode is stored and reported, not acted on.
pub async fn update_stream_mode(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: UpdateStreamModeInput = request.input()?;
    let name = stream_name(&request.scope, None, Some(input.stream_arn))?;
    api.change(MetaCommand::SetStreamMode { name, mode: input.stream_mode_details.stream_mode }).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WarmThroughputInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(rename = "WarmThroughputMiBps")]
    warm_throughput_mibps: u32,
}

/// Records the warm throughput asked for and reports it; Shoal does not pre-warm.
pub async fn update_stream_warm_throughput(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: WarmThroughputInput = request.input()?;
    let name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    let mibps = input.warm_throughput_mibps;
    api.change(MetaCommand::SetWarmThroughput { name: name.clone(), mibps }).await?;
    Ok(json!({
        "StreamARN": shapes::stream_arn(&request.scope, &name),
        "StreamName": request.scope.external(&name),
        "WarmThroughput": { "TargetMiBps": mibps, "CurrentMiBps": mibps },
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SplitShardInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_to_split: String,
    new_starting_hash_key: String,
}

pub async fn split_shard(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: SplitShardInput = request.input()?;
    let message = proto::SplitShardRequest {
        stream_name: stream_name(&request.scope, input.stream_name, input.stream_arn)?,
        shard_to_split: input.shard_to_split,
        new_starting_hash_key: input.new_starting_hash_key,
    };
    api.control.split_shard(Request::new(message)).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MergeShardsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_to_merge: String,
    adjacent_shard_to_merge: String,
}

pub async fn merge_shards(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: MergeShardsInput = request.input()?;
    let message = proto::MergeShardsRequest {
        stream_name: stream_name(&request.scope, input.stream_name, input.stream_arn)?,
        shard_to_merge: input.shard_to_merge,
        adjacent_shard_to_merge: input.adjacent_shard_to_merge,
    };
    api.control.merge_shards(Request::new(message)).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateShardCountInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    target_shard_count: u32,
    scaling_type: String,
}

/// Uniform scaling by splits and merges; it completes before the call returns.
pub async fn update_shard_count(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: UpdateShardCountInput = request.input()?;
    if input.scaling_type != "UNIFORM_SCALING" {
        return Err(AwsError::validation(format!("ScalingType must be UNIFORM_SCALING, not {}.", input.scaling_type)));
    }
    let name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    let message =
        proto::UpdateShardCountRequest { stream_name: name.clone(), target_shard_count: input.target_shard_count };
    let response = api.control.update_shard_count(Request::new(message)).await?.into_inner();
    Ok(json!({
        "StreamName": request.scope.external(&name),
        "StreamARN": shapes::stream_arn(&request.scope, &name),
        "CurrentShardCount": response.current_shard_count,
        "TargetShardCount": response.target_shard_count,
    }))
}
