//! Collection: concurrent PutRecords parts bound for one node leave as one call.
//!
//! A leader-aware producer splits every PutRecords call by leader, so under load
//! many small parts head for the same node at once. Sent one by one, each part is
//! a gRPC call of its own: a request to decode, a handler task and an answer on
//! the node, a stream on the client's connection. Like the KPL's collection and a
//! Kafka producer's batches per partition leader, a [`Collector`] keeps at most
//! [`MAX_CALLS_IN_FLIGHT`] calls in flight to its node; parts that arrive
//! meanwhile wait, and leave together as one call of at most
//! [`MAX_RECORDS_PER_PUT`] records and [`MAX_PUT_RECORDS_BYTES`], each caller
//! getting its own records' results. Idle, a part leaves at once, alone: there is
//! no timer and no linger, collection only happens when there is a queue.
//!
//! A collected call the node refuses as a whole (a record one caller got wrong, or
//! the stream gone) is sent again part by part, so each caller gets the answer its
//! own records earn, with record indexes that are its own; one that stays
//! unavailable through the client's retries is not (each part would meet the
//! same). A caller that gives up while its part waits does not take the part
//! back: it is sent with the next call, as a call already on the wire would be.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::join_all;
use shoal_proto::v1 as proto;
use shoal_types::limits::{MAX_PUT_RECORDS_BYTES, MAX_RECORDS_PER_PUT};
use shoal_types::{ShoalError, ShoalResult};
use tokio::sync::oneshot;

use crate::{Record, ShoalClient};

/// Calls in flight to one node at once; parts beyond wait and are collected.
///
/// Four since a stream of up to 16 shards has one leader (twenty-second
/// session): two, chosen when every node led part of a stream (six calls in
/// flight to a three-node cluster), kept a producer's pipeline to its one leader
/// short. At 1 KiB max, four gave 93,000–107,000 records/s against two's
/// 87,000–93,000, every run; at half of max the two were alike
/// (docs/performance.md).
pub const MAX_CALLS_IN_FLIGHT: usize = 4;

type Answer = ShoalResult<proto::PutRecordsResponse>;

/// One caller's records for the node, waiting for a call.
struct Part {
    records: Vec<Record>,
    bytes: usize,
    reply: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Part>,
    in_flight: usize,
}

/// Sends one stream's PutRecords parts to one node, collecting those that
/// arrive while [`MAX_CALLS_IN_FLIGHT`] calls are out.
pub struct Collector {
    client: ShoalClient,
    stream: String,
    queue: Mutex<Queue>,
    /// PutRecords calls made so far: a counter the caller may share among the
    /// collectors of several nodes.
    calls: Arc<AtomicU64>,
}

/// What a record counts against a call's size limit: its partition key and data.
fn billed_bytes(records: &[Record]) -> usize {
    records.iter().map(|r| r.partition_key.len() + r.data.len()).sum()
}

/// Why a part got no answer.
fn dropped() -> ShoalError {
    ShoalError::unavailable("the records were dropped before they were sent; retry")
}

impl Collector {
    /// A collector for `stream` on the node `client` reaches, counting the calls
    /// it makes in `calls`.
    pub fn new(client: ShoalClient, stream: &str, calls: Arc<AtomicU64>) -> Arc<Collector> {
        Arc::new(Collector { client, stream: stream.to_string(), queue: Mutex::default(), calls })
    }

