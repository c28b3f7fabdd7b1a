//! Group commit: one thread makes the WAL durable for every waiting writer.
//!
//! Raft appends of every group on the node write their batch without syncing and
//! hand a completion to this thread. The thread takes everything queued, calls
//! `FlushWAL(sync = true)` once, and completes the lot. Under load, one fsync
//! covers the appends of many writers and many shards; idle, a lone append pays
//! exactly one fsync, as it must.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use rocksdb::DB;

pub(crate) type Completion = Box<dyn FnOnce(std::io::Result<()>) + Send>;

pub(crate) fn spawn(
    db: Arc<DB>,
    syncs: Arc<AtomicU64>,
) -> std::io::Result<(Sender<Completion>, std::thread::JoinHandle<()>)> {
    let (sender, receiver) = channel::<Completion>();
    let thread = std::thread::Builder::new().name("shoal-wal-sync".into()).spawn(move || run(db, receiver, syncs))?;
    Ok((sender, thread))
}

/// Runs until every sender is gone, which is when the node's database is dropped.
fn run(db: Arc<DB>, receiver: Receiver<Completion>, syncs: Arc<AtomicU64>) {
    while let Ok(first) = receiver.recv() {
        let mut waiting = vec![first];
        waiting.extend(receiver.try_iter());
        let started = Instant::now();
        let result = db.flush_wal(true).map_err(|e| std::io::Error::other(format!("wal sync failed: {e}")));
        syncs.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shoal_wal_syncs_total").increment(1);
        metrics::histogram!("shoal_wal_sync_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("shoal_wal_sync_batch_size").record(waiting.len() as f64);
        if let Err(error) = &result {
            tracing::error!(%error, "wal sync failed; failing the appends that waited on it");
        }
        for completion in waiting {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            completion(outcome);
        }
    }
}
