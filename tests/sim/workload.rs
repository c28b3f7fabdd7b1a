//! Clients of the simulated cluster and what they were promised.
//!
//! Producers append numbered record batches to a shard group, one batch at a
//! time, through whichever node they believe leads it. In a group that carries
//! several shards a batch goes to one of them, and the two batches of a
//! coalesced entry may go to different shards, as a packed group's leader
//! proposes them. After an ambiguous failure
//! they retry with the same origin id and `retry_since_millis` set, as Shoal's
//! shard writer does, so a batch that did commit is not stored twice. Metadata
//! clients create streams the same way. The [`Ledger`] remembers every
//! acknowledgement, in order, for the final checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use shoal_raft::{
    AppendPart, BatchOrigin, CoalescedBatch, Command, CommandResponse, Landed, MetaCommand, MetaResponse, RecordBatch,
    ShardAppend, ShardAppended,
};
use shoal_types::stream::META_GROUP_ID;
use shoal_types::{ErrorCode, GroupId, NodeId, Record};
use tokio::time::Instant;

use super::network::SimNetwork;
use super::trace::Trace;

/// Arrival times are virtual milliseconds after this (a realistic epoch).
const EPOCH_MILLIS: u64 = 1_700_000_000_000;
/// How far before its first attempt a retry looks for its batch (as the node).
const RETRY_LOOKBACK_MILLIS: u64 = 30_000;
/// How long one attempt may wait for its answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// After this long a client gives up on a batch; its outcome stays unknown.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// A batch a producer got acknowledged: records at offsets
/// `first_offset..first_offset + count` of entry `log_index`.
#[derive(Debug, Clone, Copy)]
pub struct AckedBatch {
    /// The store of the shard the batch went to.
    pub store: u64,
    pub producer: u32,
    pub seq: u64,
    pub log_index: u64,
    pub first_offset: u32,
    pub count: u32,
}

#[derive(Default)]
struct Books {
    batches: Vec<AckedBatch>,
    streams: Vec<String>,
    unknown: u64,
    violations: Vec<String>,
}

/// Every acknowledgement clients received, in the order they received them.
#[derive(Clone, Default)]
pub struct Ledger {
    books: Arc<Mutex<Books>>,
}

impl Ledger {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn acked_batches(&self) -> Vec<AckedBatch> {
        self.books().batches.clone()
    }

    pub fn acked_streams(&self) -> Vec<String> {
        self.books().streams.clone()
    }

    /// Batches or commands whose client gave up without an answer.
    pub fn unknown(&self) -> u64 {
        self.books().unknown
    }

    /// Answers no correct cluster gives (e.g. a duplicate name on a first attempt).
    pub fn violations(&self) -> Vec<String> {
        self.books().violations.clone()
    }
}

/// The data of record `index` of batch `seq` of `producer`.
pub fn payload(producer: u32, seq: u64, index: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(16);
    data.extend_from_slice(&producer.to_be_bytes());
    data.extend_from_slice(&seq.to_be_bytes());
    data.extend_from_slice(&index.to_be_bytes());
    data
}

/// `(producer, seq, index)` back from a record's data.
pub fn parse_payload(data: &[u8]) -> Option<(u32, u64, u32)> {
    let producer = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?);
    let seq = u64::from_be_bytes(data.get(4..12)?.try_into().ok()?);
    let index = u32::from_be_bytes(data.get(12..16)?.try_into().ok()?);
    Some((producer, seq, index))
}

/// A client's notion of where to send: the last leader it heard of.
struct Target {
    node: NodeId,
    nodes: Vec<NodeId>,
}

impl Target {
    fn follow(&mut self, leader: Option<NodeId>, rng: &mut StdRng) {
        self.node = match leader {
            Some(leader) => leader,
            None => self.nodes[rng.random_range(0..self.nodes.len())],
        };
    }
}

