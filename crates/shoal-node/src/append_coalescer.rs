//! Group commit for one Raft group's appends on its leader.
//!
//! Every PutRecords call touches many shards with a few records each; proposed one
//! by one, each would be its own Raft entry — its own log write, replication
//! message, apply and reply — and under load a group's entries would queue behind
//! each other. The coalescer keeps at most [`MAX_IN_FLIGHT`] proposals of a group
//! in flight; appends that arrive meanwhile wait and then leave together as one
//! entry, each keeping its own origin (a retried part is still stored once) and
//! learning its own offsets. When the group carries several shards, one entry
//! ([`Command::AppendShards`]) takes the waiting appends of all of them. Idle, an
//! append is proposed at once, alone: coalescing only ever happens when there is
//! a queue.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shoal_raft::{
    AppendPart, BatchOrigin, CoalescedBatch, Command, CommandResponse, Landed, RecordBatch, ShardAppend, ShardAppended,
    SharedRecords,
};
use shoal_types::{ShoalError, ShoalResult, now_millis};
use tokio::sync::oneshot;

use crate::groups::GroupHandle;
use crate::write_metrics::write_metrics;

/// Proposals of one shard in flight at once.
const MAX_IN_FLIGHT: usize = 2;
/// The most record bytes one coalesced entry takes (a single larger call still
/// goes alone).
const MAX_ENTRY_BYTES: usize = 4 * 1024 * 1024;
/// The most records one coalesced entry takes.
const MAX_ENTRY_RECORDS: usize = 10_000;

type Reply = oneshot::Sender<ShoalResult<Landed>>;

struct Waiting {
    /// The shard's store id.
    store: u64,
    origin: BatchOrigin,
    records: SharedRecords,
    bytes: usize,
    reply: Reply,
    /// When the append joined the queue.
    queued_at: Instant,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    in_flight: usize,
}

/// A group's queue of appends waiting to be proposed.
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

