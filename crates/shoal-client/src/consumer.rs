//! A consumer application member: shares a stream's shards with the other
//! members of its application through leases kept in the cluster, reads each
//! shard it holds, hands the records to a [`RecordProcessor`], and checkpoints.
//!
//! ```no_run
//! # async fn run(client: shoal_client::ShoalClient) -> shoal_client::ShoalResult<()> {
//! use shoal_client::consumer::{Batch, Checkpointer, Consumer, ConsumerConfig, ProcessResult, RecordProcessor};
//!
//! struct Print;
//! impl RecordProcessor for Print {
//!     async fn process(&self, batch: Batch, checkpointer: Checkpointer) -> ProcessResult {
//!         for record in &batch.records {
//!             println!("{} {}", batch.shard_id, String::from_utf8_lossy(&record.data));
//!         }
//!         checkpointer.checkpoint().await?; // after the last record of this batch
//!         Ok(())
//!     }
//! }
//!
//! let consumer = Consumer::start(client, "orders", ConsumerConfig::new("billing"), Print).await?;
//! // ... later: checkpoints what was processed and leaves the group.
//! consumer.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Guarantees: every record of a shard is handed to the processor in order, at
//! least once (a member that dies before checkpointing leaves the records after
//! its checkpoint to the next holder). A shard's children are leased only after
//! the shard was read to its end and checkpointed there, so each key's records
//! arrive in order across splits and merges. The next batch of a shard is read
//! only after `process` returns: a slow processor slows its shards down instead
//! of piling records up.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_types::{ErrorCode, ShoalError, ShoalResult};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aggregation::{ReadUserRecord, deaggregate};
use crate::client::{ShoalClient, StoredRecord};
use crate::proto;

pub type ProcessResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// What the application does with records.
pub trait RecordProcessor: Send + Sync + 'static {
    /// Handles a batch of one shard's records, in order. Returning an error
    /// stops reading the shard; the lease goes back and the records after the
    /// last checkpoint are read again (by this member or another).
    fn process(&self, batch: Batch, checkpointer: Checkpointer) -> impl Future<Output = ProcessResult> + Send;

    /// Called before the member checkpoints a shard on its own: at a closed
    /// shard's end, and when the member stops. A processor that holds records back
    /// (buffers them) must make them safe here, or that checkpoint would pass them.
    /// An error leaves the checkpoint where it was.
    fn flush(&self, shard_id: &str) -> impl Future<Output = ProcessResult> + Send {
        let _ = shard_id;
        async { Ok(()) }
    }
}

/// Records of one shard, in sequence-number order.
#[derive(Debug, Clone)]
pub struct Batch {
    pub shard_id: String,
    pub records: Vec<StoredRecord>,
    /// How far the last record is behind the shard's newest.
    pub millis_behind_latest: u64,
}

impl Batch {
    /// The user records, with KPL aggregates unpacked (sub-sequence numbers
    /// give each its place; checkpoint with `Checkpointer::checkpoint_at`).
    pub fn user_records(&self) -> Vec<ReadUserRecord> {
        self.records.iter().flat_map(deaggregate).collect()
    }
}

/// How a member gets a shard's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// GetRecords in a loop (pausing `idle_poll` when caught up).
    Polling,
    /// SubscribeToShard: the cluster pushes records as they are committed.
    Push,
}

/// Where a member starts on a shard that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub application: String,
    /// Unique within the application; by default host, process and a random part.
    pub member: String,
    /// A member not heard from for this long loses its shards.
    pub lease_timeout: Duration,
    pub start_position: StartPosition,
    /// Records per GetRecords call.
    pub batch_limit: u32,
    /// Pause before polling a shard again when it had nothing new.
    pub idle_poll: Duration,
    pub delivery: Delivery,
}

impl ConsumerConfig {
    pub fn new(application: &str) -> ConsumerConfig {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "member".into());
        let unique = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        ConsumerConfig {
            application: application.into(),
            member: format!("{host}-{}-{unique:08x}", std::process::id()),
            lease_timeout: Duration::from_secs(10),
            start_position: StartPosition::TrimHorizon,
            batch_limit: 1000,
            idle_poll: Duration::from_millis(200),
            delivery: Delivery::Polling,
        }
    }
}

/// Records how far a shard was processed, under the lease it was read with.
#[derive(Clone)]
pub struct Checkpointer {
    client: ShoalClient,
    group: proto::GroupRef,
    member: String,
    shard_id: String,
    epoch: u64,
    last_in_batch: Option<String>,
    progress: Arc<Mutex<ShardState>>,
}

