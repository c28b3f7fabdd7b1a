//! An in-memory stand-in for the node's RocksDB, for deterministic simulation.
//!
//! It models durability the way RocksDB's write-ahead log does, because that is
//! exactly what a crash test must get right:
//!
//! * every committed batch is visible to reads at once (the memtable);
//! * a batch is durable only once a sync covered it: [`commit_synced`] syncs,
//!   and a `when_durable` completion syncs everything written before it runs;
//! * the WAL is sequential, so a sync makes every earlier batch durable too, and
//!   a crash keeps the durable state plus some prefix of the unsynced batches;
//! * a flush (of every column family at once, like RocksDB's atomic flush) makes
//!   everything committed so far durable.
//!
//! [`MemoryDb::crash`] returns a fresh database holding what survives a crash; the
//! crashed handle refuses every later operation, as a dead process would.
//!
//! [`commit_synced`]: crate::Batch::commit_synced

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::column_family::Cf;
use crate::node_db::Durability;

type Table = BTreeMap<Vec<u8>, Vec<u8>>;

/// One table per column family, indexed by [`Cf::index`].
#[derive(Clone, Default)]
struct Tables([Table; Cf::ALL.len()]);

impl Tables {
    fn apply(&mut self, op: &MemoryOp) {
        match op {
            MemoryOp::Put(cf, key, value) => {
                self.0[cf.index()].insert(key.clone(), value.clone());
            }
            MemoryOp::Delete(cf, key) => {
                self.0[cf.index()].remove(key);
            }
            MemoryOp::DeleteRange(cf, from, to) => {
                if from < to {
                    let table = &mut self.0[cf.index()];
                    let doomed: Vec<Vec<u8>> = table
                        .range::<[u8], _>((Bound::Included(from.as_slice()), Bound::Excluded(to.as_slice())))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in doomed {
                        table.remove(&key);
                    }
                }
            }
        }
    }
}

/// One write of a batch.
pub(crate) enum MemoryOp {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
    DeleteRange(Cf, Vec<u8>, Vec<u8>),
}

struct State {
    /// What reads see: every committed batch.
    live: Tables,
    /// What a crash keeps for sure: every batch a sync covered.
    durable: Tables,
    /// Batches no sync or flush has covered yet, oldest first.
    unsynced: Vec<Vec<MemoryOp>>,
    /// Set on the handle of a crashed incarnation: it refuses everything after.
    crashed: bool,
}

pub(crate) struct MemoryDb {
    state: Mutex<State>,
    /// Virtual time a `when_durable` sync takes; zero completes inline.
    sync_delay: Duration,
    syncs: AtomicU64,
}

fn crashed_error() -> std::io::Error {
    std::io::Error::other("the node crashed: this database handle is dead")
}

impl MemoryDb {
    pub(crate) fn new(sync_delay: Duration) -> MemoryDb {
        MemoryDb::with_tables(Tables::default(), sync_delay)
    }

    fn with_tables(tables: Tables, sync_delay: Duration) -> MemoryDb {
        let state = State { live: tables.clone(), durable: tables, unsynced: Vec::new(), crashed: false };
        MemoryDb { state: Mutex::new(state), sync_delay, syncs: AtomicU64::new(0) }
    }

    fn lock(&self) -> std::io::Result<std::sync::MutexGuard<'_, State>> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.crashed {
            return Err(crashed_error());
        }
        Ok(state)
    }

    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    pub(crate) fn sync_delay(&self) -> Duration {
        self.sync_delay
    }

    pub(crate) fn get(&self, cf: Cf, key: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.lock()?.live.0[cf.index()].get(key).cloned())
    }

    /// Up to `limit` pairs with keys from `from` (inclusive, or exclusive with
    /// `after`) to `to` (exclusive), in key order or in reverse. Copies them out so
    /// the caller's visitor runs without the lock held.
    pub(crate) fn range(
        &self,
        cf: Cf,
        (from, after): (&[u8], bool),
        to: &[u8],
        reverse: bool,
        limit: usize,
    ) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let state = self.lock()?;
        if from >= to {
            return Ok(Vec::new());
        }
        let start = if after { Bound::Excluded(from) } else { Bound::Included(from) };
        let range = state.live.0[cf.index()].range::<[u8], _>((start, Bound::Excluded(to)));
        let copy = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if reverse { range.rev().take(limit).map(copy).collect() } else { range.take(limit).map(copy).collect() })
    }

    /// Commits a batch atomically; a synced one also makes every logged batch
    /// before it durable.
    pub(crate) fn commit(&self, ops: Vec<MemoryOp>, durability: Durability) -> std::io::Result<()> {
        let mut state = self.lock()?;
        for op in &ops {
            state.live.apply(op);
        }
        state.unsynced.push(ops);
        if durability == Durability::Synced {
            Self::sync_locked(&mut state);
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes everything committed so far durable, logged or not, like a flush of
    /// every memtable.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        let mut state = self.lock()?;
        state.durable = state.live.clone();
        state.unsynced.clear();
        Ok(())
    }

    fn sync_locked(state: &mut State) {
        let unsynced = std::mem::take(&mut state.unsynced);
        for op in unsynced.iter().flatten() {
            state.durable.apply(op);
        }
    }

    /// Makes everything committed so far durable, like one WAL fsync.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        let mut state = self.lock()?;
        Self::sync_locked(&mut state);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Committed batches not yet durable.
    pub(crate) fn unsynced_batches(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).unsynced.len()
    }

    /// Kills this incarnation and returns what its successor finds on disk: the
    /// durable state plus the oldest `surviving_unsynced` unsynced batches (the WAL
    /// reached the disk up to some point). Fails if this handle already crashed.
    pub(crate) fn crash(&self, surviving_unsynced: usize) -> std::io::Result<MemoryDb> {
        let mut state = self.lock()?;
        state.crashed = true;
        let mut tables = std::mem::take(&mut state.durable);
        for op in state.unsynced.iter().take(surviving_unsynced).flatten() {
            tables.apply(op);
        }
        state.live = Tables::default();
        state.unsynced.clear();
        Ok(MemoryDb::with_tables(tables, self.sync_delay))
    }
}
