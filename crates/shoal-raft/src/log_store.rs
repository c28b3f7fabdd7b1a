//! The Raft log of one group, kept in the node's shared RocksDB.
//!
//! Entries live in [`Cf::RaftLog`] under `group | index`; the vote, the committed
//! id and the last purged id live in [`Cf::RaftState`]. An append writes its batch
//! without syncing and asks the node's WAL syncer to complete openraft's callback
//! once the WAL is on disk, so concurrent appends of all groups share one fsync.
//!
//! A shard group's log is also where its records live (see
//! [`crate::shard_state`]): its store is opened with [`GroupLogStore::for_shards`],
//! and openraft's purges then only move the purge point. The entries stay until
//! retention releases them ([`crate::shard_state::release_log`]).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_storage::{Cf, NodeDb, keys};
use shoal_types::GroupId;

use crate::type_config::{Entry, LogId, TypeConfig, Vote};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

#[derive(Clone)]
pub struct GroupLogStore {
    db: NodeDb,
    group: GroupId,
    /// Whether purged entries stay on disk (a shard group's records are in them).
    keeps_purged: bool,
    /// The last entries appended, shared by the store and its readers.
    recent: Arc<Mutex<RecentEntries>>,
    /// The first index past openraft's purge point ([`UNKNOWN`] until read from
    /// the database): entries below it are not part of the log any more, even
    /// where they stay on disk.
    first_readable: Arc<AtomicU64>,
}

/// [`GroupLogStore::first_readable`] before it was read.
const UNKNOWN: u64 = u64::MAX;

/// A RocksDB write batch's header: sequence number and count.
const BATCH_HEADER_BYTES: usize = 12;
/// What a log entry's put adds to a write batch besides its value: a tag, the
/// column family, the 16-byte key and two length varints.
const BATCH_BYTES_PER_PUT: usize = 32;

/// Bytes of encoded entries a group keeps in [`RecentEntries`].
const RECENT_ENTRIES_BYTES: usize = 2 * 1024 * 1024;