impl Checkpointer {
    /// The shard this checkpointer records progress of.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// Checkpoints after the last record of the batch.
    pub async fn checkpoint(&self) -> ShoalResult<()> {
        match &self.last_in_batch {
            Some(sequence_number) => self.checkpoint_at(sequence_number, 0).await,
            None => Ok(()),
        }
    }

    /// Checkpoints after `sequence_number` (and sub-record `sub_sequence_number`
    /// of it, for aggregated records). Fails with `ResourceInUse` if this member
    /// no longer holds the shard: stop processing it then.
    pub async fn checkpoint_at(&self, sequence_number: &str, sub_sequence_number: u64) -> ShoalResult<()> {
        self.send(sequence_number, sub_sequence_number, false).await?;
        lock(&self.progress).checkpointed = Some(sequence_number.to_string());
        Ok(())
    }

    async fn send(&self, sequence_number: &str, sub_sequence_number: u64, shard_end: bool) -> ShoalResult<()> {
        let request = proto::CheckpointRequest {
            group: Some(self.group.clone()),
            member: self.member.clone(),
            shard_id: self.shard_id.clone(),
            epoch: self.epoch,
            sequence_number: sequence_number.into(),
            sub_sequence_number,
            shard_end,
        };
        self.client.checkpoint(request).await
    }
}

/// What a member knows about one shard it reads.
#[derive(Debug, Clone, Default)]
struct ShardState {
    processed: Option<String>,
    checkpointed: Option<String>,
    millis_behind_latest: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

struct ShardTask {
    epoch: u64,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// A running member of a consumer application.
pub struct Consumer {
    stop: watch::Sender<bool>,
    task: JoinHandle<ShoalResult<()>>,
    readers: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    shards: Arc<Mutex<BTreeMap<String, Arc<Mutex<ShardState>>>>>,
    member: String,
}

impl Consumer {
    /// Joins the application's group on `stream` and starts reading the shards
    /// leased to this member.
    pub async fn start<P: RecordProcessor>(
        client: ShoalClient,
        stream: &str,
        config: ConsumerConfig,
        processor: P,
    ) -> ShoalResult<Consumer> {
        let first = client.join_group(stream, &config.application, &config.member, config.lease_timeout).await?;
        let (stop, stopped) = watch::channel(false);
        let shards: Arc<Mutex<BTreeMap<String, Arc<Mutex<ShardState>>>>> = Arc::default();
        let readers: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let member = config.member.clone();
        let worker = Worker {
            client,
            group: proto::GroupRef { stream_name: stream.into(), application: config.application.clone() },
            config,
            processor: Arc::new(processor),
            running: BTreeMap::new(),
            shards: shards.clone(),
            readers: readers.clone(),
        };
        let task = tokio::spawn(worker.run(first, stopped));
        Ok(Consumer { stop, task, readers, shards, member })
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    /// The shards this member reads now.
    pub fn shards(&self) -> Vec<String> {
        lock(&self.shards).keys().cloned().collect()
    }

    /// Per shard held: how far the last batch read was behind the newest record (ms).
    pub fn lag_millis(&self) -> BTreeMap<String, u64> {
        lock(&self.shards).iter().map(|(shard, state)| (shard.clone(), lock(state).millis_behind_latest)).collect()
    }

    /// Stops reading, checkpoints what was processed, and leaves the group (its
    /// shards go to the other members at once).
    pub async fn shutdown(self) -> ShoalResult<()> {
        let _ = self.stop.send(true);
        self.task.await.map_err(|e| ShoalError::internal(format!("consumer task failed: {e}")))?
    }

    /// Stops at once, as a crash would: no checkpoint, no goodbye. The shards go
    /// to other members when the lease times out.
    pub fn abort(self) {
        self.task.abort();
        for reader in lock(&self.readers).drain(..) {
            reader.abort();
        }
    }
}

struct Worker<P> {
    client: ShoalClient,
    group: proto::GroupRef,
    config: ConsumerConfig,
    processor: Arc<P>,
    running: BTreeMap<String, ShardTask>,
    shards: Arc<Mutex<BTreeMap<String, Arc<Mutex<ShardState>>>>>,
    readers: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl<P: RecordProcessor> Worker<P> {
    async fn run(mut self, first: proto::GroupAssignment, mut stopped: watch::Receiver<bool>) -> ShoalResult<()> {
        let heartbeat = (self.config.lease_timeout / 3).max(Duration::from_millis(50));
        self.follow(first);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(heartbeat) => {}
                _ = stopped.changed() => break,
            }
            let (stream, application, member) =
                (self.group.stream_name.clone(), self.group.application.clone(), self.config.member.clone());
            let assignment = match self.client.group_heartbeat(&stream, &application, &member).await {
                Ok(assignment) => assignment,
                // Presumed dead (a long pause): join again and start over.
                Err(error) if error.code == ErrorCode::ResourceNotFound => {
                    tracing::warn!(%member, "membership expired; joining again");
                    self.stop_all().await;
                    self.client.join_group(&stream, &application, &member, self.config.lease_timeout).await?
                }
                Err(error) => {
                    tracing::warn!(%error, "heartbeat failed; retrying");
                    continue;
                }
            };
            self.follow(assignment);
        }
        self.stop_all().await;
        self.client.leave_group(&self.group.stream_name, &self.group.application, &self.config.member).await
    }

