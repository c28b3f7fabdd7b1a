//! The Kinesis Data Streams operations (`Kinesis_20131202`), one handler each,
//! on top of the node's own gRPC services called in-process.

mod consumers;
mod records;
mod settings;
pub(crate) mod shapes;
mod streams;
pub mod subscribe;

use std::sync::Arc;

use serde_json::Value;
use shoal_node::Node;
use shoal_node::control_service::ControlService;
use shoal_node::data_service::DataService;

use crate::error::AwsError;
use crate::request::AwsRequest;
use crate::sigv4::CallerScope;

/// The node's services, shared by every AWS call.
pub struct KinesisApi {
    pub(crate) node: Arc<Node>,
    pub(crate) control: ControlService,
    pub(crate) data: DataService,
    /// Live SubscribeToShard subscriptions on this node.
    pub(crate) subscriptions: subscribe::Subscriptions,
}

impl KinesisApi {
    pub fn new(node: Arc<Node>) -> Self {
        KinesisApi {
            control: ControlService::new(node.clone()),
            data: DataService::new(node.clone()),
            node,
            subscriptions: subscribe::Subscriptions::default(),
        }
    }

    /// The stream as this node's metadata has it (for settings the native API
    /// does not carry).
    pub(crate) fn stream(&self, name: &str) -> Result<shoal_types::Stream, AwsError> {
        Ok(self.node.meta_snapshot().stream(name)?.clone())
    }

    /// Proposes a metadata change and waits until this node has applied it.
    pub(crate) async fn change(&self, command: shoal_raft::MetaCommand) -> Result<shoal_raft::MetaResponse, AwsError> {
        Ok(shoal_node::meta_writer::propose_and_apply_locally(&self.node, command).await?)
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
        "UpdateStreamMode" => streams::update_stream_mode(api, request).await,
        "SplitShard" => streams::split_shard(api, request).await,
        "MergeShards" => streams::merge_shards(api, request).await,
        "UpdateShardCount" => streams::update_shard_count(api, request).await,
        "UpdateStreamWarmThroughput" => streams::update_stream_warm_throughput(api, request).await,
        "PutRecord" => records::put_record(api, request).await,
        "PutRecords" => records::put_records(api, request).await,
        "GetShardIterator" => records::get_shard_iterator(api, request).await,
        "GetRecords" => records::get_records(api, request).await,
        "IncreaseStreamRetentionPeriod" => settings::update_retention(api, request, true).await,
        "DecreaseStreamRetentionPeriod" => settings::update_retention(api, request, false).await,
        "AddTagsToStream" => settings::add_tags_to_stream(api, request).await,
        "RemoveTagsFromStream" => settings::remove_tags_from_stream(api, request).await,
        "ListTagsForStream" => settings::list_tags_for_stream(api, request).await,
        "TagResource" => settings::tag_resource(api, request).await,
        "UntagResource" => settings::untag_resource(api, request).await,
        "ListTagsForResource" => settings::list_tags_for_resource(api, request).await,
        "StartStreamEncryption" => settings::set_encryption(api, request, true).await,
        "StopStreamEncryption" => settings::set_encryption(api, request, false).await,
        "EnableEnhancedMonitoring" => settings::set_monitoring(api, request, true).await,
        "DisableEnhancedMonitoring" => settings::set_monitoring(api, request, false).await,
        "UpdateMaxRecordSize" => settings::update_max_record_size(api, request).await,
        "DescribeLimits" => settings::describe_limits(api, request).await,
        "DescribeAccountSettings" => settings::describe_account_settings(api, request).await,
        "UpdateAccountSettings" => settings::update_account_settings(api, request).await,
        "PutResourcePolicy" => settings::put_resource_policy(api, request).await,
        "GetResourcePolicy" => settings::get_resource_policy(api, request).await,
        "DeleteResourcePolicy" => settings::delete_resource_policy(api, request).await,
        "RegisterStreamConsumer" => consumers::register(api, request).await,
        "DeregisterStreamConsumer" => consumers::deregister(api, request).await,
        "DescribeStreamConsumer" => consumers::describe(api, request).await,
        "ListStreamConsumers" => consumers::list(api, request).await,
        other => Err(AwsError::unknown_operation(other)),
    }
}

/// The internal name of the stream a call names, by `StreamName` or by
/// `StreamARN`, in the caller's account and region.
pub(crate) fn stream_name(scope: &CallerScope, name: Option<String>, arn: Option<String>) -> Result<String, AwsError> {
    let plain = match (name, arn) {
        (Some(name), _) => name,
        (None, Some(arn)) => arn
            .strip_prefix("arn:aws:kinesis:")
            .and_then(|rest| rest.split_once(":stream/"))
            .map(|(_, name)| name.split('/').next().unwrap_or(name).to_string())
            .filter(|name| !name.is_empty())
            .ok_or_else(|| AwsError::invalid_argument(format!("Invalid StreamARN {arn}.")))?,
        (None, None) => return Err(AwsError::validation("Either StreamName or StreamARN must be given.")),
    };
    if plain.contains(['/', ':']) {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{plain}' at 'streamName' failed to satisfy constraint: Member must match pattern [a-zA-Z0-9_.-]+"
        )));
    }
    Ok(scope.internal(&plain))
}

/// The internal name of the stream an ARN names: `arn:aws:kinesis:REGION:ACCOUNT:stream/NAME[/consumer/…]`.
pub(crate) fn stream_of_arn(scope: &CallerScope, arn: &str) -> Result<String, AwsError> {
    stream_name(scope, None, Some(arn.to_string()))
}

/// `(internal stream name, consumer, epoch)` of a consumer ARN `…:stream/NAME/consumer/CNAME:EPOCH`.
pub(crate) fn consumer_of_arn(scope: &CallerScope, arn: &str) -> Result<(String, String, u64), AwsError> {
    let invalid = || AwsError::invalid_argument(format!("Invalid ConsumerARN {arn}."));
    let (_, path) = arn.strip_prefix("arn:aws:kinesis:").and_then(|r| r.split_once(":stream/")).ok_or_else(invalid)?;
    let (stream, consumer) = path.split_once("/consumer/").ok_or_else(invalid)?;
    let (name, epoch) = consumer.rsplit_once(':').ok_or_else(invalid)?;
    let epoch = epoch.parse::<u64>().map_err(|_| invalid())?;
    Ok((scope.internal(stream), name.to_string(), epoch))
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
        let scope = CallerScope::default();
        assert_eq!(stream_name(&scope, Some("a".into()), None).unwrap(), "a");
        let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders";
        assert_eq!(stream_name(&scope, None, Some(arn.into())).unwrap(), "orders");
        assert!(stream_name(&scope, None, Some("arn:aws:s3:::bucket".into())).is_err());
        assert!(stream_name(&scope, None, None).is_err());
        assert!(
            stream_name(&scope, Some("123456789012:eu-west-1/x".into()), None).is_err(),
            "no reaching into other scopes"
        );
        let eu = CallerScope { region: "eu-west-1".into(), ..CallerScope::default() };
        assert_eq!(stream_name(&eu, Some("a".into()), None).unwrap(), "123456789012:eu-west-1/a");
        assert_eq!(timestamp(1_459_799_926_480), serde_json::json!(1459799926.48));
    }
}
