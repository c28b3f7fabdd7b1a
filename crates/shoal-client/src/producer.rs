//! A batching producer: collects records for a short linger, sends them in
//! PutRecords calls (optionally KPL-aggregated), retries throttled and failed
//! records with backoff, and keeps each partition key's records in order.
//!
//! ```no_run
//! # async fn run(client: shoal_client::ShoalClient) -> shoal_client::ShoalResult<()> {
//! use shoal_client::producer::{Producer, ProducerConfig};
//! let producer = Producer::start(client, "orders", ProducerConfig { aggregate: true, ..Default::default() });
//! let ack = producer.send("customer-7", b"order 1".to_vec()).await?; // queued
//! let sent = ack.await?;                                            // stored on a quorum
//! println!("{} {} {}", sent.shard_id, sent.sequence_number, sent.sub_sequence_number);
//! producer.close().await;
//! # Ok(()) }
//! ```
//!
//! Order: one call is in flight at a time, records that failed are sent again
//! before any newer record, and a call's records for one shard are stored
//! together or not at all (one Raft entry per shard). So a key's records land
//! in the order they were sent, retries included.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use shoal_types::{ErrorCode, HashKey, ShoalError, ShoalResult};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::aggregation::{UserRecord, aggregate, aggregated_size};
use crate::client::{Record, ShoalClient};

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How long a record may wait for others to share its call.
    pub linger: Duration,
    /// Records (or aggregates) per PutRecords call: at most 500.
    pub max_batch_records: usize,
    /// Bytes per PutRecords call: at most 5 MiB.
    pub max_batch_bytes: usize,
    /// Pack the records bound for one shard into KPL aggregates.
    pub aggregate: bool,
    /// Bytes per aggregate (the KPL's default is 50 KiB).
    pub max_aggregate_bytes: usize,
    /// First pause before a retry; doubles up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Attempts per record before its send fails (0: retry forever).
    pub max_attempts: u32,
    /// Records queued before `send` waits (back-pressure).
    pub queue: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            linger: Duration::from_millis(20),
            max_batch_records: 500,
            max_batch_bytes: 4 * 1024 * 1024,
            aggregate: false,
            max_aggregate_bytes: 50 * 1024,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_attempts: 0,
            queue: 10_000,
        }
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub shard_id: String,
    pub sequence_number: String,
    /// Its place in the aggregate it travelled in (0 when not aggregated).
    pub sub_sequence_number: u64,
}

struct Pending {
    record: UserRecord,
    attempts: u32,
    done: oneshot::Sender<ShoalResult<Sent>>,
}

enum Message {
    Record(Pending),
    Flush(oneshot::Sender<()>),
}

pub struct Producer {
    tx: mpsc::Sender<Message>,
    task: JoinHandle<()>,
}

impl Producer {
    pub fn start(client: ShoalClient, stream: &str, config: ProducerConfig) -> Producer {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let worker = Worker { client, stream: stream.into(), config, shards: Vec::new(), shards_read: None };
        Producer { tx, task: tokio::spawn(worker.run(rx)) }
    }

    /// Queues a record; the returned future resolves once it is stored (or has
    /// failed for good). Waits while the queue is full.
    pub async fn send(
        &self,
        partition_key: &str,
        data: Vec<u8>,
    ) -> ShoalResult<impl Future<Output = ShoalResult<Sent>> + use<>> {
        let (done, ack) = oneshot::channel();
        let record = UserRecord { partition_key: partition_key.into(), explicit_hash_key: None, data };
        self.tx
            .send(Message::Record(Pending { record, attempts: 0, done }))
            .await
            .map_err(|_| ShoalError::unavailable("the producer has stopped"))?;
        Ok(async move { ack.await.map_err(|_| ShoalError::unavailable("the producer stopped before sending"))? })
    }

    /// Waits until every record queued so far is stored or has failed.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }

    /// Flushes and stops.
    pub async fn close(self) {
        self.flush().await;
        drop(self.tx);
        let _ = self.task.await;
    }
}

struct Worker {
    client: ShoalClient,
    stream: String,
    config: ProducerConfig,
    /// Open shards by hash-key range start: `(start, end, shard id)`.
    shards: Vec<(u128, u128, String)>,
    /// When the shard map was read; it is read again every few seconds, since
    /// the cluster re-routes records of a resharded stream without telling.
    shards_read: Option<std::time::Instant>,
}

