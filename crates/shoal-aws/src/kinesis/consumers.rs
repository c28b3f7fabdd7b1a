//! Enhanced fan-out consumers: register, deregister, describe, list.

use serde::Deserialize;
use serde_json::{Value, json};
use shoal_raft::{MetaCommand, MetaResponse};
use shoal_types::{Consumer, ShoalError, now_millis};

use super::{KinesisApi, consumer_of_arn, shapes, stream_of_arn, timestamp};
use crate::error::AwsError;
use crate::request::AwsRequest;
use crate::sigv4::CallerScope;

fn consumer_shape(scope: &CallerScope, stream: &str, consumer: &Consumer) -> Value {
    let stream_arn = shapes::stream_arn(scope, stream);
    json!({
        "ConsumerName": consumer.name,
        "ConsumerARN": consumer.arn(&stream_arn),
        "ConsumerStatus": "ACTIVE",
        "ConsumerCreationTimestamp": timestamp(consumer.created_millis),
        "StreamARN": stream_arn,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsumerRef {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    consumer_name: Option<String>,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
}

/// `(stream, consumer name)` from either the consumer ARN or stream ARN + name.
fn resolve(scope: &CallerScope, input: ConsumerRef) -> Result<(String, String), AwsError> {
    match (input.consumer_arn, input.stream_arn, input.consumer_name) {
        (Some(arn), _, _) => consumer_of_arn(scope, &arn).map(|(stream, name, _)| (stream, name)),
        (None, Some(stream_arn), Some(name)) => Ok((stream_of_arn(scope, &stream_arn)?, name)),
        _ => Err(AwsError::invalid_argument("Give either ConsumerARN, or StreamARN and ConsumerName.")),
    }
}

/// The registered consumer a reference names; a stale ARN (older registration
/// of the same name) is not found. A consumer registered a moment ago through
/// another node may take a heartbeat to reach this one, so a miss waits briefly.
pub(crate) async fn find(
    api: &KinesisApi,
    scope: &CallerScope,
    consumer_arn: &str,
) -> Result<(String, Consumer), AwsError> {
    let (stream, name, epoch) = consumer_of_arn(scope, consumer_arn)?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
    let mut meta = api.node.meta_state.clone();
    loop {
        let found = meta
            .borrow_and_update()
            .streams
            .get(&stream)
            .and_then(|s| s.consumers.iter().find(|c| c.name == name && c.created_millis / 1000 == epoch).cloned());
        if let Some(consumer) = found {
            return Ok((stream, consumer));
        }
        if tokio::time::timeout_at(deadline, meta.changed()).await.is_err() {
            return Err(ShoalError::not_found(format!("Consumer {consumer_arn} not found.")).into());
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RegisterInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    consumer_name: String,
}

pub async fn register(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: RegisterInput = request.input()?;
    let stream = stream_of_arn(&request.scope, &input.stream_arn)?;
    let command = MetaCommand::RegisterConsumer {
        stream: stream.clone(),
        consumer: input.consumer_name,
        now_millis: now_millis(),
    };
    match api.change(command).await? {
        MetaResponse::Consumer(consumer) => {
            let mut shape = consumer_shape(&request.scope, &stream, &consumer);
            if let Some(object) = shape.as_object_mut() {
                object.remove("StreamARN");
            }
            Ok(json!({ "Consumer": shape }))
        }
        other => Err(ShoalError::internal(format!("unexpected response {other:?}")).into()),
    }
}

pub async fn deregister(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let (stream, consumer) = resolve(&request.scope, request.input()?)?;
    api.change(MetaCommand::DeregisterConsumer { stream, consumer }).await?;
    Ok(json!({}))
}

pub async fn describe(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let (stream, name) = resolve(&request.scope, request.input()?)?;
    let consumer = api
        .stream(&stream)?
        .consumers
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ShoalError::not_found(format!("Consumer {name} of stream {stream} not found.")))?;
    Ok(json!({ "ConsumerDescription": consumer_shape(&request.scope, &stream, &consumer) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    next_token: Option<String>,
    max_results: Option<usize>,
}

pub async fn list(api: &KinesisApi, request: &AwsRequest) -> Result<Value, AwsError> {
    let input: ListInput = request.input()?;
    let limit = input.max_results.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(AwsError::invalid_argument("MaxResults must be between 1 and 10000."));
    }
    let stream = stream_of_arn(&request.scope, &input.stream_arn)?;
    let skip = match &input.next_token {
        Some(token) => token.parse::<usize>().map_err(|_| AwsError::invalid_argument("Invalid NextToken."))?,
        None => 0,
    };
    let consumers = api.stream(&stream)?.consumers;
    let page: Vec<Value> =
        consumers.iter().skip(skip).take(limit).map(|c| consumer_shape(&request.scope, &stream, c)).collect();
    let mut output = json!({ "Consumers": page });
    if skip + limit < consumers.len() {
        output["NextToken"] = json!((skip + limit).to_string());
    }
    Ok(output)
}