    /// One PutRecords call to the node.
    async fn call(&self, records: Vec<Record>) -> Answer {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.client.put_records(&self.stream, records).await
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// PutRecords of `records` on this node: at once if a call slot is free and
    /// nobody waits, else together with the other parts waiting.
    pub async fn put_records(self: &Arc<Self>, records: Vec<Record>) -> Answer {
        // Either a free slot (the records go now) or a place in the queue.
        let turn = {
            let mut queue = self.lock();
            if queue.in_flight < MAX_CALLS_IN_FLIGHT && queue.waiting.is_empty() {
                queue.in_flight += 1;
                Ok(records)
            } else {
                let (reply, answer) = oneshot::channel();
                let bytes = billed_bytes(&records);
                queue.waiting.push_back(Part { records, bytes, reply });
                Err(answer)
            }
        };
        match turn {
            Ok(records) => {
                // The slot passes on to the waiting parts even if this call is dropped.
                let _slot = Slot(self.clone());
                self.call(records).await
            }
            Err(answer) => answer.await.unwrap_or_else(|_| Err(dropped())),
        }
    }

    /// A call finished: its slot sends the waiting parts, or is freed.
    fn release(self: &Arc<Self>) {
        let parts = {
            let mut queue = self.lock();
            let parts = take_call(&mut queue.waiting);
            if parts.is_empty() {
                queue.in_flight -= 1;
                return;
            }
            parts
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left to send on: the parts' callers learn they were dropped.
            self.lock().in_flight -= 1;
            return;
        };
        let collector = self.clone();
        runtime.spawn(async move {
            let _slot = Slot(collector.clone());
            collector.send(parts).await;
        });
    }

    /// Sends `parts` as one call and answers each caller with its own results.
    async fn send(&self, parts: Vec<Part>) {
        let parts = match <[Part; 1]>::try_from(parts) {
            Ok([part]) => return self.send_alone(part).await,
            Err(parts) => parts,
        };
        // Several parts: the records are cloned (their data is shared, not
        // copied) so that each part can be sent again on its own.
        let records: Vec<Record> = parts.iter().flat_map(|part| part.records.iter().cloned()).collect();
        let total = records.len();
        match self.call(records).await {
            Ok(answer) if answer.records.len() == total => split(answer, parts),
            Ok(answer) => fail_all(
                parts,
                ShoalError::internal(format!(
                    "PutRecords answered {} results for {total} records",
                    answer.records.len()
                )),
            ),
            // Still unavailable after the client's retries: alone, each part would
            // have met the same, so it is not sent again.
            Err(error) if error.code.is_retryable() => fail_all(parts, error),
            // Refused as a whole: each part on its own earns its own answer.
            Err(_) => {
                join_all(parts.into_iter().map(|part| self.send_alone(part))).await;
            }
        }
    }

    /// Sends one part as a call of its own and answers its caller.
    async fn send_alone(&self, part: Part) {
        let answer = self.call(part.records).await;
        let _ = part.reply.send(answer);
    }
}

/// Answers every part with `error`.
fn fail_all(parts: Vec<Part>, error: ShoalError) {
    for part in parts {
        let _ = part.reply.send(Err(error.clone()));
    }
}

/// Returns a call slot to its collector when the call ends, however it ends.
struct Slot(Arc<Collector>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The waiting parts the next call takes: the oldest first, as many as fit in one
/// PutRecords call (the first always goes, however large).
fn take_call(waiting: &mut VecDeque<Part>) -> Vec<Part> {
    let (mut records, mut bytes) = (0, 0);
    let mut parts = Vec::new();
    while let Some(next) = waiting.front() {
        let fits = records + next.records.len() <= MAX_RECORDS_PER_PUT && bytes + next.bytes <= MAX_PUT_RECORDS_BYTES;
        if !parts.is_empty() && !fits {
            break;
        }
        records += next.records.len();
        bytes += next.bytes;
        parts.extend(waiting.pop_front());
    }
    parts
}

/// Hands each part its own slice of a collected call's answer, in order. The
/// failed count is each part's own; the forwarded count, known only for the
/// whole call, is handed out in order (its sum stays the call's).
fn split(answer: proto::PutRecordsResponse, parts: Vec<Part>) {
    let mut results = answer.records.into_iter();
    let mut forwarded = answer.forwarded_record_count;
    for part in parts {
        let records: Vec<proto::PutRecordsResultEntry> = results.by_ref().take(part.records.len()).collect();
        let failed = records.iter().filter(|r| !r.error_code.is_empty()).count();
        let own_forwarded = forwarded.min(u32::try_from(records.len()).unwrap_or(u32::MAX));
        forwarded -= own_forwarded;
        let _ = part.reply.send(Ok(proto::PutRecordsResponse {
            failed_record_count: u32::try_from(failed).unwrap_or(u32::MAX),
            records,
            forwarded_record_count: own_forwarded,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(records: usize, record_bytes: usize) -> (Part, oneshot::Receiver<Answer>) {
        let (reply, answer) = oneshot::channel();
        let records: Vec<Record> = (0..records)
            .map(|i| Record {
                partition_key: format!("k{i}"),
                data: vec![0; record_bytes].into(),
                explicit_hash_key: None,
            })
            .collect();
        (Part { bytes: billed_bytes(&records), records, reply }, answer)
    }

    #[test]
    fn a_call_takes_the_oldest_parts_that_fit_in_one_put_records() {
        let mut waiting: VecDeque<Part> = [300, 150, 100, 20].into_iter().map(|n| part(n, 1).0).collect();
        let sizes = |parts: &[Part]| parts.iter().map(|p| p.records.len()).collect::<Vec<_>>();
        assert_eq!(sizes(&take_call(&mut waiting)), [300, 150], "100 more would pass 500 records");
        assert_eq!(sizes(&take_call(&mut waiting)), [100, 20]);
        assert!(take_call(&mut waiting).is_empty());
        // Bytes count too: two parts of 3 MiB do not share a call; one too large still goes.
        let mut waiting: VecDeque<Part> = [3, 3].into_iter().map(|n| part(n, 1024 * 1024).0).collect();
        assert_eq!(sizes(&take_call(&mut waiting)), [3]);
        let mut waiting: VecDeque<Part> = [6, 1].into_iter().map(|n| part(n, 1024 * 1024).0).collect();
        assert_eq!(sizes(&take_call(&mut waiting)), [6], "the first part goes however large");
    }

    #[test]
    fn each_part_gets_its_own_slice_of_a_collected_answer() {
        let ((a, a_answer), (b, b_answer)) = (part(2, 1), part(3, 1));
        let entry = |shard: &str, error: &str| proto::PutRecordsResultEntry {
            shard_id: shard.into(),
            error_code: error.into(),
            ..Default::default()
        };
        let answer = proto::PutRecordsResponse {
            failed_record_count: 1,
            records: vec![entry("s0", ""), entry("s1", ""), entry("s2", ""), entry("", "Throttled"), entry("s4", "")],
            forwarded_record_count: 3,
        };
        split(answer, vec![a, b]);
        let a = a_answer.blocking_recv().expect("answered").expect("written");
        let b = b_answer.blocking_recv().expect("answered").expect("written");
        assert_eq!(a.records.iter().map(|r| r.shard_id.as_str()).collect::<Vec<_>>(), ["s0", "s1"]);
        assert_eq!(b.records.iter().map(|r| r.shard_id.as_str()).collect::<Vec<_>>(), ["s2", "", "s4"]);
        assert_eq!((a.failed_record_count, b.failed_record_count), (0, 1));
        assert_eq!(a.forwarded_record_count + b.forwarded_record_count, 3);
    }
}