/// Proposes `command` to `group` until a node answers, retrying through leader
/// changes; `make` builds each attempt's command (`retry` tells if it is one).
/// Returns `None` when the client gives up.
async fn propose(
    network: &SimNetwork,
    group: GroupId,
    target: &mut Target,
    rng: &mut StdRng,
    mut make: impl FnMut(bool) -> Command,
) -> Option<CommandResponse> {
    let deadline = Instant::now() + GIVE_UP_AFTER;
    let mut retry = false;
    while Instant::now() < deadline {
        let answer = match network.group(target.node, group) {
            None => None,
            Some(raft) => {
                match tokio::time::timeout(ATTEMPT_TIMEOUT, raft.client_write(std::sync::Arc::new(make(retry).into())))
                    .await
                {
                    Ok(Ok(written)) => return Some(written.data),
                    Ok(Err(error)) => error.forward_to_leader().map(|f| f.leader_id),
                    Err(_) => None,
                }
            }
        };
        target.follow(answer.flatten(), rng);
        retry = true;
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..80))).await;
    }
    None
}

/// What every client works with.
#[derive(Clone)]
pub struct ClientEnv {
    pub network: SimNetwork,
    pub trace: Trace,
    pub ledger: Ledger,
    pub nodes: Vec<NodeId>,
}

