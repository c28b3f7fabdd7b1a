//! The Firehose operations (`Firehose_20150804`): delivery streams in the
//! metadata group, records into the delivery stream's Shoal stream. Delivery
//! itself is the worker's job (`shoal-firehose`).

mod delivery_streams;
mod records;

use std::sync::Arc;

use serde_json::Value;
use shoal_node::Node;
use shoal_node::data_service::DataService;
use shoal_raft::delivery_stream::{DeliveryStream, DeliveryStreamCommand};
use shoal_raft::{MetaCommand, MetaResponse};

use crate::error::AwsError;
use crate::request::AwsRequest;

pub struct FirehoseApi {
    pub(crate) node: Arc<Node>,
    pub(crate) data: DataService,
}

impl FirehoseApi {
    pub fn new(node: Arc<Node>) -> Self {
        FirehoseApi { data: DataService::new(node.clone()), node }
    }

    pub(crate) fn delivery_stream(&self, name: &str) -> Result<DeliveryStream, AwsError> {
        self.node.meta_snapshot().delivery_streams.get(name).cloned().ok_or_else(|| {
            shoal_types::ShoalError::not_found(format!(
                "Firehose {name} under account {} not found.",
                shoal_types::limits::DEFAULT_ACCOUNT_ID
            ))
            .into()
        })
    }

    /// Proposes a change to delivery stream `name` and waits until this node applied it.
    pub(crate) async fn change(
        &self,
        name: &str,
        command: DeliveryStreamCommand,
    ) -> Result<Option<DeliveryStream>, AwsError> {
        let command =
            MetaCommand::DeliveryStream { name: name.to_string(), now_millis: shoal_types::now_millis(), command };
        match shoal_node::meta_writer::propose_and_apply_locally(&self.node, command).await? {
            MetaResponse::DeliveryStream(stream) => Ok(stream),
            MetaResponse::Error(error) => Err(error.into()),
            _ => Ok(None),
        }
    }
}

pub async fn handle(api: &FirehoseApi, request: &AwsRequest) -> Result<Value, AwsError> {
    match request.operation.as_str() {
        "CreateDeliveryStream" => delivery_streams::create(api, request).await,
        "DeleteDeliveryStream" => delivery_streams::delete(api, request).await,
        "DescribeDeliveryStream" => delivery_streams::describe(api, request),
        "ListDeliveryStreams" => delivery_streams::list(api, request),
        "UpdateDestination" => delivery_streams::update_destination(api, request).await,
        "TagDeliveryStream" => delivery_streams::tag(api, request).await,
        "UntagDeliveryStream" => delivery_streams::untag(api, request).await,
        "ListTagsForDeliveryStream" => delivery_streams::list_tags(api, request),
        "StartDeliveryStreamEncryption" => delivery_streams::start_encryption(api, request).await,
        "StopDeliveryStreamEncryption" => delivery_streams::stop_encryption(api, request).await,
        "PutRecord" => records::put_record(api, request).await,
        "PutRecordBatch" => records::put_record_batch(api, request).await,
        other => Err(AwsError::unknown_operation(other)),
    }
}

/// `arn:aws:firehose:REGION:ACCOUNT:deliverystream/NAME`.
pub(crate) fn delivery_stream_arn(request: &AwsRequest, name: &str) -> String {
    format!("arn:aws:firehose:{}:{}:deliverystream/{name}", request.scope.region, request.scope.account)
}

/// Delivery stream names: 1–64 of `[a-zA-Z0-9_.-]`.
pub(crate) fn check_name(name: &str) -> Result<(), AwsError> {
    shoal_firehose::request::check_name(name).map_err(delivery_streams::input_error)
}
