//! The Raft log of one group, kept in the node's shared RocksDB.
//!
//! Entries live in [`Cf::RaftLog`] under `group | index`; the vote, the committed
//! id and the last purged id live in [`Cf::RaftState`]. An append writes its batch
//! without syncing and asks the node's WAL syncer to complete openraft's callback
//! once the WAL is on disk, so concurrent appends of all groups share one fsync.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

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
}

pub(crate) fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    bincode::serialize(value).map_err(|e| std::io::Error::other(format!("encode failed: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::io::Result<T> {
    bincode::deserialize(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("corrupt value: {e}")))
}

impl GroupLogStore {
    pub fn new(db: NodeDb, group: GroupId) -> Self {
        GroupLogStore { db, group }
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
        let from = keys::group_u64(self.group, start);
        let to = match end {
            Some(end) => keys::group_u64(self.group, end).to_vec(),
            None => keys::group_end(self.group).to_vec(),
        };
        let mut entries = Vec::new();
        self.db.scan(Cf::RaftLog, &from, &to, |_, value| {
            entries.push(decode::<Entry>(value)?);
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
        let last_log_id = match last {
            Some((_, value)) => Some(decode::<Entry>(&value)?.log_id).max(last_purged_log_id),
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
        let mut batch = self.db.batch();
        let mut count = 0u64;
        for entry in entries {
            batch.put(Cf::RaftLog, &keys::group_u64(self.group, entry.log_id.index), &encode(&entry)?)?;
            count += 1;
        }
        batch.commit()?;
        metrics::counter!("shoal_raft_entries_appended_total").increment(count);
        // Durable (and acknowledged to openraft) only once the shared syncer has
        // fsynced the WAL: group commit across every group of the node.
        self.db.when_durable(move |result| callback.io_completed(result));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), std::io::Error> {
        let first_removed = last_log_id.map(|id| id.index + 1).unwrap_or(0);
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
        let mut batch = self.db.batch();
        batch.put(Cf::RaftState, &keys::group_named(self.group, PURGED), &encode(&Some(log_id))?)?;
        batch.delete_range(
            Cf::RaftLog,
            &keys::group_u64(self.group, 0),
            &keys::group_u64(self.group, log_id.index + 1),
        )?;
        batch.commit_synced()
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
