//! Output shapes of the Kinesis model, built from the native API's messages.

use serde_json::{Value, json};
use shoal_proto::v1 as proto;

use super::timestamp;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use shoal_types::Stream;

use crate::sigv4::CallerScope;

/// The ARN of a stream (given by its internal name) as the caller knows it.
pub fn stream_arn(scope: &CallerScope, name: &str) -> String {
    format!("arn:aws:kinesis:{}:{}:stream/{}", scope.region, scope.account, scope.external(name))
}

pub fn shard(shard: &proto::ShardDescription) -> Value {
    let mut value = json!({
        "ShardId": shard.shard_id,
        "HashKeyRange": {
            "StartingHashKey": shard.starting_hash_key,
            "EndingHashKey": shard.ending_hash_key,
        },
        "SequenceNumberRange": { "StartingSequenceNumber": shard.starting_sequence_number },
    });
    if !shard.parent_shard_id.is_empty() {
        value["ParentShardId"] = json!(shard.parent_shard_id);
    }
    if !shard.adjacent_parent_shard_id.is_empty() {
        value["AdjacentParentShardId"] = json!(shard.adjacent_parent_shard_id);
    }
    if !shard.ending_sequence_number.is_empty() {
        value["SequenceNumberRange"]["EndingSequenceNumber"] = json!(shard.ending_sequence_number);
    }
    value
}

fn mode(summary: &proto::StreamSummary) -> Value {
    json!({ "StreamMode": if summary.stream_mode.is_empty() { "PROVISIONED" } else { summary.stream_mode.as_str() } })
}

/// Encryption, monitoring and mode as the stream's settings say.
pub fn apply_settings(value: &mut Value, stream: Option<&Stream>) {
    let Some(stream) = stream else { return };
    let settings = &stream.settings;
    value["StreamModeDetails"] = json!({ "StreamMode": settings.mode });
    value["EnhancedMonitoring"] = json!([{ "ShardLevelMetrics": settings.shard_level_metrics }]);
    match &settings.encryption_key_id {
        Some(key) => {
            value["EncryptionType"] = json!("KMS");
            value["KeyId"] = json!(key);
        }
        None => value["EncryptionType"] = json!("NONE"),
    }
    if let Some(mibps) = settings.warm_throughput_mibps {
        value["WarmThroughput"] = json!({ "TargetMiBps": mibps, "CurrentMiBps": mibps });
    }
    if value.get("ConsumerCount").is_some() {
        value["ConsumerCount"] = json!(stream.consumers.len());
    }
    if value.get("OpenShardCount").is_some() || value.get("Shards").is_some() {
        value["MaxRecordSizeInKiB"] = json!(settings.max_record_size_kib);
    }
}

pub fn stream_description(scope: &CallerScope, description: &proto::StreamDescription) -> Value {
    let summary = description.summary.clone().unwrap_or_default();
    json!({
        "StreamName": scope.external(&summary.stream_name),
        "StreamARN": stream_arn(scope, &summary.stream_name),
        "StreamStatus": summary.stream_status,
        "StreamModeDetails": mode(&summary),
        "Shards": description.shards.iter().map(shard).collect::<Vec<_>>(),
        "HasMoreShards": description.has_more_shards,
        "RetentionPeriodHours": summary.retention_period_hours,
        "StreamCreationTimestamp": timestamp(summary.stream_creation_timestamp_millis),
        "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
        "EncryptionType": "NONE",
    })
}

pub fn stream_description_summary(scope: &CallerScope, summary: &proto::StreamSummary) -> Value {
    json!({
        "StreamName": scope.external(&summary.stream_name),
        "StreamARN": stream_arn(scope, &summary.stream_name),
        "StreamStatus": summary.stream_status,
        "StreamModeDetails": mode(summary),
        "RetentionPeriodHours": summary.retention_period_hours,
        "StreamCreationTimestamp": timestamp(summary.stream_creation_timestamp_millis),
        "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
        "EncryptionType": "NONE",
        "OpenShardCount": summary.open_shard_count,
        "ConsumerCount": 0,
    })
}

pub fn stream_summary(scope: &CallerScope, summary: &proto::StreamSummary) -> Value {
    json!({
        "StreamName": scope.external(&summary.stream_name),
        "StreamARN": stream_arn(scope, &summary.stream_name),
        "StreamStatus": summary.stream_status,
        "StreamModeDetails": mode(summary),
        "StreamCreationTimestamp": timestamp(summary.stream_creation_timestamp_millis),
    })
}

/// A record as GetRecords and SubscribeToShard return it.
pub fn record(record: &proto::StoredRecordEntry) -> Value {
    json!({
        "SequenceNumber": record.sequence_number,
        "ApproximateArrivalTimestamp": timestamp(record.approximate_arrival_timestamp_millis),
        "Data": STANDARD.encode(&record.data),
        "PartitionKey": record.partition_key,
    })
}

/// `ChildShards` of a closed shard read to its end.
pub fn child_shards(children: &[proto::ChildShard]) -> Value {
    json!(
        children
            .iter()
            .map(|c| json!({
                "ShardId": c.shard_id,
                "ParentShards": c.parent_shards,
                "HashKeyRange": { "StartingHashKey": c.starting_hash_key, "EndingHashKey": c.ending_hash_key },
            }))
            .collect::<Vec<_>>()
    )
}
