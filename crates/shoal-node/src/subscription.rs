//! SubscribeToShard over gRPC: a shard's records pushed as they are committed.
//!
//! A node that does not lead the shard hands the subscription to the leader and
//! relays its events: the leader applies a record before acknowledging it, so
//! its subscription sees the record at once, where a follower's replica learns of
//! the commit a round trip later. If the leader cannot be reached, or leadership
//! moves later, the subscription is served where it is: it reads as GetRecords
//! does (so reads go to the shard leader, wherever it is), marked as fan-out,
//! which has its own budget, but keeps its position decoded between reads
//! ([`crate::records_read`]). Between reads it waits for the local replica to
//! apply something new or, on a node without a replica, polls every 20 ms. An
//! idle shard still gets an event every second.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use shoal_client::status::{from_status, to_status};
use shoal_proto::v1 as proto;
use shoal_proto::v1::records_server::Records;
use shoal_types::{ShardIterator, now_millis};
use tokio::sync::mpsc;
use tonic::{Code, Request, Status};

use crate::data_service::{DataService, find_shard};
use crate::peers::forwarded;
use crate::records_read::Reader;
use crate::routing::{ShardLeader, locate};

pub type EventStream = Pin<Box<dyn Stream<Item = Result<proto::SubscribeToShardEvent, Status>> + Send>>;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const REMOTE_POLL: Duration = Duration::from_millis(20);
const RECORDS_PER_EVENT: u32 = 10_000;

/// Serves a subscription; a `forwarded` one (from a node that found this one the
/// shard's leader) is served here, whoever leads now.
pub async fn subscribe(
    service: DataService,
    request: proto::SubscribeToShardRequest,
    forwarded: bool,
) -> Result<EventStream, Status> {
    if !forwarded && let Some(events) = at_leader(&service, &request).await {
        return events;
    }
    serve_here(service, request).await
}

/// The subscription served by the shard's leader, if another node leads it and
/// answers; `None` to serve it here.
async fn at_leader(
    service: &DataService,
    request: &proto::SubscribeToShardRequest,
) -> Option<Result<EventStream, Status>> {
    let stream = service.node().stream(&request.stream_name).await.ok()?;
    let shard = find_shard(&stream, &request.shard_id).ok()?;
    let ShardLeader::Remote { addr, .. } = locate(service.node(), shard, Duration::ZERO).await.ok()? else {
        return None;
    };
    let mut leader = service.peer_records(&addr).ok()?;
    match leader.subscribe_to_shard(forwarded(request.clone())).await {
        Ok(events) => {
            let events = events.into_inner().map(|event| event.map_err(|status| to_status(from_status(&status))));
            Some(Ok(Box::pin(events) as EventStream))
        }
        // The leader could not be reached or is going away: serve it here.
        Err(status) if matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled) => None,
        // Its answer to the request itself (a bad position, say) is the answer.
        Err(status) => Some(Err(to_status(from_status(&status)))),
    }
}

async fn serve_here(service: DataService, request: proto::SubscribeToShardRequest) -> Result<EventStream, Status> {
    let position =
        if request.starting_position.is_empty() { "LATEST".into() } else { request.starting_position.clone() };
    let first = proto::GetShardIteratorRequest {
        stream_name: request.stream_name.clone(),
        shard_id: request.shard_id.clone(),
        shard_iterator_type: position,
        starting_sequence_number: request.starting_sequence_number.clone(),
        timestamp_millis: request.timestamp_millis,
    };
    // Bad positions and unknown shards fail the call itself.
    let first = service.get_shard_iterator(Request::new(first)).await?.into_inner().shard_iterator;
    let ttl_millis = service.node().config.shard_iterator_ttl_millis;
    // Kept decoded from here on: every wake reads at it directly.
    let mut iterator = ShardIterator::decode_with_ttl(&first, now_millis(), ttl_millis).map_err(to_status)?;
    let reader = Reader { fan_out: true, forwarded: false };
    let (events, stream) = mpsc::channel::<Result<proto::SubscribeToShardEvent, Status>>(16);
    tokio::spawn(async move {
        let mut progress = service.local_progress(&request.stream_name, &request.shard_id);
        let mut continuation = request.starting_sequence_number.clone();
        let mut last_event = tokio::time::Instant::now();
        loop {
            let read = service.read_at(&iterator, RECORDS_PER_EVENT, reader).await;
            let page = match read.and_then(|read| read.into_page(ttl_millis)) {
                Ok(page) => page,
                Err(status) => {
                    let _ = events.send(Err(status)).await;
                    return;
                }
            };
            let got_records = !page.records.is_empty();
            if let Some(last) = page.records.last() {
                continuation = last.sequence_number.clone();
            }
            let ended = page.next.is_none();
            if got_records || ended || last_event.elapsed() >= HEARTBEAT_EVERY {
                let event = proto::SubscribeToShardEvent {
                    records: page.records,
                    continuation_sequence_number: continuation.clone(),
                    millis_behind_latest: page.millis_behind_latest,
                    child_shards: page.child_shards,
                    shard_ended: ended,
                };
                if events.send(Ok(event)).await.is_err() {
                    return; // the client went away
                }
                last_event = tokio::time::Instant::now();
            }
            let Some(next) = page.next else { return };
            iterator = next;
            if got_records && page.millis_behind_latest > 0 {
                continue;
            }
            // Wait for something new: the local replica applying, or a short poll.
            let group_stopped = match progress.as_mut() {
                Some(watch) => matches!(tokio::time::timeout(HEARTBEAT_EVERY, watch.changed()).await, Ok(Err(_))),
                None => {
                    tokio::time::sleep(REMOTE_POLL).await;
                    false
                }
            };
            if group_stopped {
                progress = None;
            }
            if events.is_closed() {
                return;
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(stream);
    Ok(Box::pin(stream) as EventStream)
}