    /// Starts readers for new leases and stops those of leases lost.
    fn follow(&mut self, assignment: proto::GroupAssignment) {
        let leased: BTreeMap<String, proto::ShardLease> =
            assignment.leases.into_iter().map(|l| (l.shard_id.clone(), l)).collect();
        let finished: Vec<String> = self
            .running
            .iter()
            .filter(|(shard, task)| task.task.is_finished() || leased.get(*shard).is_none_or(|l| l.epoch != task.epoch))
            .map(|(shard, _)| shard.clone())
            .collect();
        for shard in finished {
            if let Some(task) = self.running.remove(&shard) {
                let _ = task.stop.send(true);
                lock(&self.shards).remove(&shard);
            }
        }
        for (shard, lease) in leased {
            if self.running.contains_key(&shard) {
                continue;
            }
            let state = Arc::new(Mutex::new(ShardState::default()));
            let (stop, stopped) = watch::channel(false);
            let epoch = lease.epoch;
            let reader = ShardReader {
                client: self.client.clone(),
                group: self.group.clone(),
                config: self.config.clone(),
                lease,
                processor: self.processor.clone(),
                state: state.clone(),
            };
            let task = tokio::spawn(reader.run(stopped));
            {
                let mut readers = lock(&self.readers);
                readers.retain(|r| !r.is_finished());
                readers.push(task.abort_handle());
            }
            lock(&self.shards).insert(shard.clone(), state.clone());
            self.running.insert(shard, ShardTask { epoch, stop, task });
        }
    }

    /// Stops every reader; each checkpoints what it processed.
    async fn stop_all(&mut self) {
        for (_, task) in std::mem::take(&mut self.running) {
            let _ = task.stop.send(true);
            let _ = task.task.await;
        }
        lock(&self.shards).clear();
    }
}

struct ShardReader<P> {
    client: ShoalClient,
    group: proto::GroupRef,
    config: ConsumerConfig,
    lease: proto::ShardLease,
    processor: Arc<P>,
    state: Arc<Mutex<ShardState>>,
}

impl<P: RecordProcessor> ShardReader<P> {
    fn checkpointer(&self, last_in_batch: Option<String>) -> Checkpointer {
        Checkpointer {
            client: self.client.clone(),
            group: self.group.clone(),
            member: self.config.member.clone(),
            shard_id: self.lease.shard_id.clone(),
            epoch: self.lease.epoch,
            last_in_batch,
            progress: self.state.clone(),
        }
    }

    async fn iterator(&self, after: Option<&str>) -> ShoalResult<String> {
        let (stream, shard) = (&self.group.stream_name, &self.lease.shard_id);
        match after {
            Some(sequence_number) => {
                self.client
                    .get_shard_iterator(stream, shard, "AFTER_SEQUENCE_NUMBER", Some(sequence_number), None)
                    .await
            }
            None => {
                let kind = match self.config.start_position {
                    StartPosition::TrimHorizon => "TRIM_HORIZON",
                    StartPosition::Latest => "LATEST",
                };
                self.client.get_shard_iterator(stream, shard, kind, None, None).await
            }
        }
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        if let Err(error) = self.read(&mut stopped).await {
            tracing::warn!(shard = %self.lease.shard_id, %error, "shard reader stopped");
        }
    }

