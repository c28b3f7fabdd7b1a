//! Opening the node's database and the few operations every layer above needs.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions, WriteBatch};

use crate::column_family::Cf;
use crate::decoded_entries::DecodedEntries;
use crate::memory_db::{MemoryDb, MemoryOp};
use crate::storage_faults::StorageFaults;
use crate::wal_syncer::{self, Completion};

/// Pairs an in-memory scan copies out at a time.
const MEMORY_SCAN_CHUNK: usize = 64;

/// Flushed WAL files kept for RocksDB to overwrite with later WALs (about one
/// memtable of writes each). One suffices while flushes keep up; the second
/// covers a WAL switch that comes before the previous flush has finished.
const RECYCLED_WAL_FILES: usize = 2;

/// A handle to the node's RocksDB; cheap to clone, shared by all groups.
///
/// Simulations use an in-memory database instead ([`NodeDb::in_memory`]) that
/// models what a crash keeps; every layer above sees the same interface.
#[derive(Clone)]
pub struct NodeDb {
    backend: Backend,
    faults: Arc<StorageFaults>,
    decoded: Arc<DecodedEntries>,
}

/// The byte budget of a node's cache of decoded log entries: a few seconds of
/// writes at the rates a node takes, so readers that keep up always hit.
const DECODED_ENTRIES_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone)]
enum Backend {
    Rocks(Arc<Inner>),
    Memory(Arc<MemoryDb>),
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
        NodeDb::open_with(dir, false)
    }

    /// [`NodeDb::open`], with flushes and compactions written with `O_DIRECT` if
    /// `direct_io` is set and the file system of `dir` takes it. Whether that helps
    /// depends on the disk ([`crate::direct_io`]).
    pub fn open_with(dir: &Path, direct_io: bool) -> std::io::Result<NodeDb> {
        std::fs::create_dir_all(dir)?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_total_wal_size(256 * 1024 * 1024);
        // A WAL file whose memtables were flushed is overwritten by a later WAL
        // instead of deleted. An `fdatasync` after writing into a new file (or a
        // preallocated one) also commits the file system's journal — the new size,
        // the extents written — while one after overwriting a file only flushes the
        // data: on ext4 half the time and half the kernel CPU per sync. Every Raft
        // append waits for such a sync. RocksDB refuses writes without the WAL
        // once recycling is on, so every write here goes to the WAL.
        options.set_recycle_log_file_num(RECYCLED_WAL_FILES);
        // Every flush persists all column families at one point, so that what a
        // crash keeps of them is consistent.
        options.set_atomic_flush(true);
        options.increase_parallelism(2);
        // Flushes and compactions run at the lowest CPU priority: the write path
        // gets the CPU first. On a busy machine a flush (every replica flushes the
        // same writes at about the same time) otherwise took the cores from Raft
        // for a few hundred milliseconds every few seconds: the tail of publish
        // latency at half of max throughput (docs/performance.md).
        let mut env = rocksdb::Env::new().map_err(io_error)?;
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        options.set_env(&env);
        // Flushes and compactions write big files once and seldom read them back
        // soon: writing them around the page cache can save the kernel's copy (a
        // quarter of a node's CPU under 1 KiB max load on one machine), where the
        // disk keeps up with synchronous writes (reads still use the page cache).
        let direct_io = direct_io
            && {
                let supported = crate::direct_io::supports_direct_io(dir);
                if !supported {
                    tracing::info!(dir = %dir.display(), "the file system takes no O_DIRECT: RocksDB flushes through the page cache");
                }
                supported
            };
        options.set_use_direct_io_for_flush_and_compaction(direct_io);
        let descriptors = || Cf::ALL.map(|cf| ColumnFamilyDescriptor::new(cf.name(), column_family_options(cf)));
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
        Ok(NodeDb { backend: Backend::Rocks(Arc::new(inner)), faults: Arc::default(), decoded: Self::new_cache() })
    }

    fn new_cache() -> Arc<DecodedEntries> {
        Arc::new(DecodedEntries::new(DECODED_ENTRIES_BYTES))
    }

    /// Recently used Raft log entries, decoded (see [`DecodedEntries`]).
    pub fn decoded_entries(&self) -> &DecodedEntries {
        &self.decoded
    }

    /// An empty in-memory database for simulations. A `when_durable` completion
    /// runs after `sync_delay` of (tokio, possibly virtual) time on a spawned task,
    /// like a WAL fsync; with a zero delay, or outside a tokio runtime, it syncs
    /// and completes inline. See [`NodeDb::crash`] for what survives a crash.
    pub fn in_memory(sync_delay: Duration) -> NodeDb {
        NodeDb {
            backend: Backend::Memory(Arc::new(MemoryDb::new(sync_delay))),
            faults: Arc::default(),
            decoded: Self::new_cache(),
        }
    }

    /// Simulates a crash of an in-memory database: this handle (and every clone)
    /// fails all later operations, and the returned database holds what was durable
    /// plus the oldest `surviving_unsynced` batches written without a sync (the
    /// sequential WAL reached the disk up to some point). Fails on RocksDB.
    pub fn crash(&self, surviving_unsynced: usize) -> std::io::Result<NodeDb> {
        match &self.backend {
            Backend::Memory(memory) => Ok(NodeDb {
                backend: Backend::Memory(Arc::new(memory.crash(surviving_unsynced)?)),
                faults: Arc::default(),
                decoded: Self::new_cache(),
            }),
            Backend::Rocks(_) => Err(std::io::Error::other("only an in-memory database can simulate a crash")),
        }
    }

    /// Batches written without a sync that a crash could lose (0 on RocksDB).
    pub fn unsynced_batches(&self) -> usize {
        match &self.backend {
            Backend::Memory(memory) => memory.unsynced_batches(),
            Backend::Rocks(_) => 0,
        }
    }

    /// The switch that fails this database's writes, for fault tests.
    pub fn faults(&self) -> &StorageFaults {
        &self.faults
    }

    /// How many WAL fsyncs this database has done since it was opened.
    pub fn wal_syncs(&self) -> u64 {
        match &self.backend {
            Backend::Rocks(inner) => inner.wal_syncs.load(Ordering::Relaxed),
            Backend::Memory(memory) => memory.syncs(),
        }
    }

    pub fn batch(&self) -> Batch<'_> {
        self.batch_for(0)
    }

    /// A batch that will hold about `bytes` of keys and values: its buffer is
    /// allocated once, not grown (and copied) by doubling as puts arrive.
    pub fn batch_for(&self, bytes: usize) -> Batch<'_> {
        let writes = match &self.backend {
            Backend::Rocks(_) if bytes > 0 => Writes::Rocks(WriteBatch::with_capacity_bytes(bytes)),
            Backend::Rocks(_) => Writes::Rocks(WriteBatch::default()),
            Backend::Memory(_) => Writes::Memory(Vec::new()),
        };
        Batch { db: self, writes, error: None }
    }

    pub fn get(&self, cf: Cf, key: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Rocks(inner) => inner.db.get_cf(inner.cf(cf)?, key).map_err(io_error),
            Backend::Memory(memory) => memory.get(cf, key),
        }
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
        let inner = match &self.backend {
            Backend::Rocks(inner) => inner,
            Backend::Memory(memory) => {
                // In chunks, so a scan that stops early does not copy the whole range.
                let mut chunk = memory.range(cf, (from, false), to, false, MEMORY_SCAN_CHUNK)?;
                while !chunk.is_empty() {
                    for (key, value) in &chunk {
                        if !visit(key, value)? {
                            return Ok(());
                        }
                    }
                    let Some(last) = chunk.last().map(|(key, _)| key.clone()) else { break };
                    chunk = memory.range(cf, (&last, true), to, false, MEMORY_SCAN_CHUNK)?;
                }
                return Ok(());
            }
        };
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_upper_bound(to.to_vec());
        let iter = inner.db.iterator_cf_opt(inner.cf(cf)?, read_options, IteratorMode::From(from, Direction::Forward));
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
        if let Backend::Memory(memory) = &self.backend {
            return Ok(memory.range(cf, (from, false), to, false, 1)?.pop());
        }
        let mut found = None;
        self.scan(cf, from, to, |k, v| {
            found = Some((k.to_vec(), v.to_vec()));
            Ok(false)
        })?;
        Ok(found)
    }

    /// The last key-value pair in `[from, to)`.
    pub fn last(&self, cf: Cf, from: &[u8], to: &[u8]) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let inner = match &self.backend {
            Backend::Rocks(inner) => inner,
            Backend::Memory(memory) => return Ok(memory.range(cf, (from, false), to, true, 1)?.pop()),
        };
        let mut read_options = ReadOptions::default();
        read_options.set_iterate_lower_bound(from.to_vec());
        read_options.set_iterate_upper_bound(to.to_vec());
        let mut iter = inner.db.iterator_cf_opt(inner.cf(cf)?, read_options, IteratorMode::End);
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
        if let Err(error) = self.faults.check() {
            return done(Err(error));
        }
        let inner = match &self.backend {
            Backend::Rocks(inner) => inner,
            Backend::Memory(memory) => return when_memory_durable(memory.clone(), done),
        };
        let sender = match inner.wal_sync.lock() {
            Ok(sender) => sender.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let Some(sender) = sender else {
            done(Err(std::io::Error::other("wal sync thread stopped")));
            return;
        };
        let queued = std::time::Instant::now();
        let done = move |result| {
            // The syncer's queue and its fsync, as the waiting writer sees them.
            metrics::histogram!("shoal_wal_durable_wait_seconds").record(queued.elapsed().as_secs_f64());
            done(result)
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

    /// Writes every memtable to disk, all column families at one point (atomic
    /// flush): afterwards everything written so far survives a crash, synced or
    /// not. Blocks until done; seconds on a big
    /// memtable, so async callers use [`NodeDb::flushed`].
    pub fn flush(&self) -> std::io::Result<()> {
        self.faults.check()?;
        match &self.backend {
            Backend::Rocks(inner) => {
                let handles = Cf::ALL.iter().map(|cf| inner.cf(*cf)).collect::<std::io::Result<Vec<_>>>()?;
                let mut options = rocksdb::FlushOptions::default();
                options.set_wait(true);
                inner.db.flush_cfs_opt(&handles, &options).map_err(io_error)
            }
            Backend::Memory(memory) => memory.flush(),
        }
    }

    /// [`NodeDb::flush`] off the async runtime's threads.
    pub async fn flushed(&self) -> std::io::Result<()> {
        if let Backend::Memory(_) = &self.backend {
            return self.flush();
        }
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(format!("flush task failed: {e}"))))
    }

    /// A RocksDB property of the whole database as text (`rocksdb.dbstats`: writes,
    /// WAL syncs and write stalls so far); `None` on the in-memory database.
    pub fn property(&self, name: &str) -> std::io::Result<Option<String>> {
        match &self.backend {
            Backend::Rocks(inner) => inner.db.property_value(name).map_err(io_error),
            Backend::Memory(_) => Ok(None),
        }
    }

    /// A RocksDB property of one column family as text (`rocksdb.cfstats`:
    /// its levels, flushes, compactions and stalls); `None` on the in-memory database.
    pub fn cf_property(&self, cf: Cf, name: &str) -> std::io::Result<Option<String>> {
        match &self.backend {
            Backend::Rocks(inner) => inner.db.property_value_cf(inner.cf(cf)?, name).map_err(io_error),
            Backend::Memory(_) => Ok(None),
        }
    }

    /// An integer RocksDB property of the whole database (`rocksdb.is-write-stopped`,
    /// `rocksdb.actual-delayed-write-rate`); `None` on the in-memory database.
    pub fn property_int(&self, name: &str) -> std::io::Result<Option<u64>> {
        match &self.backend {
            Backend::Rocks(inner) => inner.db.property_int_value(name).map_err(io_error),
            Backend::Memory(_) => Ok(None),
        }
    }

    /// An integer RocksDB property summed over every column family
    /// (`rocksdb.cur-size-all-mem-tables`, `rocksdb.num-files-at-level0`, …);
    /// `None` on the in-memory database or for a property RocksDB does not know.
    pub fn property_total(&self, name: &str) -> std::io::Result<Option<u64>> {
        let Backend::Rocks(inner) = &self.backend else { return Ok(None) };
        let mut total = None;
        for cf in Cf::ALL {
            if let Some(value) = inner.db.property_int_value_cf(inner.cf(cf)?, name).map_err(io_error)? {
                total = Some(total.unwrap_or(0) + value);
            }
        }
        Ok(total)
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

/// Values at least this large go to blob files (key-value separation).
const MIN_BLOB_BYTES: u64 = 256;
/// Size of one blob file: small enough that garbage collection frees space in
/// steps, large enough to keep the file count down.
const BLOB_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// How RocksDB keeps one column family.
///
/// Raft log entries and applied records are large values written once and
/// deleted in order (log purges, retention). In an LSM tree every compaction would
/// rewrite them (measured: each byte written two more times, and a fifth of a
/// node's CPU under load). So their values go to blob files (RocksDB's integrated
/// BlobDB): written once at flush, never rewritten by compaction, which moves only
/// keys and blob references; a blob file is deleted once nothing refers to it.
/// (`records` holds only small index rows since the log became the record store,
/// but rows written by older versions hold whole records.)
fn column_family_options(cf: Cf) -> Options {
    let mut options = Options::default();
    if matches!(cf, Cf::RaftLog | Cf::Records) {
        options.set_enable_blob_files(true);
        options.set_min_blob_size(MIN_BLOB_BYTES);
        options.set_blob_file_size(BLOB_FILE_BYTES);
        // Records expire in the order they arrived, so a blob file frees up as a
        // whole; relocating its live records early would only write them again.
        // A shard group's log entries hold its records and go with them.
        options.set_enable_blob_gc(false);
    }
    if cf == Cf::Records {
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    }
    options
}

/// A simulated WAL fsync: after the database's sync delay, everything written by
/// then becomes durable and `done` runs (inline when there is no delay or runtime).
fn when_memory_durable(memory: Arc<MemoryDb>, done: impl FnOnce(std::io::Result<()>) + Send + 'static) {
    let delay = memory.sync_delay();
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) if !delay.is_zero() => {
            runtime.spawn(async move {
                tokio::time::sleep(delay).await;
                done(memory.sync());
            });
        }
        _ => done(memory.sync()),
    }
}

