//! The state machine of a group: shared bookkeeping (applied id, membership,
//! snapshots) around either a shard's records or the metadata state.
//!
//! Applying writes to RocksDB without an fsync: every applied entry is already
//! durable in the Raft log, and after a crash openraft re-applies from the last
//! applied id this state machine persisted. Applying the same entry twice writes
//! the same keys with the same values, so re-application is harmless.
//!
//! A shard's records stay in the Raft log entries that carried them; applying
//! writes only an index row per shard and entry (see [`crate::shard_state`]).
//! Applies go to the WAL unsynced, behind the log entries they apply (the node's
//! WAL files are recycled, and RocksDB then takes no write without the WAL). A
//! crash loses what was applied after the last WAL sync or memtable flush,
//! index rows and applied id together, and openraft re-applies it from the log.
//! The log must therefore outlive that point: a snapshot, after which openraft
//! may purge the log, first flushes.
//!
//! Snapshots are built cheaply: a shard's snapshot records only its metadata, and
//! the records are read out when a lagging follower actually needs them (in
//! [`RaftStateMachine::get_current_snapshot`]). Such a dump may hold records newer
//! than the snapshot's last log id; they are committed and re-applying their
//! entries rewrites them identically.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use shoal_storage::{Cf, NodeDb, keys};
use shoal_types::{GroupId, NodeId, NodeInfo, RecordPosition};
use tokio::sync::watch;

use crate::command::{Command, CommandResponse, ShardAppended};
use crate::log_store::{decode, encode};
use crate::meta_state::MetaState;
use crate::shard_state::{self, ShardDump, ShardProgress};
use crate::type_config::{LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};

const APPLIED: &str = "applied";
const META_STATE: &str = "meta";
const PROGRESS: &str = "progress";
const SNAPSHOT: &str = "snapshot";

/// Where a group publishes its state as it applies entries.
#[derive(Clone)]
pub enum StateWatch {
    Meta(watch::Sender<Arc<MetaState>>),
    /// A group that carries one shard, stored under the group's own id.
    Shard(watch::Sender<ShardProgress>),
    /// A group that carries several shards, each stored under its own id
    /// ([`shoal_types::Shard::store`]).
    Shards(Vec<(u64, watch::Sender<ShardProgress>)>),
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

enum GroupData {
    Meta {
        state: MetaState,
        watch: watch::Sender<Arc<MetaState>>,
    },
    /// The shards the group carries, by store id.
    Shards(BTreeMap<u64, ShardData>),
}

struct ShardData {
    progress: ShardProgress,
    watch: watch::Sender<ShardProgress>,
}

pub struct GroupStateMachine {
    db: NodeDb,
    group: GroupId,
    applied: AppliedState,
    data: GroupData,
}

impl GroupStateMachine {
    /// Loads the group's state machine from the database (empty for a new group)
    /// and publishes its current state on `watch`.
    pub fn open(db: NodeDb, group: GroupId, watch: StateWatch) -> std::io::Result<Self> {
        let read = |name: &str| db.get(Cf::StateMachine, &keys::group_named(group, name));
        let applied = match read(APPLIED)? {
            Some(bytes) => decode(&bytes)?,
            None => AppliedState::default(),
        };
        let data = match watch {
            StateWatch::Meta(watch) => {
                let state: MetaState = match read(META_STATE)? {
                    Some(bytes) => decode_meta(&bytes)?,
                    None => MetaState::default(),
                };
                watch.send_replace(Arc::new(state.clone()));
                GroupData::Meta { state, watch }
            }
            StateWatch::Shard(watch) => GroupData::Shards(open_shards(&db, vec![(group, watch)])?),
            StateWatch::Shards(watches) => GroupData::Shards(open_shards(&db, watches)?),
        };
        Ok(GroupStateMachine { db, group, applied, data })
    }

    fn key(&self, name: &str) -> Vec<u8> {
        keys::group_named(self.group, name)
    }

