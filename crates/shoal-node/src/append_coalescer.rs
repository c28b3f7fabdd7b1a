//! Group commit for one shard's appends on its leader.
//!
//! Every PutRecords call touches many shards with a few records each; proposed one
//! by one, each would be its own Raft entry — its own log write, replication
//! message, apply and reply — and under load a shard's entries would queue behind
//! each other. The coalescer keeps at most [`MAX_IN_FLIGHT`] proposals of a shard
//! in flight; appends that arrive meanwhile wait and then leave together as one
//! entry ([`Command::AppendMany`]), each keeping its own origin (a retried part is
//! still stored once) and learning its own offsets. Idle, an append is proposed at
//! once, alone: coalescing only ever happens when there is a queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use shoal_raft::{AppendPart, BatchOrigin, CoalescedBatch, Command, CommandResponse, Landed, RecordBatch};
use shoal_types::{Record, ShoalError, ShoalResult, now_millis};
use tokio::sync::oneshot;

use crate::groups::GroupHandle;

/// Proposals of one shard in flight at once.
const MAX_IN_FLIGHT: usize = 2;
/// The most record bytes one coalesced entry takes (a single larger call still
/// goes alone).
const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;
/// The most records one coalesced entry takes.
const MAX_ENTRY_RECORDS: usize = 10_000;

type Reply = oneshot::Sender<ShoalResult<Landed>>;

struct Waiting {
    origin: BatchOrigin,
    records: Vec<Record>,
    bytes: usize,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    in_flight: usize,
}

/// A shard's queue of appends waiting to be proposed.
#[derive(Default)]
pub struct AppendCoalescer {
    queue: Mutex<Queue>,
}

/// Why an append got no answer from the proposal that took it.
fn dropped() -> ShoalError {
    ShoalError::unavailable("the append was dropped before it was proposed; retry")
}

impl AppendCoalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Proposes `records` on `handle`'s shard, alone or together with other appends
/// waiting for it; returns where they landed once a quorum has them and they are
/// applied. `bytes` is what they count against the shard's limits.
pub async fn append(
    handle: &Arc<GroupHandle>,
    records: Vec<Record>,
    bytes: usize,
    origin: BatchOrigin,
) -> ShoalResult<Landed> {
    let (reply, answer) = oneshot::channel();
    let start_proposer = {
        let mut queue = handle.appends.lock();
        queue.waiting.push_back(Waiting { origin, records, bytes, reply });
        let start = queue.in_flight < MAX_IN_FLIGHT;
        if start {
            queue.in_flight += 1;
        }
        start
    };
    if start_proposer {
        tokio::spawn(propose_while_waiting(handle.clone()));
    }
    answer.await.unwrap_or_else(|_| Err(dropped()))
}

/// Takes what waits (up to one entry's worth) and proposes it, until nothing waits.
async fn propose_while_waiting(handle: Arc<GroupHandle>) {
    loop {
        let parts = {
            let mut queue = handle.appends.lock();
            let mut parts = Vec::new();
            let (mut bytes, mut records) = (0usize, 0usize);
            while let Some(next) = queue.waiting.front() {
                let fits = bytes + next.bytes <= MAX_ENTRY_BYTES && records + next.records.len() <= MAX_ENTRY_RECORDS;
                if !parts.is_empty() && !fits {
                    break;
                }
                bytes += next.bytes;
                records += next.records.len();
                parts.extend(queue.waiting.pop_front());
            }
            if parts.is_empty() {
                queue.in_flight -= 1;
                return;
            }
            parts
        };
        propose(&handle, parts).await;
    }
}

/// Proposes `parts` as one entry and answers each.
async fn propose(handle: &GroupHandle, parts: Vec<Waiting>) {
    if !handle.raft.is_leader() {
        for part in parts {
            let _ = part.reply.send(Err(ShoalError::unavailable("this node is not the shard's leader; retry")));
        }
        return;
    }
    handle.wake();
    let arrival_millis = handle.next_arrival(now_millis());
    metrics::histogram!("shoal_append_coalesced_parts").record(parts.len() as f64);
    let mut replies = Vec::with_capacity(parts.len());
    let mut appends: Vec<AppendPart> = parts
        .into_iter()
        .map(|p| {
            replies.push((p.reply, p.records.len(), p.bytes));
            AppendPart { origin: p.origin, records: p.records }
        })
        .collect();
    let command = if appends.len() == 1 {
        let AppendPart { origin, records } = appends.remove(0);
        Command::Append(RecordBatch { records, arrival_millis, origin })
    } else {
        Command::AppendMany(CoalescedBatch { arrival_millis, parts: appends })
    };
    let outcome: Result<Vec<Landed>, ShoalError> = match handle.raft.client_write(command).await {
        Ok(written) => match written.data {
            CommandResponse::Appended { log_index, first_offset, count, arrival_millis } => {
                Ok(vec![Landed { log_index, first_offset, count, arrival_millis }])
            }
            CommandResponse::AppendedMany(landings) => Ok(landings),
            CommandResponse::Sealed { .. } => Err(crate::shard_writer::sealed_error()),
            other => Err(ShoalError::internal(format!("unexpected append response {other:?}"))),
        },
        Err(error) if error.forward_to_leader().is_some() => {
            Err(ShoalError::unavailable("shard leadership moved; retry"))
        }
        Err(error) => Err(ShoalError::unavailable(format!("append failed: {error}"))),
    };
    match outcome {
        Ok(landings) if landings.len() == replies.len() => {
            let (records, bytes) = replies
                .iter()
                .fold((0u64, 0u64), |(r, b), (_, records, bytes)| (r + *records as u64, b + *bytes as u64));
            let landed: u64 = landings.iter().map(|l| u64::from(l.count)).sum();
            let (stream, shard) = handle.labels.clone();
            metrics::counter!("shoal_records_appended_total").increment(landed);
            metrics::counter!("shoal_shard_incoming_records_total", "stream" => stream.clone(), "shard" => shard.clone())
                .increment(records);
            metrics::counter!("shoal_shard_incoming_bytes_total", "stream" => stream, "shard" => shard)
                .increment(bytes);
            handle.load.record(records, bytes);
            for ((reply, _, _), landed) in replies.into_iter().zip(landings) {
                let _ = reply.send(Ok(landed));
            }
        }
        Ok(landings) => {
            let error = ShoalError::internal(format!("{} landings for {} appends", landings.len(), replies.len()));
            for (reply, _, _) in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            for (reply, _, _) in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
