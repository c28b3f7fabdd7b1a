//! Delivery stream operations: create, delete, describe, list, update the
//! destination, tags and encryption.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use shoal_firehose::Destination;
use shoal_firehose::destination::apply_update;
use shoal_firehose::request::{InputError, create_command};
use shoal_raft::delivery_stream::{DeliveryStream, DeliveryStreamCommand};

use super::{FirehoseApi, check_name, delivery_stream_arn};
use crate::error::AwsError;
use crate::kinesis::{stream_of_arn, timestamp};
use crate::request::AwsRequest;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: Option<String>,
}

fn tags_of(tags: Option<Vec<Tag>>) -> Result<Vec<(String, String)>, AwsError> {
    let tags = tags.unwrap_or_default();
    for tag in &tags {
        if tag.key.is_empty() || tag.key.len() > 128 || tag.value.as_ref().is_some_and(|v| v.len() > 256) {
            return Err(AwsError::invalid_argument("Tag keys are 1–128 and values 0–256 characters."));
        }
    }
    Ok(tags.into_iter().map(|t| (t.key, t.value.unwrap_or_default())).collect())
}

fn name_of(request: &AwsRequest) -> Result<String, AwsError> {
    let name = request
        .body
        .get("DeliveryStreamName")
        .and_then(Value::as_str)
        .ok_or_else(|| AwsError::validation("DeliveryStreamName is required."))?;
    check_name(name)?;
    Ok(name.to_string())
}

pub async fn create(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input = request.body.as_object().cloned().unwrap_or_default();
    let (name, command) =
        create_command(&input, |arn| stream_of_arn(&request.scope, arn).map_err(|e| e.message)).map_err(input_error)?;
    api.change(&name, command).await?;
    Ok(json!({ "DeliveryStreamARN": delivery_stream_arn(request, &name) }))
}

pub(crate) fn input_error(error: InputError) -> AwsError {
    match error {
        InputError::Validation(message) => AwsError::validation(message),
        InputError::InvalidArgument(message) => AwsError::invalid_argument(message),
    }
}

pub async fn delete(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let name = name_of(request)?;
    api.change(&name, DeliveryStreamCommand::Delete).await?;
    Ok(json!({}))
}

fn description(api: &FirehoseApi, request: &AwsRequest, stream: &DeliveryStream) -> Result<Value, AwsError> {
    let stored: Value = serde_json::from_str(&stream.destination)
        .map_err(|e| AwsError::from(shoal_types::ShoalError::internal(format!("stored destination: {e}"))))?;
    let destination = Destination::from_stored(&stored).map_err(AwsError::invalid_argument)?;
    let mut entry = Map::new();
    entry.insert("DestinationId".into(), json!("destinationId-000000000001"));
    for (key, described) in destination.describe(&stored) {
        entry.insert(key.into(), described);
    }
    let encryption = match &stream.encryption {
        Some((key_type, key_arn)) => {
            let mut e = json!({ "Status": "ENABLED", "KeyType": key_type });
            if let Some(arn) = key_arn {
                e["KeyARN"] = json!(arn);
            }
            e
        }
        None => json!({ "Status": "DISABLED" }),
    };
    let mut description = json!({
        "DeliveryStreamName": stream.name,
        "DeliveryStreamARN": delivery_stream_arn(request, &stream.name),
        "DeliveryStreamStatus": stream.status,
        "DeliveryStreamType": stream.kind,
        "DeliveryStreamEncryptionConfiguration": encryption,
        "VersionId": stream.version_id.to_string(),
        "CreateTimestamp": timestamp(stream.created_millis),
        "LastUpdateTimestamp": timestamp(stream.updated_millis),
        "Destinations": [Value::Object(entry)],
        "HasMoreDestinations": false,
    });
    if stream.kind == "KinesisStreamAsSource" {
        let arn = crate::kinesis::shapes::stream_arn(&request.scope, &stream.source_stream);
        description["Source"] = json!({ "KinesisStreamSourceDescription": {
            "KinesisStreamARN": arn,
            "DeliveryStartTimestamp": timestamp(stream.created_millis),
        }});
    }
    let _ = api;
    Ok(description)
}

pub fn describe(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let stream = api.delivery_stream(&name_of(request)?)?;
    Ok(json!({ "DeliveryStreamDescription": description(api, request, &stream)? }))
}

