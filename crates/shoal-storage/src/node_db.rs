//! Opening the node's database and the few operations every layer above needs.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch};

use crate::column_family::Cf;
use crate::wal_syncer::{self, Completion};

/// A handle to the node's RocksDB; cheap to clone, shared by all groups.
#[derive(Clone)]
pub struct NodeDb {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<DB>,
    /// Queue of the group-commit thread. Dropping it (with the last handle) stops
    /// the thread, which then releases the database.
    wal_sync: Mutex<Option<Sender<Completion>>>,
    /// The group-commit thread, joined when the database is dropped so RocksDB is
    /// closed before anything else (a process exiting, a node reopening it) races it.
    wal_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// WAL fsyncs done so far, for tests and status.
    wal_syncs: Arc<AtomicU64>,
}

fn io_error(e: rocksdb::Error) -> std::io::Error {
    std::io::Error::other(e.into_string())
}

impl NodeDb {
    /// Opens (or creates) the database in `dir`. If a previous incarnation of this
    /// node in the same process is still shutting down, waits up to ten seconds for
    /// it to release the lock.
    pub fn open(dir: &Path) -> std::io::Result<NodeDb> {
        std::fs::create_dir_all(dir)?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_total_wal_size(256 * 1024 * 1024);
        options.increase_parallelism(2);
        let descriptors = || {
            Cf::ALL.map(|cf| {
                let mut cf_options = Options::default();
                if cf == Cf::Records {
                    cf_options.set_compression_type(rocksdb::DBCompressionType::Lz4);
                }
                ColumnFamilyDescriptor::new(cf.name(), cf_options)
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let db = loop {
            match DB::open_cf_descriptors(&options, dir, descriptors()) {
                Ok(db) => break db,
                Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(io_error(e)),
            }
        };
        let db = Arc::new(db);
        let wal_syncs = Arc::new(AtomicU64::new(0));
        let (sender, thread) = wal_syncer::spawn(db.clone(), wal_syncs.clone())?;
        let inner = Inner { db, wal_sync: Mutex::new(Some(sender)), wal_thread: Mutex::new(Some(thread)), wal_syncs };
        Ok(NodeDb { inner: Arc::new(inner) })
    }

    /// How many WAL fsyncs this database has done since it was opened.
    pub fn wal_syncs(&self) -> u64 {
        self.inner.wal_syncs.load(Ordering::Relaxed)
    }

    fn cf(&self, cf: Cf) -> std::io::Result<&ColumnFamily> {
        self.inner
            .db
            .cf_handle(cf.name())
            .ok_or_else(|| std::io::Error::other(format!("column family {} missing", cf.name())))
    }

    pub fn batch(&self) -> Batch<'_> {
        Batch { db: self, batch: WriteBatch::default(), error: None }
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.db.get_cf(self.cf(cf)?, key).map_err(io_error)
    }

    /// Writes a small value durably at once (votes, membership-critical state).
    pub fn put_synced(&self, cf: Cf, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        let mut batch = self.batch();
        batch.put(cf, key, value)?;
        batch.commit_synced()
    }

    /// Calls `visit` for each key in `[from, to)` in order until it returns false.
    pub fn scan(
        &self,
        cf: Cf,
        from: &[u8],
        to: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> std::io::Result<bool>,
    ) -> std::io::Result<()> {
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_upper_bound(to.to_vec());
        let iter =
            self.inner.db.iterator_cf_opt(self.cf(cf)?, read_options, IteratorMode::From(from, Direction::Forward));
        for item in iter {
            let (key, value) = item.map_err(io_error)?;
            if !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }

    /// The first key-value pair in `[from, to)`.
    pub fn first(&self, cf: Cf, from: &[u8], to: &[u8]) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut found = None;
        self.scan(cf, from, to, |k, v| {
            found = Some((k.to_vec(), v.to_vec()));
            Ok(false)
        })?;
        Ok(found)
    }

    /// The last key-value pair in `[from, to)`.
    pub fn last(&self, cf: Cf, from: &[u8], to: &[u8]) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_lower_bound(from.to_vec());
        read_options.set_iterate_upper_bound(to.to_vec());
        let mut iter = self.inner.db.iterator_cf_opt(self.cf(cf)?, read_options, IteratorMode::End);
        match iter.next() {
            Some(item) => {
                let (key, value) = item.map_err(io_error)?;
                Ok(Some((key.to_vec(), value.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Queues `done` to run once everything written so far is durable on disk.
    /// Appends of all groups share one fsync this way (group commit).
    pub fn when_durable(&self, done: impl FnOnce(std::io::Result<()>) + Send + 'static) {
        let sender = match self.inner.wal_sync.lock() {
            Ok(sender) => sender.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let Some(sender) = sender else {
            done(Err(std::io::Error::other("wal sync thread stopped")));
            return;
        };
        if let Err(returned) = sender.send(Box::new(done)) {
            (returned.0)(Err(std::io::Error::other("wal sync thread stopped")));
        }
    }

    /// Waits until everything written so far is durable on disk.
    pub async fn durable(&self) -> std::io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.when_durable(move |result| {
            let _ = tx.send(result);
        });
        rx.await.unwrap_or_else(|_| Err(std::io::Error::other("wal sync thread stopped")))
    }

    /// Removes every key of `group` from every column family.
    pub fn drop_group(&self, group: u64) -> std::io::Result<()> {
        let mut batch = self.batch();
        for cf in Cf::ALL {
            batch.delete_range(cf, &crate::keys::group_prefix(group), &crate::keys::group_end(group))?;
        }
        batch.commit_synced()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the thread; waiting for it leaves this handle the
        // last owner of the database, which then closes here and now.
        if let Ok(sender) = self.wal_sync.get_mut() {
            sender.take();
        }
        let thread = self.wal_thread.get_mut().ok().and_then(Option::take);
        if let Some(thread) = thread
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// A write batch: atomic across column families and groups.
pub struct Batch<'a> {
    db: &'a NodeDb,
    batch: WriteBatch,
    error: Option<std::io::Error>,
}

impl Batch<'_> {
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        self.batch.put_cf(self.db.cf(cf)?, key, value);
        Ok(())
    }

    pub fn delete(&mut self, cf: Cf, key: &[u8]) -> std::io::Result<()> {
        self.batch.delete_cf(self.db.cf(cf)?, key);
        Ok(())
    }

    /// Deletes `[from, to)` with one range tombstone.
    pub fn delete_range(&mut self, cf: Cf, from: &[u8], to: &[u8]) -> std::io::Result<()> {
        self.batch.delete_range_cf(self.db.cf(cf)?, from, to);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Writes the batch to the memtable and the (not yet synced) WAL.
    pub fn commit(self) -> std::io::Result<()> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.db.inner.db.write(self.batch).map_err(io_error)
    }

    /// Writes the batch and fsyncs the WAL before returning.
    pub fn commit_synced(self) -> std::io::Result<()> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut options = rocksdb::WriteOptions::default();
        options.set_sync(true);
        self.db.inner.db.write_opt(self.batch, &options).map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;

    #[test]
    fn writes_scans_and_drops_groups() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut batch = db.batch();
        for group in [1u64, 2] {
            for i in 0..10u64 {
                batch.put(Cf::RaftLog, &keys::group_u64(group, i), &[i as u8]).unwrap();
            }
        }
        batch.commit().unwrap();
        let mut seen = vec![];
        db.scan(Cf::RaftLog, &keys::group_u64(1, 3), &keys::group_end(1), |k, _| {
            seen.push(keys::read_u64(k, 8).unwrap());
            Ok(seen.len() < 4)
        })
        .unwrap();
        assert_eq!(seen, vec![3, 4, 5, 6]);
        let (last, _) = db.last(Cf::RaftLog, &keys::group_prefix(1), &keys::group_end(1)).unwrap().unwrap();
        assert_eq!(keys::read_u64(&last, 8), Some(9));
        db.drop_group(1).unwrap();
        assert!(db.first(Cf::RaftLog, &keys::group_prefix(1), &keys::group_end(1)).unwrap().is_none());
        assert!(db.first(Cf::RaftLog, &keys::group_prefix(2), &keys::group_end(2)).unwrap().is_some());
    }

    #[test]
    fn group_commit_completes_every_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..100u64 {
            db.put_synced(Cf::RaftState, &keys::group_u64(9, i), b"x").unwrap();
            let tx = tx.clone();
            db.when_durable(move |r| tx.send(r.is_ok()).unwrap());
        }
        let done: Vec<bool> = (0..100).map(|_| rx.recv().unwrap()).collect();
        assert!(done.iter().all(|ok| *ok));
    }

    #[test]
    fn concurrent_appends_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let writers: Vec<_> = (0..8u64)
            .map(|writer| {
                let (db, tx) = (db.clone(), tx.clone());
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let mut batch = db.batch();
                        batch.put(Cf::RaftLog, &keys::group_u64(writer, i), b"entry").unwrap();
                        batch.commit().unwrap();
                        let tx = tx.clone();
                        db.when_durable(move |r| tx.send(r.is_ok()).unwrap());
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        assert!((0..400).all(|_| rx.recv().unwrap()), "every append became durable");
        let syncs = db.wal_syncs();
        assert!(syncs < 400, "400 appends of 8 groups took {syncs} fsyncs: group commit should share them");
    }

    #[test]
    fn reopens_with_data_intact() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = NodeDb::open(dir.path()).unwrap();
            db.put_synced(Cf::StateMachine, b"k", b"v").unwrap();
        }
        let db = NodeDb::open(dir.path()).unwrap();
        assert_eq!(db.get(Cf::StateMachine, b"k").unwrap(), Some(b"v".to_vec()));
    }
}
