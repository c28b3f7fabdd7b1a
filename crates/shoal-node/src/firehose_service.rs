//! The gRPC `Firehose` service: delivery streams for workers outside the nodes
//! (`shoal firehose worker`), and the record path of DirectPut streams.

use std::sync::Arc;

use serde_json::Value;
use shoal_client::status::to_status;
use shoal_proto::v1 as proto;
use shoal_proto::v1::firehose_server::Firehose;
use shoal_proto::v1::records_server::Records;
use shoal_raft::delivery_stream::{DeliveryStream, DeliveryStreamCommand};
use shoal_raft::{MetaCommand, MetaResponse};
use shoal_types::ShoalError;
use tonic::{Request, Response, Status};

use crate::data_service::DataService;
use crate::node::Node;

/// Most records and bytes in one PutRecordBatch, as on the AWS API.
const MAX_BATCH_RECORDS: usize = 500;
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
const MAX_RECORD_BYTES: usize = 1_000 * 1024;

fn record_of(d: &DeliveryStream) -> proto::DeliveryStreamRecord {
    proto::DeliveryStreamRecord {
        name: d.name.clone(),
        kind: d.kind.clone(),
        source_stream: d.source_stream.clone(),
        status: d.status.clone(),
        version_id: d.version_id,
        destination_json: d.destination.clone(),
        tags: d.tags.clone().into_iter().collect(),
        encryption_key_type: d.encryption.as_ref().map(|(t, _)| t.clone()).unwrap_or_default(),
        encryption_key_arn: d.encryption.as_ref().and_then(|(_, a)| a.clone()).unwrap_or_default(),
        created_millis: d.created_millis,
        updated_millis: d.updated_millis,
    }
}

fn invalid(message: impl Into<String>) -> Status {
    to_status(ShoalError::invalid_argument(message))
}

pub struct FirehoseService {
    node: Arc<Node>,
    data: DataService,
}

impl FirehoseService {
    pub fn new(node: Arc<Node>) -> Self {
        FirehoseService { data: DataService::new(node.clone()), node }
    }

    fn stored(&self, name: &str) -> Result<DeliveryStream, Status> {
        self.node
            .meta_snapshot()
            .delivery_streams
            .get(name)
            .cloned()
            .ok_or_else(|| to_status(ShoalError::not_found(format!("Firehose {name} not found."))))
    }