pub fn list(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let limit = request.body.get("Limit").and_then(Value::as_u64).unwrap_or(10_000);
    if !(1..=10_000).contains(&limit) {
        return Err(AwsError::validation("Limit must be between 1 and 10000."));
    }
    let kind = request.body.get("DeliveryStreamType").and_then(Value::as_str);
    let after = request.body.get("ExclusiveStartDeliveryStreamName").and_then(Value::as_str).unwrap_or("");
    let meta = api.node.meta_snapshot();
    let names: Vec<&String> = meta
        .delivery_streams
        .values()
        .filter(|d| kind.is_none_or(|k| d.kind == k))
        .map(|d| &d.name)
        .filter(|name| name.as_str() > after)
        .collect();
    let page: Vec<&String> = names.iter().take(limit as usize).copied().collect();
    Ok(json!({ "DeliveryStreamNames": page, "HasMoreDeliveryStreams": names.len() > page.len() }))
}

pub async fn update_destination(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let name = name_of(request)?;
    let body = request.body.as_object().cloned().unwrap_or_default();
    let version = body
        .get("CurrentDeliveryStreamVersionId")
        .and_then(Value::as_str)
        .ok_or_else(|| AwsError::validation("CurrentDeliveryStreamVersionId is required."))?
        .parse::<u64>()
        .map_err(|_| AwsError::invalid_argument("CurrentDeliveryStreamVersionId must be a number."))?;
    let destination_id = body.get("DestinationId").and_then(Value::as_str).unwrap_or_default();
    if destination_id != "destinationId-000000000001" {
        return Err(AwsError::invalid_argument(format!("Destination {destination_id} does not exist.")));
    }
    let stream = api.delivery_stream(&name)?;
    let stored: Value = serde_json::from_str(&stream.destination).unwrap_or(Value::Null);
    let updated = apply_update(&stored, &body).map_err(AwsError::invalid_argument)?;
    let command =
        DeliveryStreamCommand::UpdateDestination { expected_version: version, destination: updated.to_string() };
    api.change(&name, command).await?;
    Ok(json!({}))
}

pub async fn tag(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let name = name_of(request)?;
    let tags =
        tags_of(serde_json::from_value(request.body.get("Tags").cloned().unwrap_or(Value::Null)).ok().flatten())?;
    if tags.is_empty() || tags.len() > 50 {
        return Err(AwsError::validation("Tags must hold 1 to 50 tags."));
    }
    api.change(&name, DeliveryStreamCommand::Tag { tags }).await?;
    Ok(json!({}))
}

pub async fn untag(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let name = name_of(request)?;
    let keys: Vec<String> =
        serde_json::from_value(request.body.get("TagKeys").cloned().unwrap_or(Value::Null)).unwrap_or_default();
    if keys.is_empty() || keys.len() > 50 {
        return Err(AwsError::validation("TagKeys must hold 1 to 50 keys."));
    }
    api.change(&name, DeliveryStreamCommand::Untag { keys }).await?;
    Ok(json!({}))
}

pub fn list_tags(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let stream = api.delivery_stream(&name_of(request)?)?;
    let limit = request.body.get("Limit").and_then(Value::as_u64).unwrap_or(50).clamp(1, 50) as usize;
    let after = request.body.get("ExclusiveStartTagKey").and_then(Value::as_str).unwrap_or("");
    let tags: Vec<(&String, &String)> = stream.tags.iter().filter(|(k, _)| k.as_str() > after).collect();
    let page: Vec<Value> = tags.iter().take(limit).map(|(k, v)| json!({ "Key": k, "Value": v })).collect();
    Ok(json!({ "Tags": page, "HasMoreTags": tags.len() > page.len() }))
}

pub async fn start_encryption(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let name = name_of(request)?;
    let input = request.body.get("DeliveryStreamEncryptionConfigurationInput");
    let key_type = input.and_then(|i| i.get("KeyType")).and_then(Value::as_str).unwrap_or("AWS_OWNED_CMK").to_string();
    let key_arn = input.and_then(|i| i.get("KeyARN")).and_then(Value::as_str).map(str::to_string);
    match (key_type.as_str(), &key_arn) {
        ("AWS_OWNED_CMK", None) | ("CUSTOMER_MANAGED_CMK", Some(_)) => {}
        ("AWS_OWNED_CMK", Some(_)) => {
            return Err(AwsError::invalid_argument("KeyARN must not be given with KeyType AWS_OWNED_CMK."));
        }
        ("CUSTOMER_MANAGED_CMK", None) => {
            return Err(AwsError::invalid_argument("KeyARN is required with KeyType CUSTOMER_MANAGED_CMK."));
        }
        (other, _) => return Err(AwsError::validation(format!("KeyType {other} is not valid."))),
    }
    api.change(&name, DeliveryStreamCommand::StartEncryption { key_type, key_arn }).await?;
    Ok(json!({}))
}

pub async fn stop_encryption(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let name = name_of(request)?;
    api.change(&name, DeliveryStreamCommand::StopEncryption).await?;
    Ok(json!({}))
}