/// The entries appended last, in index order without gaps, as openraft handed
/// them over. Right after an append, openraft reads the same entries back to
/// apply them and to send them to each follower; serving those reads from here
/// saves loading and decoding each entry once per reader. Kept equal to the
/// stored log: appends add, truncation and purges remove.
#[derive(Default)]
struct RecentEntries {
    /// Entries with their encoded size.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl RecentEntries {
    fn push(&mut self, entry: Entry, bytes: usize) {
        let follows = self.entries.back().is_none_or(|(last, _)| last.log_id.index + 1 == entry.log_id.index);
        if !follows {
            self.clear();
        }
        self.entries.push_back((entry, bytes));
        self.bytes += bytes;
        while self.bytes > RECENT_ENTRIES_BYTES {
            let Some((_, size)) = self.entries.pop_front() else { break };
            self.bytes -= size;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Drops the entries at `from` and after.
    fn truncate_from(&mut self, from: u64) {
        while self.entries.back().is_some_and(|(last, _)| last.log_id.index >= from) {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes -= size;
            }
        }
    }

    /// Drops the entries up to `through`.
    fn purge_through(&mut self, through: u64) {
        while self.entries.front().is_some_and(|(first, _)| first.log_id.index <= through) {
            if let Some((_, size)) = self.entries.pop_front() {
                self.bytes -= size;
            }
        }
    }

    /// The entries `start..end`, if all of them are here.
    fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.0.log_id.index;
        let last = self.entries.back()?.0.log_id.index;
        let end = end.unwrap_or(last + 1);
        if start < first || end > last + 1 {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let take = usize::try_from(end.saturating_sub(start)).ok()?;
        Some(self.entries.iter().skip(skip).take(take).map(|(entry, _)| entry.clone()).collect())
    }
}

/// The index of the last entry openraft purged from `group`'s log, if any.
pub fn purged_index(db: &NodeDb, group: GroupId) -> std::io::Result<Option<u64>> {
    match db.get(Cf::RaftState, &keys::group_named(group, PURGED))? {
        Some(bytes) => Ok(decode::<Option<LogId>>(&bytes)?.map(|id| id.index)),
        None => Ok(None),
    }
}

/// The index of the last entry stored in `group`'s log, if any.
pub fn last_index(db: &NodeDb, group: GroupId) -> std::io::Result<Option<u64>> {
    let last = db.last(Cf::RaftLog, &keys::group_prefix(group), &keys::group_end(group))?;
    Ok(last.and_then(|(key, _)| keys::read_u64(&key, 8)))
}

pub(crate) fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    bincode::serialize(value).map_err(|e| std::io::Error::other(format!("encode failed: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::io::Result<T> {
    bincode::deserialize(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("corrupt value: {e}")))
}

impl GroupLogStore {
    /// The log of the metadata group: purged entries are deleted.
    pub fn new(db: NodeDb, group: GroupId) -> Self {
        GroupLogStore {
            db,
            group,
            keeps_purged: false,
            recent: Arc::default(),
            first_readable: Arc::new(AtomicU64::new(UNKNOWN)),
        }
    }

    /// The log of a shard group, which also stores the group's records: purged
    /// entries stay until retention releases them.
    pub fn for_shards(db: NodeDb, group: GroupId) -> Self {
        GroupLogStore {
            db,
            group,
            keeps_purged: true,
            recent: Arc::default(),
            first_readable: Arc::new(AtomicU64::new(UNKNOWN)),
        }
    }

    fn read_state<T: DeserializeOwned>(&self, name: &str) -> std::io::Result<Option<T>> {
        match self.db.get(Cf::RaftState, &keys::group_named(self.group, name))? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn write_state_synced<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        self.db.put_synced(Cf::RaftState, &keys::group_named(self.group, name), &encode(value)?)
    }

    /// The first index past the purge point.
    fn first_readable(&self) -> std::io::Result<u64> {
        match self.first_readable.load(Ordering::Acquire) {
            UNKNOWN => {
                let first = purged_index(&self.db, self.group)?.map_or(0, |purged| purged + 1);
                // A purge that finished meanwhile set a newer point: it stands.
                match self.first_readable.compare_exchange(UNKNOWN, first, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => Ok(first),
                    Err(newer) => Ok(newer),
                }
            }
            first => Ok(first),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEntries> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index_bounds(&self, range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.checked_add(1),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        (start, end)
    }
}

impl RaftLogReader<TypeConfig> for GroupLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, std::io::Error> {
        let (start, end) = self.index_bounds(&range);
        // A shard group keeps purged entries on disk; they are not the log's.
        let start = start.max(self.first_readable()?);
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        if let Some(entries) = self.recent().get(start, end) {
            return Ok(entries);
        }
        let from = keys::group_u64(self.group, start);
        let to = match end {
            Some(end) => keys::group_u64(self.group, end).to_vec(),
            None => keys::group_end(self.group).to_vec(),
        };
        let mut entries = Vec::new();
        self.db.scan(Cf::RaftLog, &from, &to, |_, value| {
            entries.push(crate::entry_codec::decode_entry(&bytes::Bytes::copy_from_slice(value))?);
            Ok(true)
        })?;
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, std::io::Error> {
        self.read_state(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for GroupLogStore {
    type LogReader = GroupLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, std::io::Error> {
        let last_purged_log_id = self.read_state::<Option<LogId>>(PURGED)?.flatten();
        let last = self.db.last(Cf::RaftLog, &keys::group_prefix(self.group), &keys::group_end(self.group))?;
        // Entries at or below the purge point are leftovers (a database written by
        // a version that deleted them separately from recording the point).
        // Compared by index, not by log id: a shard group keeps purged entries,
        // and one left from a stale term (after a snapshot install) may carry a
        // higher term than the purge point although it lies below it.
        let last_log_id = match last {
            Some((_, value)) => {
                let last = decode::<Entry>(&value)?.log_id;
                match last_purged_log_id {
                    Some(purged) if purged.index >= last.index => Some(purged),
                    _ => Some(last),
                }
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), std::io::Error> {
        self.write_state_synced(VOTE, vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), std::io::Error> {
        // Not synced: after a crash openraft re-learns the commit point from the
        // leader; this only lets a restarted node re-apply what it knew sooner.
        let mut batch = self.db.batch();
        batch.put(Cf::RaftState, &keys::group_named(self.group, COMMITTED), &encode(&committed)?)?;
        batch.commit()
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, std::io::Error> {
        Ok(self.read_state::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), std::io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|entry| crate::entry_codec::encode_entry(&entry).map(|bytes| (entry, bytes)))
            .collect::<std::io::Result<Vec<_>>>()?;
        // Sized up front: the entries are most of what a node writes, and a batch
        // grown by doubling copies them once more (docs/performance.md).
        let size = encoded.iter().map(|(_, bytes)| bytes.len() + BATCH_BYTES_PER_PUT).sum::<usize>();
        let mut batch = self.db.batch_for(BATCH_HEADER_BYTES + size);
        let mut appended = Vec::with_capacity(encoded.len());
        for (entry, bytes) in encoded {
            batch.put(Cf::RaftLog, &keys::group_u64(self.group, entry.log_id.index), &bytes)?;
            appended.push((entry, bytes.len()));
        }
        let count = appended.len() as u64;
        {
            // Under the lock across the write, so a reader never finds the cache
            // and the database disagreeing about these entries.
            let mut recent = self.recent();
            let written_at = std::time::Instant::now();
            if let Err(error) = batch.commit() {
                recent.clear();
                return Err(error);
            }
            // Inside openraft's core task: its loop waits for this write.
            metrics::histogram!("shoal_raft_log_write_seconds").record(written_at.elapsed().as_secs_f64());
            for (entry, bytes) in appended {
                recent.push(entry, bytes);
            }
        }
        metrics::counter!("shoal_raft_entries_appended_total").increment(count);
        // Durable (and acknowledged to openraft) only once the shared syncer has
        // fsynced the WAL: group commit across every group of the node.
        self.db.when_durable(move |result| callback.io_completed(result));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), std::io::Error> {
        let first_removed = last_log_id.map(|id| id.index + 1).unwrap_or(0);
        self.recent().truncate_from(first_removed);
        let mut batch = self.db.batch();
        batch.delete_range(Cf::RaftLog, &keys::group_u64(self.group, first_removed), &keys::group_end(self.group))?;
        batch.commit_synced()
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        // The purge point and the deletion go in one atomic batch: a crash keeps
        // both or neither. (Recorded first and deleted by a later unsynced write, a
        // crash could keep the point and lose the deletion; when the log ended below
        // the point — a follower that installed a snapshot — the restarted node saw
        // its last entry before its purge point and refused to start.)
        //
        // A shard group keeps the entries: its records are in them. The ones
        // below the purge point are never read as log entries again; after a
        // snapshot install they may be stale ones of an old term, which no index
        // row points to (the snapshot brought the records whole).
        self.recent().purge_through(log_id.index);
        let mut batch = self.db.batch();
        batch.put(Cf::RaftState, &keys::group_named(self.group, PURGED), &encode(&Some(log_id))?)?;
        if !self.keeps_purged {
            batch.delete_range(
                Cf::RaftLog,
                &keys::group_u64(self.group, 0),
                &keys::group_u64(self.group, log_id.index + 1),
            )?;
        }
        batch.commit_synced()?;
        // Purge points only rise; this one is the newest, known or not before.
        let first = log_id.index + 1;
        let _ = self.first_readable.fetch_update(Ordering::AcqRel, Ordering::Acquire, |known| {
            Some(if known == UNKNOWN { first } else { known.max(first) })
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::testing::{blank_ent, log_id};

    use super::*;

    fn store(db: &NodeDb) -> GroupLogStore {
        GroupLogStore::new(db.clone(), 7)
    }

    fn write_entries(db: &NodeDb, indexes: std::ops::RangeInclusive<u64>) {
        let mut batch = db.batch();
        for i in indexes {
            let entry: Entry = blank_ent::<TypeConfig>(1, 1, i);
            batch.put(Cf::RaftLog, &keys::group_u64(7, i), &encode(&entry).unwrap()).unwrap();
        }
        batch.commit_synced().unwrap();
    }

    #[test]
    fn recent_entries_answer_only_for_ranges_they_hold_whole() {
        let mut recent = RecentEntries::default();
        for i in 3..=6 {
            recent.push(blank_ent::<TypeConfig>(1, 1, i), 10);
        }
        let indexes =
            |entries: Option<Vec<Entry>>| entries.map(|e| e.iter().map(|e| e.log_id.index).collect::<Vec<_>>());
        assert_eq!(indexes(recent.get(4, Some(6))), Some(vec![4, 5]));
        assert_eq!(indexes(recent.get(5, None)), Some(vec![5, 6]));
        assert_eq!(recent.get(2, Some(5)), None, "starts before the first");
        assert_eq!(recent.get(5, Some(8)), None, "ends after the last");
        recent.truncate_from(5);
        assert_eq!(indexes(recent.get(3, None)), Some(vec![3, 4]));
        recent.push(blank_ent::<TypeConfig>(2, 1, 5), 10);
        assert_eq!(recent.get(5, None).map(|e| e[0].log_id), Some(log_id::<TypeConfig>(2, 1, 5)));
        recent.purge_through(4);
        assert_eq!(recent.get(4, None), None);
        // A gap (never made by openraft) empties it rather than leave a hole.
        recent.push(blank_ent::<TypeConfig>(2, 1, 9), 10);
        assert_eq!(indexes(recent.get(9, None)), Some(vec![9]));
        assert_eq!(recent.get(5, None), None);
        assert_eq!(recent.bytes, 10);
        // Bounded by bytes, oldest out first.
        for i in 10..20 {
            recent.push(blank_ent::<TypeConfig>(2, 1, i), RECENT_ENTRIES_BYTES / 4);
        }
        assert!(recent.bytes <= RECENT_ENTRIES_BYTES);
        assert_eq!(indexes(recent.get(16, None)), Some(vec![16, 17, 18, 19]));
    }

    #[tokio::test]
    async fn a_crash_after_purging_past_the_log_end_keeps_a_consistent_log() {
        // A follower whose log ends at 5 installs a snapshot up to 10 and purges.
        let db = NodeDb::in_memory(Duration::ZERO);
        write_entries(&db, 1..=5);
        store(&db).purge(log_id::<TypeConfig>(1, 1, 10)).await.unwrap();
        let db = db.crash(0).unwrap();
        let state = store(&db).get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id::<TypeConfig>(1, 1, 10)));
        assert_eq!(state.last_log_id, state.last_purged_log_id);
    }

    #[tokio::test]
    async fn a_stale_entry_of_a_higher_term_below_the_purge_point_does_not_end_the_log() {
        // Kept by a shard group's log after a snapshot install: index 5, term 4,
        // below a purge point at index 8 of term 3.
        let db = NodeDb::in_memory(Duration::ZERO);
        let mut batch = db.batch();
        let stale: Entry = blank_ent::<TypeConfig>(4, 1, 5);
        batch.put(Cf::RaftLog, &keys::group_u64(7, 5), &encode(&stale).unwrap()).unwrap();
        batch.commit_synced().unwrap();
        let mut log = GroupLogStore::for_shards(db.clone(), 7);
        log.purge(log_id::<TypeConfig>(3, 1, 8)).await.unwrap();
        let state = GroupLogStore::for_shards(db.clone(), 7).get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id::<TypeConfig>(3, 1, 8)));
        assert!(db.get(Cf::RaftLog, &keys::group_u64(7, 5)).unwrap().is_some(), "kept on disk");
        let read = GroupLogStore::for_shards(db, 7).try_get_log_entries(0..10).await.unwrap();
        assert!(read.is_empty(), "but not part of the log");
    }

    #[tokio::test]
    async fn leftover_entries_below_the_purge_point_do_not_end_the_log() {
        // What an older version could leave: the point recorded, the deletion lost.
        let db = NodeDb::in_memory(Duration::ZERO);
        write_entries(&db, 1..=5);
        db.put_synced(
            Cf::RaftState,
            &keys::group_named(7, PURGED),
            &encode(&Some(log_id::<TypeConfig>(1, 1, 10))).unwrap(),
        )
        .unwrap();
        let state = store(&db).get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id::<TypeConfig>(1, 1, 10)));
    }
}
