//! The Kinesis Data Streams operations (`Kinesis_20131202`), one handler each,
//! on top of the node's own gRPC services called in-process.

mod records;
mod shapes;
mod streams;

use std::sync::Arc;

use serde_json::Value;
use shoal_node::Node;
use shoal_node::control_service::ControlService;
use shoal_node::data_service::DataService;

use crate::error::AwsError;
use crate::request::AwsRequest;

/// The node's services, shared by every AWS call.
pub struct KinesisApi {
    pub(crate) control: ControlService,
    pub(crate) data: DataService,
}

impl KinesisApi {
    pub fn new(node: Arc<Node>) -> Self {
        KinesisApi { control: ControlService::new(node.clone()), data: DataService::new(node) }
    }
}

pub async fn handle(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    match request.operation.as_str() {
        "CreateStream" => streams::create_stream(api, request).await,
        "DeleteStream" => streams::delete_stream(api, request).await,
        "DescribeStream" => streams::describe_stream(api, request).await,
        "DescribeStreamSummary" => streams::describe_stream_summary(api, request).await,
        "ListStreams" => streams::list_streams(api, request).await,
        "ListShards" => streams::list_shards(api, request).await,
        "PutRecord" => records::put_record(api, request).await,
        "PutRecords" => records::put_records(api, request).await,
        "GetShardIterator" => records::get_shard_iterator(api, request).await,
        "GetRecords" => records::get_records(api, request).await,
        other => Err(AwsError::unknown_operation(other)),
    }
}

/// The stream a call names, by `StreamName` or by `StreamARN`.
pub(crate) fn stream_name(name: Option<String>, arn: Option<String>) -> Result<String, AwsError> {
    match (name, arn) {
        (Some(name), _) => Ok(name),
        (None, Some(arn)) => arn
            .strip_prefix("arn:aws:kinesis:")
            .and_then(|rest| rest.split_once(":stream/"))
            .map(|(_, name)| name.split('/').next().unwrap_or(name).to_string())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| AwsError::invalid_argument(format!("Invalid StreamARN {arn}."))),
        (None, None) => Err(AwsError::validation("Either StreamName or StreamARN must be given.")),
    }
}

/// Epoch milliseconds as AWS JSON timestamps: seconds with a fraction.
pub(crate) fn timestamp(millis: u64) -> Value {
    serde_json::json!(millis as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_named_by_name_or_arn() {
        assert_eq!(stream_name(Some("a".into()), None).unwrap(), "a");
        assert_eq!(
            stream_name(None, Some("arn:aws:kinesis:us-east-1:123456789012:stream/orders".into())).unwrap(),
            "orders"
        );
        assert!(stream_name(None, Some("arn:aws:s3:::bucket".into())).is_err());
        assert!(stream_name(None, None).is_err());
        assert_eq!(timestamp(1_459_799_926_480), serde_json::json!(1459799926.48));
    }
}
