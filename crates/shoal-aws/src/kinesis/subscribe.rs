//! SubscribeToShard: records pushed to an enhanced fan-out consumer over an AWS
//! event stream.
//!
//! The response is `200` with `application/vnd.amazon.eventstream`: first an
//! `initial-response` event, then a `SubscribeToShardEvent` whenever records
//! arrive (and at least every second while the shard is idle), each with the
//! records, the `ContinuationSequenceNumber` to resume from and
//! `MillisBehindLatest`. A subscription lasts five minutes. One subscription per
//! consumer and shard: a second one within five seconds is refused with
//! `ResourceInUseException`, a later one takes over and ends the first.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_node::subscription::EventStream;
use shoal_proto::v1 as proto;
use shoal_proto::v1::records_server::Records;
use shoal_types::ShoalError;
use tonic::Request;

use super::{KinesisApi, consumers, shapes};
use crate::error::AwsError;
use crate::event_stream;
use crate::request::{AwsRequest, WireFormat};
use crate::server::encode_body;

const SUBSCRIPTION_LIFETIME: Duration = Duration::from_secs(300);
const TAKEOVER_AFTER: Duration = Duration::from_secs(5);

/// Which subscription currently owns each (consumer, shard).
#[derive(Default)]
pub struct Subscriptions {
    owners: Mutex<HashMap<(String, String), (Instant, u64)>>,
    next_id: AtomicU64,
}

impl Subscriptions {
    /// Claims (consumer, shard) for a new subscription, per the takeover rules.
    fn claim(&self, consumer_arn: &str, shard_id: &str) -> Result<u64, AwsError> {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let key = (consumer_arn.to_string(), shard_id.to_string());
        if let Some((started, _)) = owners.get(&key)
            && started.elapsed() < TAKEOVER_AFTER
        {
            return Err(ShoalError::in_use(format!(
                "Another active subscription exists for consumer {consumer_arn} on {shard_id}; a new one can take over after 5 seconds."
            ))
            .into());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        owners.insert(key, (Instant::now(), id));
        Ok(id)
    }

    fn still_owns(&self, consumer_arn: &str, shard_id: &str, id: u64) -> bool {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.get(&(consumer_arn.to_string(), shard_id.to_string())).is_some_and(|(_, owner)| *owner == id)
    }

    fn release(&self, consumer_arn: &str, shard_id: &str, id: u64) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let key = (consumer_arn.to_string(), shard_id.to_string());
        if owners.get(&key).is_some_and(|(_, owner)| *owner == id) {
            owners.remove(&key);
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartingPosition {
    #[serde(rename = "Type")]
    kind: String,
    sequence_number: Option<String>,
    timestamp: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SubscribeInput {
    #[serde(rename = "ConsumerARN")]
    consumer_arn: String,
    shard_id: String,
    starting_position: StartingPosition,
}

/// Everything the event loop carries from one poll to the next.
struct Cursor {
    api: Arc<KinesisApi>,
    consumer_arn: String,
    shard_id: String,
    id: u64,
    /// The node's own push subscription (served by the shard's leader).
    events: EventStream,
    format: WireFormat,
    started: Instant,
    sent_initial: bool,
    done: bool,
}

pub async fn subscribe(api: Arc<KinesisApi>, request: AwsRequest) -> Result<Response, AwsError> {
    let input: SubscribeInput = request.input()?;
    let (stream, _consumer) = consumers::find(&api, &request.scope, &input.consumer_arn).await?;
    let timestamp_millis = match &input.starting_position.timestamp {
        Some(Value::Number(n)) => n.as_f64().map(|s| (s * 1000.0).round() as u64),
        Some(Value::String(s)) => s.parse::<f64>().ok().map(|s| (s * 1000.0).round() as u64),
        _ => None,
    };
    let subscription = proto::SubscribeToShardRequest {
        stream_name: stream,
        shard_id: input.shard_id.clone(),
        starting_position: input.starting_position.kind.clone(),
        starting_sequence_number: input.starting_position.sequence_number.clone().unwrap_or_default(),
        timestamp_millis,
    };
    // Bad positions and unknown shards fail here, before the consumer is claimed.
    let events = api.data.subscribe_to_shard(Request::new(subscription)).await?.into_inner();
    let id = api.subscriptions.claim(&input.consumer_arn, &input.shard_id)?;
    let cursor = Cursor {
        api,
        consumer_arn: input.consumer_arn,
        shard_id: input.shard_id,
        id,
        events,
        format: request.format,
        started: Instant::now(),
        sent_initial: false,
        done: false,
    };
    let events = futures::stream::unfold(cursor, |mut cursor| async move {
        let frame = next_frame(&mut cursor).await?;
        Some((Ok::<Bytes, Infallible>(Bytes::from(frame)), cursor))
    });
    let mut response = (StatusCode::OK, Body::from_stream(events)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.amazon.eventstream"));
    Ok(response)
}

/// The next frame to send, or `None` when the subscription is over. Events come
/// as the node's push subscription yields them: when records are applied, and at
/// least once a second.
async fn next_frame(cursor: &mut Cursor) -> Option<Vec<u8>> {
    let content_type = cursor.format.content_type();
    if !cursor.sent_initial {
        cursor.sent_initial = true;
        return Some(event_stream::event("initial-response", content_type, &encode_body(&json!({}), cursor.format)));
    }
    let superseded = !cursor.api.subscriptions.still_owns(&cursor.consumer_arn, &cursor.shard_id, cursor.id);
    if cursor.done || superseded || cursor.started.elapsed() >= SUBSCRIPTION_LIFETIME {
        cursor.api.subscriptions.release(&cursor.consumer_arn, &cursor.shard_id, cursor.id);
        return None;
    }
    let event = match cursor.events.next().await {
        Some(Ok(event)) => event,
        Some(Err(status)) => {
            cursor.done = true;
            let error = AwsError::from(status);
            let payload = encode_body(&json!({ "message": error.message }), cursor.format);
            return Some(event_stream::exception(&error.type_name, content_type, &payload));
        }
        None => {
            cursor.api.subscriptions.release(&cursor.consumer_arn, &cursor.shard_id, cursor.id);
            return None;
        }
    };
    // The last event of a closed shard names its children; the subscription ends after it.
    cursor.done = event.shard_ended;
    let records: Vec<Value> = event.records.iter().map(shapes::record).collect();
    let event = json!({
        "Records": records,
        "ContinuationSequenceNumber": event.continuation_sequence_number,
        "MillisBehindLatest": event.millis_behind_latest,
        "ChildShards": shapes::child_shards(&event.child_shards),
    });
    Some(event_stream::event("SubscribeToShardEvent", content_type, &encode_body(&event, cursor.format)))
}
