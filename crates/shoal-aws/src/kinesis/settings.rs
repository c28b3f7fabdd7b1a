//! Stream settings and account-level operations: retention, tags, encryption,
//! enhanced monitoring, record size, limits, account settings, resource policies.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use shoal_raft::MetaCommand;

use super::{KinesisApi, consumer_of_arn, shapes, stream_name, stream_of_arn};
use crate::error::AwsError;
use crate::request::AwsRequest;
use crate::sigv4::CallerScope;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetentionInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    retention_period_hours: u32,
}

pub async fn update_retention(api: &KinesisApi, request: &AwsRequest, increase: bool) -> Result<Value, AwsError> {
    let input: RetentionInput = request.input()?;
    let name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    api.change(MetaCommand::UpdateRetention { name, hours: input.retention_period_hours, increase }).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddTagsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    tags: BTreeMap<String, String>,
}

fn check_tag_count(count: usize) -> Result<(), AwsError> {
    if count == 0 || count > 50 {
        return Err(AwsError::invalid_argument(format!("A call takes 1 to 50 tags, not {count}.")));
    }
    Ok(())
}

pub async fn add_tags_to_stream(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: AddTagsInput = request.input()?;
    check_tag_count(input.tags.len())?;
    let name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    api.change(MetaCommand::AddTags { name, tags: input.tags.into_iter().collect() }).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RemoveTagsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    tag_keys: Vec<String>,
}

pub async fn remove_tags_from_stream(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: RemoveTagsInput = request.input()?;
    check_tag_count(input.tag_keys.len())?;
    let name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    api.change(MetaCommand::RemoveTags { name, keys: input.tag_keys }).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListTagsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    exclusive_start_tag_key: Option<String>,
    limit: Option<usize>,
}

fn tag_list<'a>(tags: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<Value> {
    tags.map(|(key, value)| json!({ "Key": key, "Value": value })).collect()
}