    fn nodes(&self) -> BTreeMap<NodeId, NodeInfo> {
        self.applied.membership.nodes().map(|(id, node)| (*id, node.clone())).collect()
    }

    fn publish(&self) {
        match &self.data {
            GroupData::Meta { state, watch } => {
                watch.send_replace(Arc::new(state.clone()));
            }
            GroupData::Shards(shards) => {
                for shard in shards.values() {
                    shard.watch.send_if_modified(|published| {
                        let changed = *published != shard.progress;
                        *published = shard.progress;
                        changed
                    });
                }
            }
        }
    }

    /// Whether the group is a single shard stored under the group's id, the
    /// layout of every group before shards shared groups (its snapshots keep
    /// their format).
    fn is_lone_shard(shards: &BTreeMap<u64, ShardData>, group: GroupId) -> bool {
        shards.len() == 1 && shards.contains_key(&group)
    }

    fn snapshot_data(&self) -> std::io::Result<Vec<u8>> {
        match &self.data {
            GroupData::Meta { state, .. } => encode_meta(state),
            GroupData::Shards(shards) if Self::is_lone_shard(shards, self.group) => {
                let progress = shards.values().next().map(|s| s.progress).unwrap_or_default();
                encode(&shard_state::dump(&self.db, self.group, progress)?)
            }
            GroupData::Shards(shards) => {
                let mut dumps = Vec::with_capacity(shards.len());
                for (store, shard) in shards {
                    dumps.push((*store, shard_state::dump(&self.db, *store, shard.progress)?));
                }
                encode(&dumps)
            }
        }
    }
}

/// Loads each shard's progress and publishes it on its watch.
fn open_shards(
    db: &NodeDb,
    watches: Vec<(u64, watch::Sender<ShardProgress>)>,
) -> std::io::Result<BTreeMap<u64, ShardData>> {
    let mut shards = BTreeMap::new();
    for (store, watch) in watches {
        let progress: ShardProgress = match db.get(Cf::StateMachine, &keys::group_named(store, PROGRESS))? {
            Some(bytes) => decode(&bytes)?,
            None => ShardProgress::default(),
        };
        watch.send_replace(progress);
        shards.insert(store, ShardData { progress, watch });
    }
    Ok(shards)
}

/// The shard that the single-shard commands ([`Command::Append`],
/// [`Command::AppendMany`], [`Command::Seal`]) address: the group's only one.
fn lone_shard(shards: &mut BTreeMap<u64, ShardData>) -> Option<(u64, &mut ShardData)> {
    if shards.len() != 1 {
        return None;
    }
    shards.iter_mut().next().map(|(store, shard)| (*store, shard))
}

impl RaftStateMachine<TypeConfig> for GroupStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = GroupSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), std::io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>> + Unpin + openraft::OptionalSend,
    {
        let db = self.db.clone();
        let mut batch = db.batch();
        let mut replies = Vec::new();
        let mut staged_origins = shard_state::StagedOrigins::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let log_index = entry.log_id.index;
            self.applied.last_applied = Some(entry.log_id);
            if let EntryPayload::Normal(command) = &entry.payload {
                // Both logs have the entry by now: its readers need no encoding.
                command.forget_encoding();
            }
            let response = match entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Membership(membership) => {
                    self.applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResponse::None
                }
                EntryPayload::Normal(command) if matches!(**command, Command::Meta(_)) => {
                    let nodes = self.nodes();
                    match (&**command, &mut self.data) {
                        // Copied out of the shared entry: metadata commands are few and small.
                        (Command::Meta(meta), GroupData::Meta { state, .. }) => {
                            CommandResponse::Meta(state.apply(meta.clone(), &nodes))
                        }
                        _ => {
                            tracing::error!(group = self.group, ?command, "metadata command sent to a shard group");
                            CommandResponse::None
                        }
                    }
                }
                EntryPayload::Normal(command) => {
                    // Shared with the log, the followers' streams and the records'
                    // readers (see `DecodedEntries`).
                    let response = match (&**command, &mut self.data) {
                        (Command::AppendShards(appends), GroupData::Shards(shards)) => {
                            let mut outcomes = Vec::with_capacity(appends.len());
                            let mut seen = std::collections::BTreeSet::new();
                            for append in appends {
                                // A shard named twice would write its second batch over
                                // the first (same entry, offsets from 0): refused.
                                let Some(shard) = shards.get_mut(&append.shard).filter(|_| seen.insert(append.shard))
                                else {
                                    outcomes.push(ShardAppended::Unknown);
                                    continue;
                                };
                                if let Some(end) = shard.progress.sealed_at {
                                    outcomes.push(ShardAppended::Sealed { end });
                                    continue;
                                }
                                let parts: Vec<_> =
                                    append.batch.parts.iter().map(|p| (p.origin, p.records.as_slice())).collect();
                                outcomes.push(ShardAppended::Landed(shard_state::stage_parts(
                                    &db,
                                    &mut batch,
                                    self.group,
                                    append.shard,
                                    log_index,
                                    append.batch.arrival_millis,
                                    &parts,
                                    &mut shard.progress,
                                    &mut staged_origins,
                                )?));
                            }
                            CommandResponse::AppendedShards(outcomes)
                        }
                        (Command::SealShard(store), GroupData::Shards(shards)) => match shards.get_mut(store) {
                            Some(shard) => seal(&mut shard.progress, log_index),
                            None => CommandResponse::None,
                        },
                        (command, GroupData::Shards(shards)) => {
                            let Some((store, shard)) = lone_shard(shards) else {
                                // Never proposed: the coalescer addresses packed shards by store.
                                tracing::error!(group = self.group, %command, "single-shard command in a packed group");
                                replies.extend(responder.map(|r| (r, CommandResponse::None)));
                                continue;
                            };
                            let progress = &mut shard.progress;
                            match command {
                                Command::Append(_) | Command::AppendMany(_) if progress.sealed_at.is_some() => {
                                    CommandResponse::Sealed { end: progress.sealed_at.unwrap_or_default() }
                                }
                                Command::Append(records) => {
                                    let landed = shard_state::stage_append(
                                        &db,
                                        &mut batch,
                                        self.group,
                                        store,
                                        log_index,
                                        records,
                                        progress,
                                        &mut staged_origins,
                                    )?;
                                    CommandResponse::Appended {
                                        log_index: landed.log_index,
                                        first_offset: landed.first_offset,
                                        count: landed.count,
                                        arrival_millis: landed.arrival_millis,
                                    }
                                }
                                Command::AppendMany(coalesced) => {
                                    let parts: Vec<_> =
                                        coalesced.parts.iter().map(|p| (p.origin, p.records.as_slice())).collect();
                                    CommandResponse::AppendedMany(shard_state::stage_parts(
                                        &db,
                                        &mut batch,
                                        self.group,
                                        store,
                                        log_index,
                                        coalesced.arrival_millis,
                                        &parts,
                                        progress,
                                        &mut staged_origins,
                                    )?)
                                }
                                Command::Seal => seal(progress, log_index),
                                command => {
                                    tracing::error!(group = self.group, %command, "command sent to the wrong kind of group");
                                    CommandResponse::None
                                }
                            }
                        }
                        (command, _) => {
                            tracing::error!(group = self.group, %command, "command sent to the wrong kind of group");
                            CommandResponse::None
                        }
                    };
                    // Records are read at their shard's leader only (a follower
                    // forwards reads), so only an entry this node proposed, as the
                    // leader, is kept for its readers. After a leadership change the
                    // new leader's readers load what they miss from the log, once; so
                    // does the first reader of an entry openraft read back from the
                    // log to apply (decoded anew, it is not marked as proposed here).
                    if let Some(bytes) = command.record_bytes()
                        && command.proposed_here()
                        && matches!(self.data, GroupData::Shards(_))
                    {
                        db.decoded_entries().insert(self.group, log_index, command, bytes);
                    }
                    response
                }
            };
            if let Some(responder) = responder {
                replies.push((responder, response));
            }
        }
        batch.put(Cf::StateMachine, &self.key(APPLIED), &encode(&self.applied)?)?;
        match &self.data {
            GroupData::Meta { state, .. } => {
                batch.put(Cf::StateMachine, &self.key(META_STATE), &encode_meta(state)?)?;
            }
            GroupData::Shards(shards) => {
                // Only the shards this call changed (their watch still shows the old state).
                for (store, shard) in shards.iter().filter(|(_, s)| *s.watch.borrow() != s.progress) {
                    batch.put(Cf::StateMachine, &keys::group_named(*store, PROGRESS), &encode(&shard.progress)?)?;
                }
            }
        }
        batch.commit()?;
        self.publish();
        for (responder, response) in replies {
            responder.send(response);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let meta_state = match &self.data {
            GroupData::Meta { state, .. } => Some(state.clone()),
            GroupData::Shards(_) => None,
        };
        GroupSnapshotBuilder { db: self.db.clone(), group: self.group, applied: self.applied.clone(), meta_state }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Vec<u8>) -> Result<(), std::io::Error> {
        let db = self.db.clone();
        let mut batch = db.batch();
        match &mut self.data {
            GroupData::Meta { state, .. } => {
                *state = decode_meta(&snapshot)?;
                batch.put(Cf::StateMachine, &keys::group_named(self.group, META_STATE), &snapshot)?;
            }
            GroupData::Shards(shards) if Self::is_lone_shard(shards, self.group) => {
                let dump: ShardDump = decode(&snapshot)?;
                shard_state::stage_restore(&mut batch, self.group, &dump)?;
                for shard in shards.values_mut() {
                    shard.progress = dump.progress;
                    batch.put(Cf::StateMachine, &keys::group_named(self.group, PROGRESS), &encode(&shard.progress)?)?;
                }
            }
            GroupData::Shards(shards) => {
                let dumps: Vec<(u64, ShardDump)> = decode(&snapshot)?;
                for (store, dump) in dumps {
                    // A shard dropped since (it closed and its records expired).
                    let Some(shard) = shards.get_mut(&store) else { continue };
                    shard_state::stage_restore(&mut batch, store, &dump)?;
                    shard.progress = dump.progress;
                    batch.put(Cf::StateMachine, &keys::group_named(store, PROGRESS), &encode(&shard.progress)?)?;
                }
            }
        }
        self.applied = AppliedState { last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        batch.put(Cf::StateMachine, &self.key(APPLIED), &encode(&self.applied)?)?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            meta_state: matches!(self.data, GroupData::Meta { .. }).then(|| snapshot.clone()),
        };
        batch.put(Cf::StateMachine, &self.key(SNAPSHOT), &encode(&stored)?)?;
        batch.commit_synced()?;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        let Some(bytes) = self.db.get(Cf::StateMachine, &self.key(SNAPSHOT))? else { return Ok(None) };
        let stored: StoredSnapshot = decode(&bytes)?;
        let data = match stored.meta_state {
            Some(meta_state) => meta_state,
            None => self.snapshot_data()?,
        };
        Ok(Some(Snapshot { meta: stored.meta, snapshot: data }))
    }
}

