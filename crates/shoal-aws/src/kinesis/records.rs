//! Record operations: PutRecord, PutRecords, GetShardIterator, GetRecords.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_proto::v1 as proto;
use shoal_proto::v1::records_server::Records;
use tonic::Request;

use super::{KinesisApi, shapes, stream_name};
use crate::error::AwsError;
use crate::request::AwsRequest;

fn decode_data(data: &str, field: &str) -> Result<Vec<u8>, AwsError> {
    STANDARD.decode(data).map_err(|_| AwsError::serialization(format!("{field} is not valid base64.")))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    data: String,
    partition_key: String,
    explicit_hash_key: Option<String>,
    sequence_number_for_ordering: Option<String>,
}

pub async fn put_record(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: PutRecordInput = request.input()?;
    // Shoal's sequence numbers already rise strictly within a shard in commit
    // order, which is what SequenceNumberForOrdering asks for; it must still be
    // a sequence number.
    if let Some(ordering) = &input.sequence_number_for_ordering {
        shoal_types::SequenceNumber::parse(ordering).map_err(|_| {
            AwsError::invalid_argument(format!("SequenceNumberForOrdering {ordering} is not a valid sequence number."))
        })?;
    }
    let message = proto::PutRecordRequest {
        stream_name: stream_name(&request.scope, input.stream_name, input.stream_arn)?,
        record: Some(proto::RecordEntry {
            data: decode_data(&input.data, "Data")?.into(),
            partition_key: input.partition_key,
            explicit_hash_key: input.explicit_hash_key,
        }),
    };
    let response = api.data.put_record(Request::new(message)).await?.into_inner();
    Ok(json!({ "ShardId": response.shard_id, "SequenceNumber": response.sequence_number, "EncryptionType": "NONE" }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsEntry {
    data: String,
    partition_key: String,
    explicit_hash_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    records: Vec<PutRecordsEntry>,
}

pub async fn put_records(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: PutRecordsInput = request.input()?;
    let stream_name = stream_name(&request.scope, input.stream_name, input.stream_arn)?;
    let records = input
        .records
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            Ok(proto::RecordEntry {
                data: decode_data(&entry.data, &format!("Records.{}.Data", i + 1))?.into(),
                partition_key: entry.partition_key,
                explicit_hash_key: entry.explicit_hash_key,
            })
        })
        .collect::<Result<Vec<_>, AwsError>>()?;
    let response =
        api.data.put_records(Request::new(proto::PutRecordsRequest { stream_name, records })).await?.into_inner();
    let results: Vec<Value> = response
        .records
        .iter()
        .map(|r| {
            if r.error_code.is_empty() {
                json!({ "SequenceNumber": r.sequence_number, "ShardId": r.shard_id })
            } else {
                json!({ "ErrorCode": r.error_code, "ErrorMessage": r.error_message })
            }
        })
        .collect();
    Ok(json!({ "FailedRecordCount": response.failed_record_count, "Records": results, "EncryptionType": "NONE" }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetShardIteratorInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_id: String,
    shard_iterator_type: String,
    starting_sequence_number: Option<String>,
    timestamp: Option<Value>,
}

/// AWS JSON timestamps are epoch seconds (a number, possibly fractional); some
/// clients send them as strings.
fn timestamp_millis(value: &Value) -> Result<u64, AwsError> {
    let seconds = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    match seconds {
        Some(s) if s >= 0.0 && s.is_finite() => Ok((s * 1000.0).round() as u64),
        _ => Err(AwsError::serialization(format!("Timestamp {value} is not epoch seconds."))),
    }
}

pub async fn get_shard_iterator(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: GetShardIteratorInput = request.input()?;
    let message = proto::GetShardIteratorRequest {
        stream_name: stream_name(&request.scope, input.stream_name, input.stream_arn)?,
        shard_id: input.shard_id,
        shard_iterator_type: input.shard_iterator_type,
        starting_sequence_number: input.starting_sequence_number.unwrap_or_default(),
        timestamp_millis: input.timestamp.as_ref().map(timestamp_millis).transpose()?,
    };
    let response = api.data.get_shard_iterator(Request::new(message)).await?.into_inner();
    Ok(json!({ "ShardIterator": response.shard_iterator }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRecordsInput {
    shard_iterator: String,
    limit: Option<u32>,
}

pub async fn get_records(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: GetRecordsInput = request.input()?;
    if input.limit == Some(0) {
        return Err(AwsError::validation("Limit must be between 1 and 10000."));
    }
    let message = proto::GetRecordsRequest { shard_iterator: input.shard_iterator, limit: input.limit.unwrap_or(0) };
    let response = api.data.get_records(Request::new(message)).await?.into_inner();
    let records: Vec<Value> = response.records.iter().map(shapes::record).collect();
    let mut output = json!({ "Records": records, "MillisBehindLatest": response.millis_behind_latest });
    if response.next_shard_iterator.is_empty() {
        // A closed shard read to its end: no next iterator, but its children.
        output["ChildShards"] = shapes::child_shards(&response.child_shards);
    } else {
        output["NextShardIterator"] = json!(response.next_shard_iterator);
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_epoch_seconds() {
        assert_eq!(timestamp_millis(&json!(1459799926.48)).unwrap(), 1_459_799_926_480);
        assert_eq!(timestamp_millis(&json!("1459799926")).unwrap(), 1_459_799_926_000);
        assert!(timestamp_millis(&json!(-1)).is_err());
        assert!(timestamp_millis(&json!("yesterday")).is_err());
    }
}