/// Proposes `records` for the shard stored under `store` on `handle`'s group,
/// alone or together with other appends waiting for it; returns where they
/// landed once a quorum has them and they are applied. `bytes` is what they
/// count against the shard's limits.
pub async fn append(
    handle: &Arc<GroupHandle>,
    store: u64,
    records: SharedRecords,
    bytes: usize,
    origin: BatchOrigin,
) -> ShoalResult<Landed> {
    let (reply, answer) = oneshot::channel();
    let start_proposer = {
        let mut queue = handle.appends.lock();
        queue.waiting.push_back(Waiting { store, origin, records, bytes, reply, queued_at: Instant::now() });
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
    // A PutRecords call appends to all its shards at once (one `join_all`): let
    // the appends to this group's other shards join the queue before the first
    // proposal leaves, so that they share its entry.
    tokio::task::yield_now().await;
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
    write_metrics().append_coalesced_parts.record(parts.len() as f64);
    // The parts of each shard, in the order they came.
    let mut by_shard: BTreeMap<u64, Vec<Waiting>> = BTreeMap::new();
    for part in parts {
        write_metrics().append_queued_seconds.record(part.queued_at.elapsed().as_secs_f64());
        by_shard.entry(part.store).or_default().push(part);
    }
    let mut stores = Vec::with_capacity(by_shard.len());
    let mut replies: Vec<Vec<(Reply, usize, usize)>> = Vec::with_capacity(by_shard.len());
    let mut batches: Vec<Vec<AppendPart>> = Vec::with_capacity(by_shard.len());
    for (store, parts) in by_shard {
        let (shard_replies, parts) = parts
            .into_iter()
            .map(|p| ((p.reply, p.records.len(), p.bytes), AppendPart { origin: p.origin, records: p.records }))
            .unzip();
        stores.push(store);
        replies.push(shard_replies);
        batches.push(parts);
    }
    let command = command_for(handle.group, &stores, batches, arrival_millis);
    let written_at = Instant::now();
    let written = handle.raft.client_write(Arc::new(command.into())).await;
    write_metrics().append_raft_write_seconds.record(written_at.elapsed().as_secs_f64());
    let outcome: Result<Vec<ShardAppended>, ShoalError> = match written {
        Ok(written) => match written.data {
            CommandResponse::Appended { log_index, first_offset, count, arrival_millis } => {
                Ok(vec![ShardAppended::Landed(vec![Landed { log_index, first_offset, count, arrival_millis }])])
            }
            CommandResponse::AppendedMany(landings) => Ok(vec![ShardAppended::Landed(landings)]),
            CommandResponse::Sealed { end } => Ok(vec![ShardAppended::Sealed { end }]),
            CommandResponse::AppendedShards(outcomes) => Ok(outcomes),
            other => Err(ShoalError::internal(format!("unexpected append response {other:?}"))),
        },
        Err(error) if error.forward_to_leader().is_some() => {
            Err(ShoalError::unavailable("shard leadership moved; retry"))
        }
        Err(error) => Err(ShoalError::unavailable(format!("append failed: {error}"))),
    };
    let outcomes = match outcome {
        Ok(outcomes) if outcomes.len() == replies.len() => outcomes,
        Ok(outcomes) => {
            let error = ShoalError::internal(format!("{} outcomes for {} shards", outcomes.len(), replies.len()));
            return answer_all(replies, &error);
        }
        Err(error) => return answer_all(replies, &error),
    };
    let mut landed_total = 0u64;
    for ((store, shard_replies), outcome) in stores.into_iter().zip(replies).zip(outcomes) {
        let landings = match outcome {
            ShardAppended::Landed(landings) if landings.len() == shard_replies.len() => landings,
            ShardAppended::Landed(landings) => {
                let error =
                    ShoalError::internal(format!("{} landings for {} appends", landings.len(), shard_replies.len()));
                answer_all(vec![shard_replies], &error);
                continue;
            }
            ShardAppended::Sealed { .. } => {
                answer_all(vec![shard_replies], &crate::shard_writer::sealed_error());
                continue;
            }
            ShardAppended::Unknown => {
                let error = ShoalError::unavailable(format!("group {} does not carry shard {store}", handle.group));
                answer_all(vec![shard_replies], &error);
                continue;
            }
        };
        let (records, bytes) = shard_replies
            .iter()
            .fold((0u64, 0u64), |(r, b), (_, records, bytes)| (r + *records as u64, b + *bytes as u64));
        landed_total += landings.iter().map(|l| u64::from(l.count)).sum::<u64>();
        if let Some(slot) = handle.shards.get(&store) {
            slot.metrics.incoming_records.increment(records);
            slot.metrics.incoming_bytes.increment(bytes);
            slot.load.record(records, bytes);
        }
        for ((reply, _, _), landed) in shard_replies.into_iter().zip(landings) {
            let _ = reply.send(Ok(landed));
        }
    }
    write_metrics().records_appended.increment(landed_total);
}

/// The entry that carries `batches` (the parts of each of `stores`, in order): for
/// a shard alone in its group the single-shard entries every version reads,
/// otherwise one [`Command::AppendShards`].
fn command_for(group: u64, stores: &[u64], batches: Vec<Vec<AppendPart>>, arrival_millis: u64) -> Command {
    if stores != [group] {
        let appends = stores
            .iter()
            .zip(batches)
            .map(|(shard, parts)| ShardAppend { shard: *shard, batch: CoalescedBatch { arrival_millis, parts } });
        return Command::AppendShards(appends.collect());
    }
    let mut parts: Vec<AppendPart> = batches.into_iter().flatten().collect();
    match parts.pop() {
        Some(AppendPart { origin, records }) if parts.is_empty() => {
            Command::Append(RecordBatch { records, arrival_millis, origin })
        }
        last => {
            parts.extend(last);
            Command::AppendMany(CoalescedBatch { arrival_millis, parts })
        }
    }
}

/// Answers every waiting append with `error`.
fn answer_all(replies: Vec<Vec<(Reply, usize, usize)>>, error: &ShoalError) {
    for (reply, _, _) in replies.into_iter().flatten() {
        let _ = reply.send(Err(error.clone()));
    }
}