pub async fn list_tags_for_stream(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: ListTagsInput = request.input()?;
    let limit = input.limit.unwrap_or(50);
    if !(1..=50).contains(&limit) {
        return Err(AwsError::invalid_argument("Limit must be between 1 and 50."));
    }
    let stream = api.stream(&stream_name(&request.scope, input.stream_name, input.stream_arn)?)?;
    let start = input.exclusive_start_tag_key.unwrap_or_default();
    let after: Vec<(&String, &String)> =
        stream.settings.tags.iter().filter(|(k, _)| start.is_empty() || **k > start).collect();
    let has_more = after.len() > limit;
    Ok(json!({ "Tags": tag_list(after.into_iter().take(limit)), "HasMoreTags": has_more }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tags: BTreeMap<String, String>,
}

/// Tags live on streams; a consumer ARN is refused rather than silently tagging its stream.
fn tagged_stream(scope: &CallerScope, arn: &str) -> Result<String, AwsError> {
    if arn.contains("/consumer/") {
        return Err(AwsError::invalid_argument("Tagging consumers is not supported; tag the stream."));
    }
    stream_of_arn(scope, arn)
}

pub async fn tag_resource(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: TagResourceInput = request.input()?;
    check_tag_count(input.tags.len())?;
    let name = tagged_stream(&request.scope, &input.resource_arn)?;
    api.change(MetaCommand::AddTags { name, tags: input.tags.into_iter().collect() }).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tag_keys: Vec<String>,
}

pub async fn untag_resource(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: UntagResourceInput = request.input()?;
    check_tag_count(input.tag_keys.len())?;
    let name = tagged_stream(&request.scope, &input.resource_arn)?;
    api.change(MetaCommand::RemoveTags { name, keys: input.tag_keys }).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResourceInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
}

pub async fn list_tags_for_resource(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: ResourceInput = request.input()?;
    let stream = api.stream(&tagged_stream(&request.scope, &input.resource_arn)?)?;
    Ok(json!({ "Tags": tag_list(stream.settings.tags.iter()) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptionInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    encryption_type: String,
    key_id: String,
}

pub async fn set_encryption(api: &KinesisApi, request: &AwsRequest, start: bool) -> Result<Value, AwsError> {
    let input: EncryptionInput = request.input()?;
    if input.encryption_type != "KMS" {
        return Err(AwsError::invalid_argument(format!("EncryptionType must be KMS, not {}.", input.encryption_type)));
    }
    if input.key_id.is_empty() || input.key_id.len() > 2048 {
        return Err(AwsError::validation("KeyId must be 1 to 2048 characters."));
    }
    let name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    let key_id = start.then_some(input.key_id);
    api.change(MetaCommand::SetEncryption { name, key_id }).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MonitoringInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_level_metrics: Vec<String>,
}

pub async fn set_monitoring(api: &KinesisApi, request: &AwsRequest, enable: bool) -> Result<Value, AwsError> {
    let input: MonitoringInput = request.input()?;
    if input.shard_level_metrics.is_empty() {
        return Err(AwsError::validation("ShardLevelMetrics must name at least one metric."));
    }
    let name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    let current: Vec<String> = api.stream(&name)?.settings.shard_level_metrics.into_iter().collect();
    let metrics = input.shard_level_metrics;
    let response = api.change(MetaCommand::SetShardLevelMetrics { name: name.clone(), metrics, enable }).await?;
    let desired: Vec<String> = match response {
        shoal_raft::MetaResponse::Stream(stream) => stream.settings.shard_level_metrics.into_iter().collect(),
        _ => Vec::new(),
    };
    Ok(json!({
        "StreamName": request.scope.external(&name),
        "StreamARN": shapes::stream_arn(&request.scope, &name),
        "CurrentShardLevelMetrics": current,
        "DesiredShardLevelMetrics": desired,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MaxRecordSizeInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    #[serde(rename = "MaxRecordSizeInKiB")]
    max_record_size_in_kib: u32,
}

pub async fn update_max_record_size(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: MaxRecordSizeInput = request.input()?;
    let name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    api.change(MetaCommand::SetMaxRecordSize { name, kib: input.max_record_size_in_kib }).await?;
    Ok(json!({}))
}

/// Shards an account may hold, as Kinesis's default quota says.
const SHARD_LIMIT: u32 = 10_000;

pub async fn describe_limits(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let meta = api.node.meta_snapshot();
    let mine: Vec<_> = meta.streams.values().filter(|s| request.scope.owns(&s.name)).collect();
    let open: usize = mine.iter().map(|s| s.open_shards().count()).sum();
    let on_demand = mine.iter().filter(|s| s.settings.mode == "ON_DEMAND").count();
    Ok(json!({
        "ShardLimit": SHARD_LIMIT,
        "OpenShardCount": open,
        "OnDemandStreamCount": on_demand,
        "OnDemandStreamCountLimit": 50,
    }))
}

const DEFAULT_ACCOUNT_SETTINGS: &str = r#"{"MinimumThroughputBillingCommitment":{"Status":"DISABLED"}}"#;

pub async fn describe_account_settings(api: &KinesisApi, _request: &AwsRequest) -> Result<Value, AwsError> {
    let stored = api.node.meta_snapshot().account_settings.clone();
    let text = stored.as_deref().unwrap_or(DEFAULT_ACCOUNT_SETTINGS);
    serde_json::from_str(text)
        .map_err(|e| shoal_types::ShoalError::internal(format!("stored account settings: {e}")).into())
}

pub async fn update_account_settings(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let commitment = request
        .body
        .get("MinimumThroughputBillingCommitment")
        .ok_or_else(|| AwsError::validation("MinimumThroughputBillingCommitment must be given."))?;
    let status = commitment.get("Status").and_then(Value::as_str).unwrap_or_default();
    if status != "ENABLED" && status != "DISABLED" {
        return Err(AwsError::validation("MinimumThroughputBillingCommitment.Status must be ENABLED or DISABLED."));
    }
    let settings = json!({ "MinimumThroughputBillingCommitment": { "Status": status } });
    api.change(MetaCommand::SetAccountSettings { settings: settings.to_string() }).await?;
    Ok(settings)
}

/// Checks that an ARN names an existing stream or consumer.
fn existing_resource(api: &KinesisApi, scope: &CallerScope, arn: &str) -> Result<(), AwsError> {
    if arn.contains("/consumer/") {
        let (stream, consumer, _) = consumer_of_arn(scope, arn)?;
        let stream = api.stream(&stream)?;
        if !stream.consumers.iter().any(|c| c.name == consumer) {
            return Err(shoal_types::ShoalError::not_found(format!("Consumer {arn} not found.")).into());
        }
        return Ok(());
    }
    api.stream(&stream_of_arn(scope, arn)?).map(|_| ())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutPolicyInput {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    policy: String,
}

pub async fn put_resource_policy(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: PutPolicyInput = request.input()?;
    existing_resource(api, &request.scope, &input.resource_arn)?;
    serde_json::from_str::<Value>(&input.policy)
        .map_err(|e| AwsError::invalid_argument(format!("Policy is not a JSON document: {e}")))?;
    api.change(MetaCommand::SetResourcePolicy { arn: input.resource_arn, policy: Some(input.policy) }).await?;
    Ok(json!({}))
}

pub async fn get_resource_policy(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: ResourceInput = request.input()?;
    existing_resource(api, &request.scope, &input.resource_arn)?;
    let policy = api.node.meta_snapshot().resource_policies.get(&input.resource_arn).cloned();
    Ok(json!({ "Policy": policy.unwrap_or_else(|| "{}".into()) }))
}

pub async fn delete_resource_policy(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: ResourceInput = request.input()?;
    existing_resource(api, &request.scope, &input.resource_arn)?;
    api.change(MetaCommand::SetResourcePolicy { arn: input.resource_arn, policy: None }).await?;
    Ok(json!({}))
}
