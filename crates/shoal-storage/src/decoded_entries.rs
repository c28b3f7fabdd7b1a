//! Recently used Raft log entries, decoded, shared by everything on a node that
//! reads them.
//!
//! A shard's records live in the log entries that carried them, and an entry of
//! a group that several shards share holds the records of all of them. Without a
//! cache, every shard's reader (a subscription tails each shard) would load and
//! decode the same entry again for its slice of it. The state machine inserts
//! each entry it applies, so readers that keep up never decode at all; a reader
//! that misses decodes once and inserts the result for the others.
//!
//! Values are type-erased (this crate knows nothing of entries); keys are
//! `(group, log index)`. Only committed entries go in, and a committed entry
//! never changes, so nothing is ever invalidated: the oldest go first once the
//! cache holds more than its byte budget.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A decoded entry, as the layer above stored it.
pub type DecodedEntry = Arc<dyn Any + Send + Sync>;

pub struct DecodedEntries {
    budget_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(u64, u64), (DecodedEntry, usize)>,
    /// Keys in insertion order, oldest first.
    order: VecDeque<(u64, u64)>,
    bytes: usize,
}

impl DecodedEntries {
    pub fn new(budget_bytes: usize) -> Self {
        DecodedEntries { budget_bytes, inner: Mutex::default() }
    }

    /// The entry at `log_index` of `group`, if cached.
    pub fn get(&self, group: u64, log_index: u64) -> Option<DecodedEntry> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.get(&(group, log_index)).map(|(entry, _)| entry.clone())
    }

    /// Caches the committed entry at `log_index` of `group`, about `bytes` large,
    /// evicting the oldest entries beyond the budget. An entry larger than the
    /// whole budget is not kept.
    pub fn insert(&self, group: u64, log_index: u64, entry: DecodedEntry, bytes: usize) {
        if bytes > self.budget_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.entries.insert((group, log_index), (entry, bytes)).is_some() {
            // Re-applied after a restart, or decoded by two readers at once: the
            // same entry; its first place in the order stands.
            return;
        }
        inner.order.push_back((group, log_index));
        inner.bytes += bytes;
        while inner.bytes > self.budget_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some((_, size)) = inner.entries.remove(&oldest) {
                inner.bytes -= size;
            }
        }
    }

    /// Bytes held (as their inserters estimated them).
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entries_go_once_the_budget_is_exceeded() {
        let cache = DecodedEntries::new(100);
        for index in 0..5u64 {
            cache.insert(1, index, Arc::new(index), 30);
        }
        assert_eq!(cache.bytes(), 90);
        assert!(cache.get(1, 1).is_none());
        let kept = cache.get(1, 4).and_then(|e| e.downcast_ref::<u64>().copied());
        assert_eq!(kept, Some(4));
        assert!(cache.get(2, 4).is_none(), "keyed by group too");
        cache.insert(1, 4, Arc::new(99u64), 30);
        assert_eq!(cache.bytes(), 90, "a second insert of one entry counts once");
        cache.insert(1, 9, Arc::new(9u64), 101);
        assert!(cache.get(1, 9).is_none(), "larger than the whole budget");
    }
}