    /// Hands a batch to the processor and remembers how far it got.
    async fn deliver(&self, records: Vec<StoredRecord>, millis_behind_latest: u64) -> ShoalResult<()> {
        let Some(last) = records.last().map(|r| r.sequence_number.clone()) else { return Ok(()) };
        let batch = Batch { shard_id: self.lease.shard_id.clone(), records, millis_behind_latest };
        if let Err(error) = self.processor.process(batch, self.checkpointer(Some(last.clone()))).await {
            return Err(ShoalError::internal(format!("the record processor failed: {error}")));
        }
        lock(&self.state).processed = Some(last);
        Ok(())
    }

    /// A closed shard read to its end: checkpoint there so its children can be leased.
    async fn finish(&self) -> ShoalResult<()> {
        if let Err(error) = self.processor.flush(&self.lease.shard_id).await {
            return Err(ShoalError::internal(format!("the record processor failed to flush: {error}")));
        }
        let processed = lock(&self.state).processed.clone().unwrap_or_default();
        self.checkpointer(None).send(&processed, 0, true).await?;
        tracing::debug!(shard = %self.lease.shard_id, "shard finished");
        Ok(())
    }

    /// Push delivery: subscribe, and subscribe again after the last processed
    /// record whenever the subscription breaks.
    async fn read_pushed(&self, stopped: &mut watch::Receiver<bool>) -> ShoalResult<()> {
        loop {
            let processed = lock(&self.state).processed.clone();
            let (stream, shard) = (&self.group.stream_name, &self.lease.shard_id);
            let mut events = match processed.as_deref() {
                Some(after) => {
                    self.client.subscribe_to_shard(stream, shard, "AFTER_SEQUENCE_NUMBER", Some(after)).await?
                }
                None => {
                    let start = match self.config.start_position {
                        StartPosition::TrimHorizon => "TRIM_HORIZON",
                        StartPosition::Latest => "LATEST",
                    };
                    self.client.subscribe_to_shard(stream, shard, start, None).await?
                }
            };
            loop {
                let event = tokio::select! {
                    event = events.message() => event,
                    _ = stopped.changed() => return self.final_checkpoint().await,
                };
                let event = match event {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(shard = %shard, %status, "subscription broke; subscribing again");
                        tokio::time::sleep(self.config.idle_poll).await;
                        break;
                    }
                };
                lock(&self.state).millis_behind_latest = event.millis_behind_latest;
                self.deliver(event.records, event.millis_behind_latest).await?;
                if event.shard_ended {
                    return self.finish().await;
                }
            }
        }
    }

    async fn read(&self, stopped: &mut watch::Receiver<bool>) -> ShoalResult<()> {
        let resume = Some(self.lease.checkpoint_sequence_number.clone()).filter(|s| !s.is_empty());
        {
            let mut state = lock(&self.state);
            state.processed = resume.clone();
            state.checkpointed = resume.clone();
        }
        if self.config.delivery == Delivery::Push {
            return self.read_pushed(stopped).await;
        }
        let mut iterator = self.iterator(resume.as_deref()).await?;
        loop {
            if *stopped.borrow() {
                return self.final_checkpoint().await;
            }
            let page = match self.client.get_records(&iterator, self.config.batch_limit).await {
                Ok(page) => page,
                Err(error) if error.code == ErrorCode::ExpiredIterator => {
                    let processed = lock(&self.state).processed.clone();
                    iterator = self.iterator(processed.as_deref()).await?;
                    continue;
                }
                Err(error) => return Err(error),
            };
            lock(&self.state).millis_behind_latest = page.millis_behind_latest;
            self.deliver(page.records, page.millis_behind_latest).await?;
            if page.next_shard_iterator.is_empty() {
                return self.finish().await;
            }
            iterator = page.next_shard_iterator;
            if page.millis_behind_latest == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.idle_poll) => {}
                    _ = stopped.changed() => {}
                }
            }
        }
    }

    /// On a clean stop: checkpoint what was processed but not yet checkpointed.
    async fn final_checkpoint(&self) -> ShoalResult<()> {
        if let Err(error) = self.processor.flush(&self.lease.shard_id).await {
            tracing::warn!(shard = %self.lease.shard_id, %error, "records held back by the processor are not safe; not checkpointing");
            return Ok(());
        }
        let (processed, checkpointed) = {
            let state = lock(&self.state);
            (state.processed.clone(), state.checkpointed.clone())
        };
        match processed {
            Some(sequence_number) if Some(&sequence_number) != checkpointed.as_ref() => {
                match self.checkpointer(None).checkpoint_at(&sequence_number, 0).await {
                    Err(error) if error.code == ErrorCode::ResourceInUse => Ok(()),
                    other => other,
                }
            }
            _ => Ok(()),
        }
    }
}