impl Inner {
    fn cf(&self, cf: Cf) -> std::io::Result<&ColumnFamily> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| std::io::Error::other(format!("column family {} missing", cf.name())))
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
    writes: Writes,
    error: Option<std::io::Error>,
}

enum Writes {
    Rocks(WriteBatch),
    Memory(Vec<MemoryOp>),
}

impl Batch<'_> {
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) -> std::io::Result<()> {
        match (&mut self.writes, &self.db.backend) {
            (Writes::Rocks(batch), Backend::Rocks(inner)) => batch.put_cf(inner.cf(cf)?, key, value),
            (Writes::Memory(ops), _) => ops.push(MemoryOp::Put(cf, key.to_vec(), value.to_vec())),
            _ => return Err(mismatched_batch()),
        }
        Ok(())
    }

    pub fn delete(&mut self, cf: Cf, key: &[u8]) -> std::io::Result<()> {
        match (&mut self.writes, &self.db.backend) {
            (Writes::Rocks(batch), Backend::Rocks(inner)) => batch.delete_cf(inner.cf(cf)?, key),
            (Writes::Memory(ops), _) => ops.push(MemoryOp::Delete(cf, key.to_vec())),
            _ => return Err(mismatched_batch()),
        }
        Ok(())
    }

    /// Deletes `[from, to)` with one range tombstone.
    pub fn delete_range(&mut self, cf: Cf, from: &[u8], to: &[u8]) -> std::io::Result<()> {
        match (&mut self.writes, &self.db.backend) {
            (Writes::Rocks(batch), Backend::Rocks(inner)) => batch.delete_range_cf(inner.cf(cf)?, from, to),
            (Writes::Memory(ops), _) => ops.push(MemoryOp::DeleteRange(cf, from.to_vec(), to.to_vec())),
            _ => return Err(mismatched_batch()),
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        match &self.writes {
            Writes::Rocks(batch) => batch.is_empty(),
            Writes::Memory(ops) => ops.is_empty(),
        }
    }

    /// Writes the batch to the memtable and the (not yet synced) WAL.
    pub fn commit(self) -> std::io::Result<()> {
        self.write(Durability::Logged)
    }

    /// Writes the batch and fsyncs the WAL before returning.
    pub fn commit_synced(self) -> std::io::Result<()> {
        self.write(Durability::Synced)
    }

    fn write(self, durability: Durability) -> std::io::Result<()> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.db.faults.check()?;
        match (self.writes, &self.db.backend) {
            (Writes::Rocks(batch), Backend::Rocks(inner)) => {
                let mut options = rocksdb::WriteOptions::default();
                options.set_sync(durability == Durability::Synced);
                inner.db.write_opt(batch, &options).map_err(io_error)
            }
            (Writes::Memory(ops), Backend::Memory(memory)) => memory.commit(ops, durability),
            _ => Err(mismatched_batch()),
        }
    }
}

