//! PutRecord and PutRecordBatch: records into the delivery stream's own stream,
//! spread over its shards. The RecordId is where the record landed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_proto::v1 as proto;
use shoal_proto::v1::records_server::Records;
use tonic::Request;

use super::FirehoseApi;
use crate::error::AwsError;
use crate::request::AwsRequest;

/// Largest record: 1,000 KiB before base64.
const MAX_RECORD_BYTES: usize = 1_000 * 1024;
/// Most records and bytes in one PutRecordBatch.
const MAX_BATCH_RECORDS: usize = 500;
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RecordInput {
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordInput {
    delivery_stream_name: String,
    record: RecordInput,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordBatchInput {
    delivery_stream_name: String,
    records: Vec<RecordInput>,
}

fn decode(data: &str, field: &str) -> Result<Vec<u8>, AwsError> {
    let bytes = STANDARD.decode(data).map_err(|_| AwsError::serialization(format!("{field} is not valid base64.")))?;
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}"
        )));
    }
    Ok(bytes)
}

/// The stream a DirectPut delivery stream's records go to.
fn target_stream(api: &FirehoseApi, name: &str) -> Result<(String, bool), AwsError> {
    let stream = api.delivery_stream(name)?;
    if stream.kind != "DirectPut" {
        return Err(AwsError::invalid_argument(format!(
            "This operation is not permitted on KinesisStreamAsSource delivery stream type ({name})."
        )));
    }
    Ok((stream.source_stream, stream.encryption.is_some()))
}

/// Partition keys that spread a call's records over the shards.
fn partition_key(index: usize) -> String {
    format!("{:016x}-{index}", shoal_types::now_millis().wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn record_id(shard_id: &str, sequence_number: &str) -> String {
    format!("{shard_id}:{sequence_number}")
}

pub async fn put_record(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: PutRecordInput = request.input()?;
    let (stream, encrypted) = target_stream(api, &input.delivery_stream_name)?;
    let message = proto::PutRecordRequest {
        stream_name: stream,
        record: Some(proto::RecordEntry {
            data: decode(&input.record.data, "record.data")?.into(),
            partition_key: partition_key(0),
            explicit_hash_key: None,
        }),
    };
    let response = api.data.put_record(Request::new(message)).await?.into_inner();
    Ok(json!({ "RecordId": record_id(&response.shard_id, &response.sequence_number), "Encrypted": encrypted }))
}

pub async fn put_record_batch(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: PutRecordBatchInput = request.input()?;
    if input.records.is_empty() || input.records.len() > MAX_BATCH_RECORDS {
        return Err(AwsError::validation(format!("Records must hold 1 to {MAX_BATCH_RECORDS} records.")));
    }
    let (stream, encrypted) = target_stream(api, &input.delivery_stream_name)?;
    let mut total = 0usize;
    let mut records = Vec::with_capacity(input.records.len());
    for (i, record) in input.records.iter().enumerate() {
        let data = decode(&record.data, &format!("records.{}.member.data", i + 1))?;
        total += data.len();
        records.push(proto::RecordEntry {
            data: data.into(),
            partition_key: partition_key(i),
            explicit_hash_key: None,
        });
    }
    if total > MAX_BATCH_BYTES {
        return Err(AwsError::invalid_argument(format!(
            "Records size {total} exceeds the limit of {MAX_BATCH_BYTES} bytes per PutRecordBatch."
        )));
    }
    let message = proto::PutRecordsRequest { stream_name: stream, records };
    let response = api.data.put_records(Request::new(message)).await?.into_inner();
    let mut failed = 0;
    let responses: Vec<Value> = response
        .records
        .iter()
        .map(|r| {
            if r.error_code.is_empty() {
                json!({ "RecordId": record_id(&r.shard_id, &r.sequence_number) })
            } else {
                failed += 1;
                let code =
                    if r.error_code.contains("Throughput") { "ServiceUnavailableException" } else { "InternalFailure" };
                json!({ "ErrorCode": code, "ErrorMessage": r.error_message })
            }
        })
        .collect();
    Ok(json!({ "FailedPutCount": failed, "Encrypted": encrypted, "RequestResponses": responses }))
}