/// How long the producer trusts its shard map when aggregating.
const SHARD_MAP_TTL: Duration = Duration::from_secs(5);

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut queue: VecDeque<Pending> = VecDeque::new();
        let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
        let mut closed = false;
        let mut backoff = self.config.backoff;
        loop {
            if queue.is_empty() {
                for flush in flushes.drain(..) {
                    let _ = flush.send(());
                }
                if closed {
                    return;
                }
                match rx.recv().await {
                    Some(Message::Record(pending)) => queue.push_back(pending),
                    Some(Message::Flush(done)) => {
                        let _ = done.send(());
                        continue;
                    }
                    None => return,
                }
            }
            // Linger for company, unless the batch is already full.
            let deadline = tokio::time::Instant::now() + self.config.linger;
            while !closed && flushes.is_empty() && queue.len() < self.config.max_batch_records * 8 {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(Message::Record(pending))) => queue.push_back(pending),
                    Ok(Some(Message::Flush(done))) => flushes.push(done),
                    Ok(None) => closed = true,
                    Err(_) => break,
                }
            }
            let failed = self.send_batch(&mut queue).await;
            if failed {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
            } else {
                backoff = self.config.backoff;
            }
        }
    }

    /// The shard a partition key goes to, by the cached shard map.
    fn shard_of(&self, record: &UserRecord) -> String {
        let key = match &record.explicit_hash_key {
            Some(explicit) => HashKey::parse_explicit(explicit).map(|k| k.0).unwrap_or(0),
            None => HashKey::from_partition_key(&record.partition_key).0,
        };
        self.shards
            .iter()
            .find(|(start, end, _)| *start <= key && key <= *end)
            .map(|(_, _, id)| id.clone())
            .unwrap_or_default()
    }

    async fn refresh_shards(&mut self) {
        self.shards_read = Some(std::time::Instant::now());
        if let Ok(shards) = self.client.list_shards(&self.stream).await {
            self.shards = shards
                .into_iter()
                .filter(|s| s.ending_sequence_number.is_empty())
                .filter_map(|s| Some((s.starting_hash_key.parse().ok()?, s.ending_hash_key.parse().ok()?, s.shard_id)))
                .collect();
        }
    }

    /// Sends one call from the front of the queue; failed records go back to the
    /// front, in order. Returns whether anything failed.
    async fn send_batch(&mut self, queue: &mut VecDeque<Pending>) -> bool {
        if self.config.aggregate && self.shards_read.is_none_or(|read| read.elapsed() > SHARD_MAP_TTL) {
            self.refresh_shards().await;
        }
        // Group the front of the queue into entries: one record each, or aggregates per shard.
        let mut entries: Vec<(Record, Vec<Pending>)> = Vec::new();
        let mut open_aggregate: BTreeMap<String, usize> = BTreeMap::new();
        let mut bytes = 0usize;
        while let Some(pending) = queue.front() {
            let size = pending.record.data.len() + pending.record.partition_key.len();
            if self.config.aggregate {
                let shard = self.shard_of(&pending.record);
                if let Some(at) = open_aggregate.get(&shard).copied() {
                    let members: Vec<UserRecord> =
                        entries[at].1.iter().map(|p| p.record.clone()).chain([pending.record.clone()]).collect();
                    if aggregated_size(&members) <= self.config.max_aggregate_bytes
                        && bytes + size <= self.config.max_batch_bytes
                    {
                        let Some(pending) = queue.pop_front() else { break };
                        bytes += size;
                        entries[at].1.push(pending);
                        continue;
                    }
                }
                if entries.len() >= self.config.max_batch_records || bytes + size > self.config.max_batch_bytes {
                    break;
                }
                let Some(pending) = queue.pop_front() else { break };
                bytes += size;
                open_aggregate.insert(shard, entries.len());
                entries.push((Record::default(), vec![pending]));
            } else {
                if entries.len() >= self.config.max_batch_records
                    || (!entries.is_empty() && bytes + size > self.config.max_batch_bytes)
                {
                    break;
                }
                let Some(pending) = queue.pop_front() else { break };
                bytes += size;
                let record = Record {
                    data: pending.record.data.clone().into(),
                    partition_key: pending.record.partition_key.clone(),
                    explicit_hash_key: pending.record.explicit_hash_key.clone(),
                };
                entries.push((record, vec![pending]));
            }
        }
        if self.config.aggregate {
            for (record, members) in entries.iter_mut() {
                let users: Vec<UserRecord> = members.iter().map(|p| p.record.clone()).collect();
                if users.len() == 1 {
                    *record = Record {
                        data: users[0].data.clone().into(),
                        partition_key: users[0].partition_key.clone(),
                        explicit_hash_key: users[0].explicit_hash_key.clone(),
                    };
                } else if let Some(aggregated) = aggregate(&users) {
                    *record = aggregated;
                }
            }
        }
        let records: Vec<Record> = entries.iter().map(|(record, _)| record.clone()).collect();
        let outcome = self.client.put_records(&self.stream, records).await;
        let mut retry: Vec<Pending> = Vec::new();
        let mut resharded = false;
        match outcome {
            Ok(response) => {
                for ((_, members), result) in entries.into_iter().zip(response.records) {
                    if result.error_code.is_empty() {
                        for (i, pending) in members.into_iter().enumerate() {
                            let _ = pending.done.send(Ok(Sent {
                                shard_id: result.shard_id.clone(),
                                sequence_number: result.sequence_number.clone(),
                                sub_sequence_number: if self.config.aggregate { i as u64 } else { 0 },
                            }));
                        }
                    } else {
                        resharded |= result.error_message.contains("sealed");
                        let error = ShoalError::new(
                            ErrorCode::from_aws_type(&result.error_code).unwrap_or(ErrorCode::InternalFailure),
                            result.error_message.clone(),
                        );
                        self.requeue_or_fail(members, error, &mut retry);
                    }
                }
            }
            Err(error) if error.code.is_retryable() => {
                for (_, members) in entries {
                    self.requeue_or_fail(members, error.clone(), &mut retry);
                }
            }
            Err(error) => {
                for (_, members) in entries {
                    for pending in members {
                        let _ = pending.done.send(Err(error.clone()));
                    }
                }
            }
        }
        if resharded || (self.config.aggregate && !retry.is_empty()) {
            self.refresh_shards().await;
        }
        let failed = !retry.is_empty();
        for pending in retry.into_iter().rev() {
            queue.push_front(pending);
        }
        failed
    }

    fn requeue_or_fail(&self, members: Vec<Pending>, error: ShoalError, retry: &mut Vec<Pending>) {
        for mut pending in members {
            pending.attempts += 1;
            if self.config.max_attempts != 0 && pending.attempts >= self.config.max_attempts {
                let _ = pending.done.send(Err(error.clone()));
            } else {
                retry.push(pending);
            }
        }
    }
}