    async fn change(&self, name: &str, command: DeliveryStreamCommand) -> Result<(), Status> {
        let command =
            MetaCommand::DeliveryStream { name: name.to_string(), now_millis: shoal_types::now_millis(), command };
        match crate::meta_writer::propose_and_apply_locally(&self.node, command).await.map_err(to_status)? {
            MetaResponse::Error(error) => Err(to_status(error)),
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl Firehose for FirehoseService {
    async fn create_delivery_stream(
        &self,
        request: Request<proto::CreateDeliveryStreamRequest>,
    ) -> Result<Response<proto::CreateDeliveryStreamResponse>, Status> {
        let input: Value = serde_json::from_str(&request.into_inner().request_json)
            .map_err(|e| to_status(ShoalError::invalid_argument(format!("request_json is not JSON: {e}"))))?;
        let input = input.as_object().cloned().unwrap_or_default();
        let stream_of_arn = |arn: &str| {
            arn.split_once(":stream/")
                .map(|(_, name)| name.to_string())
                .filter(|name| !name.is_empty() && !name.contains('/'))
                .ok_or_else(|| format!("Invalid KinesisStreamARN {arn}."))
        };
        let (name, command) = shoal_firehose::request::create_command(&input, stream_of_arn).map_err(|e| match e {
            shoal_firehose::request::InputError::Validation(m) => {
                to_status(ShoalError::new(shoal_types::ErrorCode::Validation, m))
            }
            shoal_firehose::request::InputError::InvalidArgument(m) => to_status(ShoalError::invalid_argument(m)),
        })?;
        self.change(&name, command).await?;
        Ok(Response::new(proto::CreateDeliveryStreamResponse {}))
    }

    async fn delete_delivery_stream(
        &self,
        request: Request<proto::DeleteDeliveryStreamRequest>,
    ) -> Result<Response<proto::DeleteDeliveryStreamResponse>, Status> {
        self.change(&request.into_inner().delivery_stream_name, DeliveryStreamCommand::Delete).await?;
        Ok(Response::new(proto::DeleteDeliveryStreamResponse {}))
    }

    async fn list_delivery_streams(
        &self,
        _request: Request<proto::ListDeliveryStreamsRequest>,
    ) -> Result<Response<proto::ListDeliveryStreamsResponse>, Status> {
        let meta = self.node.meta_snapshot();
        let delivery_streams = meta.delivery_streams.values().map(record_of).collect();
        Ok(Response::new(proto::ListDeliveryStreamsResponse { delivery_streams }))
    }

    async fn put_record_batch(
        &self,
        request: Request<proto::PutRecordBatchRequest>,
    ) -> Result<Response<proto::PutRecordBatchResponse>, Status> {
        let request = request.into_inner();
        let invalid = |m: String| to_status(ShoalError::invalid_argument(m));
        if request.records.is_empty() || request.records.len() > MAX_BATCH_RECORDS {
            return Err(invalid(format!("records must hold 1 to {MAX_BATCH_RECORDS} records")));
        }
        if request.records.iter().any(|r| r.len() > MAX_RECORD_BYTES) {
            return Err(invalid(format!("a record is larger than {MAX_RECORD_BYTES} bytes")));
        }
        if request.records.iter().map(Vec::len).sum::<usize>() > MAX_BATCH_BYTES {
            return Err(invalid(format!("the records are larger than {MAX_BATCH_BYTES} bytes together")));
        }
        let meta = self.node.meta_snapshot();
        let stream = meta.delivery_streams.get(&request.delivery_stream_name).ok_or_else(|| {
            to_status(ShoalError::not_found(format!("Firehose {} not found.", request.delivery_stream_name)))
        })?;
        if stream.kind != "DirectPut" {
            return Err(invalid("PutRecordBatch is not permitted on a KinesisStreamAsSource delivery stream".into()));
        }
        let salt = shoal_types::now_millis().wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let records = request
            .records
            .into_iter()
            .enumerate()
            .map(|(i, data)| proto::RecordEntry {
                data: data.into(),
                partition_key: format!("{salt:016x}-{i}"),
                explicit_hash_key: None,
            })
            .collect();
        let put = proto::PutRecordsRequest { stream_name: stream.source_stream.clone(), records };
        let response = self.data.put_records(Request::new(put)).await?.into_inner();
        let results: Vec<proto::PutRecordResult> = response
            .records
            .into_iter()
            .map(|r| proto::PutRecordResult {
                record_id: if r.error_code.is_empty() {
                    format!("{}:{}", r.shard_id, r.sequence_number)
                } else {
                    String::new()
                },
                error_code: r.error_code,
                error_message: r.error_message,
            })
            .collect();
        let failed_put_count = results.iter().filter(|r| !r.error_code.is_empty()).count() as u32;
        Ok(Response::new(proto::PutRecordBatchResponse { failed_put_count, results }))
    }

    async fn put_record(
        &self,
        request: Request<proto::FirehosePutRecordRequest>,
    ) -> Result<Response<proto::PutRecordResult>, Status> {
        let request = request.into_inner();
        let batch = proto::PutRecordBatchRequest {
            delivery_stream_name: request.delivery_stream_name,
            records: vec![request.data],
        };
        let mut answer = self.put_record_batch(Request::new(batch)).await?.into_inner();
        let result = answer.results.pop().ok_or_else(|| to_status(ShoalError::internal("no result for the record")))?;
        if !result.error_code.is_empty() {
            return Err(to_status(ShoalError::unavailable(result.error_message)));
        }
        Ok(Response::new(result))
    }

    async fn describe_delivery_stream(
        &self,
        request: Request<proto::DescribeDeliveryStreamRequest>,
    ) -> Result<Response<proto::DeliveryStreamRecord>, Status> {
        Ok(Response::new(record_of(&self.stored(&request.into_inner().delivery_stream_name)?)))
    }

    async fn update_destination(
        &self,
        request: Request<proto::UpdateDestinationRequest>,
    ) -> Result<Response<proto::UpdateDestinationResponse>, Status> {
        let input: Value = serde_json::from_str(&request.into_inner().request_json)
            .map_err(|e| invalid(format!("request_json is not JSON: {e}")))?;
        let input = input.as_object().cloned().unwrap_or_default();
        let name = input
            .get("DeliveryStreamName")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("DeliveryStreamName is required"))?;
        let version = input
            .get("CurrentDeliveryStreamVersionId")
            .and_then(Value::as_str)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| invalid("CurrentDeliveryStreamVersionId must be a number"))?;
        let stored: Value = serde_json::from_str(&self.stored(name)?.destination).unwrap_or(Value::Null);
        let updated = shoal_firehose::destination::apply_update(&stored, &input).map_err(invalid)?;
        let command =
            DeliveryStreamCommand::UpdateDestination { expected_version: version, destination: updated.to_string() };
        self.change(name, command).await?;
        Ok(Response::new(proto::UpdateDestinationResponse {}))
    }

    async fn tag_delivery_stream(
        &self,
        request: Request<proto::TagDeliveryStreamRequest>,
    ) -> Result<Response<proto::TagDeliveryStreamResponse>, Status> {
        let request = request.into_inner();
        if request.tags.is_empty() || request.tags.len() > 50 {
            return Err(invalid("tags must hold 1 to 50 tags"));
        }
        let tags = request.tags.into_iter().collect();
        self.change(&request.delivery_stream_name, DeliveryStreamCommand::Tag { tags }).await?;
        Ok(Response::new(proto::TagDeliveryStreamResponse {}))
    }

    async fn untag_delivery_stream(
        &self,
        request: Request<proto::UntagDeliveryStreamRequest>,
    ) -> Result<Response<proto::UntagDeliveryStreamResponse>, Status> {
        let request = request.into_inner();
        let command = DeliveryStreamCommand::Untag { keys: request.tag_keys };
        self.change(&request.delivery_stream_name, command).await?;
        Ok(Response::new(proto::UntagDeliveryStreamResponse {}))
    }

    async fn start_delivery_stream_encryption(
        &self,
        request: Request<proto::StartDeliveryStreamEncryptionRequest>,
    ) -> Result<Response<proto::DeliveryStreamEncryptionResponse>, Status> {
        let request = request.into_inner();
        let key_type = if request.key_type.is_empty() { "AWS_OWNED_CMK".to_string() } else { request.key_type };
        let key_arn = Some(request.key_arn).filter(|a| !a.is_empty());
        match (key_type.as_str(), &key_arn) {
            ("AWS_OWNED_CMK", None) | ("CUSTOMER_MANAGED_CMK", Some(_)) => {}
            _ => return Err(invalid("key_type AWS_OWNED_CMK takes no key_arn; CUSTOMER_MANAGED_CMK needs one")),
        }
        let command = DeliveryStreamCommand::StartEncryption { key_type, key_arn };
        self.change(&request.delivery_stream_name, command).await?;
        Ok(Response::new(proto::DeliveryStreamEncryptionResponse {}))
    }

    async fn stop_delivery_stream_encryption(
        &self,
        request: Request<proto::StopDeliveryStreamEncryptionRequest>,
    ) -> Result<Response<proto::DeliveryStreamEncryptionResponse>, Status> {
        self.change(&request.into_inner().delivery_stream_name, DeliveryStreamCommand::StopEncryption).await?;
        Ok(Response::new(proto::DeliveryStreamEncryptionResponse {}))
    }
}
