//! Failing a node's storage on purpose, for fault tests.
//!
//! When a disk fills up or fails, RocksDB records a background error and turns
//! read-only: every later write and WAL sync fails, reads still answer. While
//! [`StorageFaults::fail`] is in force, [`NodeDb`](crate::NodeDb) behaves the same
//! way, so tests can check what the layers above do with a node whose storage has
//! failed without filling a real disk.

use std::sync::atomic::{AtomicBool, Ordering};

/// The switch of one database (shared by every clone of its handle).
#[derive(Debug, Default)]
pub struct StorageFaults {
    failing: AtomicBool,
}

impl StorageFaults {
    /// From now on every write, WAL sync and flush fails; reads go on.
    pub fn fail(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }

    /// Whether writes are failing.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// The error a write gets while the storage fails.
    pub(crate) fn check(&self) -> std::io::Result<()> {
        match self.is_failing() {
            true => Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "the node's storage failed (injected fault: no space left on device)",
            )),
            false => Ok(()),
        }
    }
}