/// How a committed batch reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// In the WAL; durable with the next WAL sync.
    Logged,
    /// In the WAL, synced before the commit returns.
    Synced,
}

/// A batch is always built for the backend of the database that created it.
fn mismatched_batch() -> std::io::Error {
    std::io::Error::other("write batch used with a database of another kind")
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

    #[test]
    fn memory_backend_puts_gets_scans_and_deletes_ranges() {
        let db = NodeDb::in_memory(Duration::ZERO);
        let mut batch = db.batch();
        for i in 0..10u64 {
            batch.put(Cf::RaftLog, &keys::group_u64(1, i), &[i as u8]).unwrap();
        }
        batch.put(Cf::RaftLog, &keys::group_u64(2, 0), b"other group").unwrap();
        batch.commit().unwrap();
        assert_eq!(db.get(Cf::RaftLog, &keys::group_u64(1, 4)).unwrap(), Some(vec![4]));
        assert_eq!(db.get(Cf::Records, &keys::group_u64(1, 4)).unwrap(), None, "column families are separate");
        let mut seen = vec![];
        db.scan(Cf::RaftLog, &keys::group_u64(1, 3), &keys::group_end(1), |k, _| {
            seen.push(keys::read_u64(k, 8).unwrap());
            Ok(seen.len() < 4)
        })
        .unwrap();
        assert_eq!(seen, vec![3, 4, 5, 6]);
        let (first, _) = db.first(Cf::RaftLog, &keys::group_prefix(1), &keys::group_end(1)).unwrap().unwrap();
        let (last, _) = db.last(Cf::RaftLog, &keys::group_prefix(1), &keys::group_end(1)).unwrap().unwrap();
        assert_eq!((keys::read_u64(&first, 8), keys::read_u64(&last, 8)), (Some(0), Some(9)));
        let mut batch = db.batch();
        batch.delete_range(Cf::RaftLog, &keys::group_u64(1, 5), &keys::group_end(1)).unwrap();
        batch.delete(Cf::RaftLog, &keys::group_u64(1, 0)).unwrap();
        batch.commit().unwrap();
        let mut left = vec![];
        db.scan(Cf::RaftLog, &keys::group_prefix(1), &keys::group_end(1), |k, _| {
            left.push(keys::read_u64(k, 8).unwrap());
            Ok(true)
        })
        .unwrap();
        assert_eq!(left, vec![1, 2, 3, 4]);
        db.drop_group(1).unwrap();
        assert!(db.first(Cf::RaftLog, &keys::group_prefix(1), &keys::group_end(1)).unwrap().is_none());
        assert!(db.first(Cf::RaftLog, &keys::group_prefix(2), &keys::group_end(2)).unwrap().is_some());
    }

    #[test]
    fn memory_scans_span_many_chunks_and_stop_early() {
        let db = NodeDb::in_memory(Duration::ZERO);
        let mut batch = db.batch();
        for i in 0..500u64 {
            batch.put(Cf::Records, &keys::group_u64(3, i), b"r").unwrap();
        }
        batch.commit().unwrap();
        let mut seen = vec![];
        db.scan(Cf::Records, &keys::group_u64(3, 10), &keys::group_u64(3, 400), |k, _| {
            seen.push(keys::read_u64(k, 8).unwrap());
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, (10..400).collect::<Vec<_>>());
        let mut count = 0;
        db.scan(Cf::Records, &keys::group_prefix(3), &keys::group_end(3), |_, _| {
            count += 1;
            Ok(count < 100)
        })
        .unwrap();
        assert_eq!(count, 100);
    }

    #[test]
    fn memory_crash_loses_exactly_the_unsynced_writes() {
        let db = NodeDb::in_memory(Duration::ZERO);
        db.put_synced(Cf::RaftState, b"vote", b"1").unwrap();
        let mut batch = db.batch();
        batch.put(Cf::RaftLog, b"a", b"applied but not synced").unwrap();
        batch.commit().unwrap();
        assert_eq!(db.unsynced_batches(), 1);
        let recovered = db.crash(0).unwrap();
        assert_eq!(recovered.get(Cf::RaftState, b"vote").unwrap(), Some(b"1".to_vec()));
        assert_eq!(recovered.get(Cf::RaftLog, b"a").unwrap(), None, "an unsynced write is lost");
        assert!(db.get(Cf::RaftState, b"vote").is_err(), "the crashed handle is dead");
        assert!(db.put_synced(Cf::RaftState, b"late", b"x").is_err());

        // A synced write makes every earlier write durable too (one sequential WAL).
        let mut batch = recovered.batch();
        batch.put(Cf::RaftLog, b"b", b"1").unwrap();
        batch.commit().unwrap();
        recovered.put_synced(Cf::RaftState, b"vote", b"2").unwrap();
        let mut batch = recovered.batch();
        batch.put(Cf::RaftLog, b"c", b"1").unwrap();
        batch.commit().unwrap();
        let mut batch = recovered.batch();
        batch.delete(Cf::RaftLog, b"b").unwrap();
        batch.commit().unwrap();
        // The WAL reached the disk up to the first of the two unsynced batches.
        let again = recovered.crash(1).unwrap();
        assert_eq!(again.get(Cf::RaftLog, b"b").unwrap(), Some(b"1".to_vec()));
        assert_eq!(again.get(Cf::RaftLog, b"c").unwrap(), Some(b"1".to_vec()));
        assert_eq!(again.get(Cf::RaftState, b"vote").unwrap(), Some(b"2".to_vec()));
    }

    fn put_logged(db: &NodeDb, cf: Cf, key: &[u8], value: &[u8]) {
        let mut batch = db.batch();
        batch.put(cf, key, value).unwrap();
        batch.commit().unwrap();
    }

    /// The size of every WAL file in `dir`, by file name.
    fn wal_files(dir: &Path) -> Vec<(String, u64)> {
        let mut logs: Vec<(String, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
            .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.metadata().unwrap().len()))
            .collect();
        logs.sort();
        logs
    }

    #[test]
    fn flushed_wal_files_are_overwritten_by_later_wals_and_every_write_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let value = vec![3u8; 64 * 1024];
        // A first WAL of 2 MiB, then WALs of 256 KiB.
        let rounds: Vec<u32> = vec![32, 4, 4, 4, 4];
        let mut listings = Vec::new();
        {
            let db = NodeDb::open(dir.path()).unwrap();
            for (round, count) in rounds.iter().enumerate() {
                for i in 0..*count {
                    put_logged(&db, Cf::RaftLog, &(round as u32 * 100 + i).to_be_bytes(), &value);
                }
                listings.push(wal_files(dir.path()));
                // Each flush starts a new WAL and leaves the previous one obsolete.
                db.flush().unwrap();
            }
            // Only in the WAL (a close flushes no memtable the WAL holds): the
            // reopen replays it.
            put_logged(&db, Cf::StateMachine, b"applied", b"after the last flush");
            let (tx, rx) = std::sync::mpsc::channel();
            db.when_durable(move |r| tx.send(r.is_ok()).unwrap());
            assert!(rx.recv().unwrap());
        }
        // A WAL of the later rounds holds 256 KiB; one of them overwrote the first
        // round's file in place and so has its length.
        let newest = |listing: &Vec<(String, u64)>| listing.last().map(|(_, len)| *len).unwrap_or(0);
        assert!(
            listings[1..].iter().any(|listing| newest(listing) >= 2 * 1024 * 1024),
            "a later WAL took over the first WAL's file: {listings:?}"
        );
        assert!(
            listings.iter().all(|listing| listing.len() <= RECYCLED_WAL_FILES + 1),
            "flushed WAL files do not pile up: {listings:?}"
        );
        let db = NodeDb::open(dir.path()).unwrap();
        for (round, count) in rounds.iter().enumerate() {
            for i in 0..*count {
                let key = round as u32 * 100 + i;
                assert_eq!(db.get(Cf::RaftLog, &key.to_be_bytes()).unwrap(), Some(value.clone()), "entry {key}");
            }
        }
        assert_eq!(db.get(Cf::StateMachine, b"applied").unwrap(), Some(b"after the last flush".to_vec()));
    }

    #[test]
    fn large_records_and_log_entries_go_to_blob_files_and_read_back_after_a_compaction_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let record = vec![7u8; 1024];
        {
            let db = NodeDb::open(dir.path()).unwrap();
            assert_eq!(db.property_total("rocksdb.num-blob-files").unwrap(), Some(0));
            let mut batch = db.batch();
            for i in 0u32..100 {
                batch.put(Cf::Records, &i.to_be_bytes(), &record).unwrap();
                batch.put(Cf::RaftLog, &i.to_be_bytes(), &record).unwrap();
            }
            batch.put(Cf::Records, b"small", b"stays in the table").unwrap();
            batch.commit().unwrap();
            db.flush().unwrap();
            // One blob file per column family that keeps its values apart.
            assert_eq!(db.property_total("rocksdb.num-blob-files").unwrap(), Some(2));
            // Log purges and retention delete ranges; compaction then drops them.
            let mut batch = db.batch();
            batch.delete_range(Cf::RaftLog, &0u32.to_be_bytes(), &50u32.to_be_bytes()).unwrap();
            batch.commit_synced().unwrap();
            let Backend::Rocks(inner) = &db.backend else { unreachable!() };
            inner.db.compact_range_cf(inner.cf(Cf::RaftLog).unwrap(), None::<&[u8]>, None::<&[u8]>);
            assert_eq!(db.get(Cf::RaftLog, &49u32.to_be_bytes()).unwrap(), None);
            assert_eq!(db.get(Cf::RaftLog, &50u32.to_be_bytes()).unwrap(), Some(record.clone()));
        }
        let db = NodeDb::open(dir.path()).unwrap();
        for i in 0u32..100 {
            assert_eq!(db.get(Cf::Records, &i.to_be_bytes()).unwrap(), Some(record.clone()), "record {i}");
        }
        assert_eq!(db.get(Cf::RaftLog, &99u32.to_be_bytes()).unwrap(), Some(record));
        assert_eq!(db.get(Cf::Records, b"small").unwrap(), Some(b"stays in the table".to_vec()));
    }

    #[test]
    fn a_database_on_tmpfs_flushes_whether_or_not_it_takes_direct_io() {
        // tmpfs refuses O_DIRECT before Linux 6.6 and takes it since: either way the
        // probe decides, and flushes work.
        let shm = std::path::Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        let db = NodeDb::open_with(dir.path(), true).unwrap();
        put_logged(&db, Cf::Records, b"r", &[1u8; 1024]);
        db.flush().unwrap();
        assert_eq!(db.get(Cf::Records, b"r").unwrap(), Some(vec![1u8; 1024]));
    }

    #[test]
    fn memory_when_durable_makes_earlier_writes_survive_a_crash() {
        let db = NodeDb::in_memory(Duration::ZERO);
        let mut batch = db.batch();
        batch.put(Cf::RaftLog, b"entry", b"1").unwrap();
        batch.commit().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        db.when_durable(move |r| tx.send(r.is_ok()).unwrap());
        assert!(rx.recv().unwrap());
        assert_eq!(db.crash(0).unwrap().get(Cf::RaftLog, b"entry").unwrap(), Some(b"1".to_vec()));
    }

    #[tokio::test(start_paused = true)]
    async fn memory_when_durable_syncs_after_the_delay() {
        let db = NodeDb::in_memory(Duration::from_millis(5));
        let mut batch = db.batch();
        batch.put(Cf::RaftLog, b"entry", b"1").unwrap();
        batch.commit().unwrap();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        db.when_durable(move |r| tx.send(r.is_ok()).unwrap());
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "the sync takes its virtual time");
        assert_eq!(db.unsynced_batches(), 1);
        assert!(rx.await.unwrap());
        assert_eq!(db.unsynced_batches(), 0);
        assert_eq!(db.wal_syncs(), 1);
    }
}