/// Appends batches of 1–3 records to the shards (`stores`) of `group` until
/// `until`, one at a time.
pub async fn run_producer(
    env: ClientEnv,
    group: GroupId,
    stores: &'static [u64],
    producer: u32,
    mut rng: StdRng,
    until: Instant,
) {
    let lone = stores == [group];
    let ClientEnv { network, trace, ledger, nodes } = env;
    let mut target = Target { node: nodes[0], nodes };
    let mut seq = 0u64;
    while Instant::now() < until {
        // Sometimes two batches leave as one coalesced entry, as a shard leader's
        // group commit proposes them; each part keeps its own origin.
        let parts = if rng.random_bool(0.3) { 2 } else { 1 };
        let mut batches: Vec<(u64, u128, Vec<Record>, u64)> = (0..parts)
            .map(|_| {
                seq += 1;
                let store = stores[rng.random_range(0..stores.len())];
                let count = rng.random_range(1..=3u32);
                let records = (0..count)
                    .map(|i| Record {
                        partition_key: format!("producer-{producer}"),
                        explicit_hash_key: None,
                        data: payload(producer, seq, i).into(),
                    })
                    .collect();
                (seq, (u128::from(producer) << 64) | u128::from(seq), records, store)
            })
            .collect();
        // One shard's parts side by side, as the answer lists them.
        batches.sort_by_key(|(_, _, _, store)| *store);
        let first_attempt_millis = EPOCH_MILLIS + trace.now_ms();
        let make = |retry: bool| {
            let retry_since_millis = if retry { first_attempt_millis.saturating_sub(RETRY_LOOKBACK_MILLIS) } else { 0 };
            let arrival_millis = EPOCH_MILLIS + trace.now_ms();
            let part = |id: &u128, records: &Vec<Record>| AppendPart {
                origin: BatchOrigin { id: *id, retry_since_millis },
                records: std::sync::Arc::new(records.clone()),
            };
            if !lone {
                let mut appends: Vec<ShardAppend> = Vec::new();
                for (_, id, records, store) in &batches {
                    match appends.last_mut() {
                        Some(last) if last.shard == *store => last.batch.parts.push(part(id, records)),
                        _ => appends.push(ShardAppend {
                            shard: *store,
                            batch: CoalescedBatch { arrival_millis, parts: vec![part(id, records)] },
                        }),
                    }
                }
                return Command::AppendShards(appends);
            }
            match batches.as_slice() {
                [(_, id, records, _)] => Command::Append(RecordBatch {
                    records: std::sync::Arc::new(records.clone()),
                    arrival_millis,
                    origin: BatchOrigin { id: *id, retry_since_millis },
                }),
                _ => Command::AppendMany(CoalescedBatch {
                    arrival_millis,
                    parts: batches.iter().map(|(_, id, records, _)| part(id, records)).collect(),
                }),
            }
        };
        let landings = match propose(&network, group, &mut target, &mut rng, make).await {
            Some(CommandResponse::Appended { log_index, first_offset, count, arrival_millis }) => {
                Some(vec![Landed { log_index, first_offset, count, arrival_millis }])
            }
            Some(CommandResponse::AppendedMany(landings)) => Some(landings),
            Some(CommandResponse::AppendedShards(outcomes))
                if outcomes.iter().all(|o| matches!(o, ShardAppended::Landed(_))) =>
            {
                Some(
                    outcomes
                        .into_iter()
                        .flat_map(|o| match o {
                            ShardAppended::Landed(landings) => landings,
                            _ => Vec::new(),
                        })
                        .collect(),
                )
            }
            Some(other) => {
                ledger.books().violations.push(format!("group {group}: append answered {other:?}"));
                None
            }
            None => {
                trace.record(format!("group {group}: producer {producer} gave up on {} batch(es) up to {seq}", parts));
                ledger.books().unknown += 1;
                None
            }
        };
        if let Some(landings) = landings {
            if landings.len() != batches.len() {
                ledger.books().violations.push(format!(
                    "group {group}: {} batches answered with {} landings",
                    batches.len(),
                    landings.len()
                ));
            }
            for ((seq, _, records, store), landed) in batches.iter().zip(landings) {
                let (seq, count, log_index) = (*seq, records.len() as u32, landed.log_index);
                trace.record(format!(
                    "group {group}: producer {producer} batch {seq} acked at {log_index}+{} x{}",
                    landed.first_offset, landed.count
                ));
                if landed.count != count {
                    ledger.books().violations.push(format!(
                        "group {group}: producer {producer} batch {seq} of {count} records acked with {}",
                        landed.count
                    ));
                }
                ledger.books().batches.push(AckedBatch {
                    store: *store,
                    producer,
                    seq,
                    log_index,
                    first_offset: landed.first_offset,
                    count: landed.count,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..100))).await;
    }
}

/// Creates streams `stream-{client}-{n}` until `until`, one at a time.
pub async fn run_meta_client(env: ClientEnv, client: u32, mut rng: StdRng, until: Instant) {
    let ClientEnv { network, trace, ledger, nodes } = env;
    let mut target = Target { node: nodes[0], nodes };
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let name = format!("stream-{client}-{n}");
        let command = MetaCommand::CreateStream {
            name: name.clone(),
            shard_count: 1,
            retention_hours: 24,
            now_millis: EPOCH_MILLIS + trace.now_ms(),
        };
        let mut retried = false;
        let make = |retry: bool| {
            retried |= retry;
            Command::Meta(command.clone())
        };
        match propose(&network, META_GROUP_ID, &mut target, &mut rng, make).await {
            Some(CommandResponse::Meta(MetaResponse::Stream(_))) => {
                trace.record(format!("meta: {name} created"));
                ledger.books().streams.push(name);
            }
            // An earlier attempt took effect: the retry found the name taken.
            Some(CommandResponse::Meta(MetaResponse::Error(error)))
                if retried && error.code == ErrorCode::ResourceInUse =>
            {
                trace.record(format!("meta: {name} created (by an earlier attempt)"));
                ledger.books().streams.push(name);
            }
            Some(other) => {
                ledger.books().violations.push(format!("meta: creating {name} answered {other:?}"));
            }
            None => {
                trace.record(format!("meta: gave up on {name}"));
                ledger.books().unknown += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
    }
}

/// Proposes one batch (to the shard stored under `store`) after the faults have
/// healed; the answer must come soon.
pub async fn probe_progress(
    network: &SimNetwork,
    group: GroupId,
    store: u64,
    nodes: Vec<NodeId>,
    rng: &mut StdRng,
    trace: &Trace,
) -> Option<CommandResponse> {
    let mut target = Target { node: nodes[0], nodes };
    let now = EPOCH_MILLIS + trace.now_ms();
    let records = vec![Record {
        partition_key: "probe".into(),
        explicit_hash_key: None,
        data: bytes::Bytes::from_static(b"probe"),
    }];
    let make = |_| match group {
        META_GROUP_ID => Command::Meta(MetaCommand::SetAccountSettings { settings: format!("{{\"probe\":{now}}}") }),
        _ if store != group => Command::AppendShards(vec![ShardAppend {
            shard: store,
            batch: CoalescedBatch {
                arrival_millis: now,
                parts: vec![AppendPart {
                    origin: BatchOrigin::default(),
                    records: std::sync::Arc::new(records.clone()),
                }],
            },
        }]),
        _ => Command::Append(RecordBatch {
            records: std::sync::Arc::new(records.clone()),
            arrival_millis: now,
            origin: BatchOrigin::default(),
        }),
    };
    propose(network, group, &mut target, rng, make).await
}