/// Seals a shard: its own position is past every record; a second seal keeps
/// the first one's.
fn seal(progress: &mut ShardProgress, log_index: u64) -> CommandResponse {
    let end = *progress.sealed_at.get_or_insert(RecordPosition { log_index, offset: 0 });
    CommandResponse::Sealed { end }
}

/// The metadata state is stored as JSON: it is small, and new fields with
/// defaults can be added without breaking what older versions wrote.
fn encode_meta(state: &MetaState) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(state).map_err(|e| std::io::Error::other(format!("encode metadata failed: {e}")))
}

fn decode_meta(bytes: &[u8]) -> std::io::Result<MetaState> {
    serde_json::from_slice(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("corrupt metadata state: {e}")))
}

/// What a group keeps of its latest snapshot: the metadata, and for the metadata
/// group the state as of that point (shards read their records when sending).
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    meta_state: Option<Vec<u8>>,
}

pub struct GroupSnapshotBuilder {
    db: NodeDb,
    group: GroupId,
    applied: AppliedState,
    meta_state: Option<MetaState>,
}

impl RaftSnapshotBuilder<TypeConfig> for GroupSnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let meta =
            SnapshotMeta { last_log_id: self.applied.last_applied, last_membership: self.applied.membership.clone() };
        let meta_state = match &self.meta_state {
            Some(state) => Some(encode_meta(state)?),
            None => None,
        };
        if meta_state.is_none() {
            // The shard's state up to the snapshot was applied without a sync:
            // make it durable before openraft purges the log entries it came from.
            self.db.flushed().await?;
        }
        let stored = StoredSnapshot { meta: meta.clone(), meta_state: meta_state.clone() };
        self.db.put_synced(Cf::StateMachine, &keys::group_named(self.group, SNAPSHOT), &encode(&stored)?)?;
        Ok(Snapshot { meta, snapshot: meta_state.unwrap_or_default() })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use shoal_types::Record;

    use super::*;
    use crate::command::{BatchOrigin, RecordBatch};
    use crate::entry_codec::{decode_entry, encode_entry};
    use crate::logged_command::LoggedCommand;
    use crate::type_config::Entry;

    const GROUP: u64 = 7;

    fn entry(log_index: u64, records: usize) -> Entry {
        let records = (0..records).map(|i| Record {
            partition_key: format!("k{i}"),
            explicit_hash_key: None,
            data: vec![1; 10].into(),
        });
        let batch =
            RecordBatch { records: Arc::new(records.collect()), arrival_millis: 5, origin: BatchOrigin::default() };
        Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(1, 1, log_index),
            payload: EntryPayload::Normal(Arc::new(LoggedCommand::new(Command::Append(batch)))),
        }
    }

    /// Logs `entry` and applies it as openraft would: `proposed` as this node's
    /// own proposal, otherwise as a follower decodes it from its leader's message.
    async fn log_and_apply(db: &NodeDb, machine: &mut GroupStateMachine, entry: Entry, proposed: bool) {
        let bytes = encode_entry(&entry).unwrap();
        db.put_synced(Cf::RaftLog, &keys::group_u64(GROUP, entry.log_id.index), &bytes).unwrap();
        let entry = if proposed { entry } else { decode_entry(&Bytes::from(bytes)).unwrap() };
        machine.apply(futures::stream::iter([Ok((entry, None))])).await.unwrap();
    }

    #[tokio::test]
    async fn only_entries_this_node_proposed_are_cached_for_its_readers_and_both_kinds_read_back() {
        let db = NodeDb::in_memory(Duration::from_millis(1));
        let progress = watch::channel(ShardProgress::default()).0;
        let mut machine = GroupStateMachine::open(db.clone(), GROUP, StateWatch::Shard(progress)).unwrap();
        log_and_apply(&db, &mut machine, entry(1, 3), false).await;
        assert!(db.decoded_entries().get(GROUP, 1).is_none(), "a follower's entry is not cached");
        assert_eq!(db.decoded_entries().bytes(), 0);
        log_and_apply(&db, &mut machine, entry(2, 2), true).await;
        assert!(db.decoded_entries().get(GROUP, 2).is_some(), "the leader's entry is cached");
        // Both read back; the follower's entry from the log, and then it is cached too.
        let read = shard_state::read_records(&db, GROUP, RecordPosition::default(), 100, 1 << 20).unwrap();
        let positions: Vec<_> = read.iter().map(|r| (r.position.log_index, r.position.offset)).collect();
        assert_eq!(positions, [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]);
        assert!(db.decoded_entries().get(GROUP, 1).is_some(), "a reader's miss is cached");
    }
}
