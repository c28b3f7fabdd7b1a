//! Drops records older than their stream's retention period.
//!
//! Every replica expires its own copy: records are immutable and carry the
//! arrival time the leader gave them, so all replicas drop the same ones. The work
//! is two range deletions per shard, however many records expire, and one per
//! group for the Raft log entries that held them (a shard's records live in its
//! group's log; see `shoal_raft::shard_state`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use shoal_raft::MetaCommand;
use shoal_raft::shard_state::{expire_before, release_log};
use shoal_types::now_millis;
use tokio::sync::watch;

use crate::meta_writer;
use crate::node::Node;

pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(node.config.retention_check_secs.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        expire(&node).await;
    }
}

/// Erases what is left of packed shards that left the metadata (closed, their
/// records expired) while their group lives on for its other shards: a pass that
/// ran just before their last records expired may have left some, and their
/// progress stays. (A group that carries only dropped shards stops, and the
/// reconciler erases all of it.)
fn erase_dropped_shards(node: &Node) {
    // Handles first: every store they carry was in the metadata when they
    // started, so one missing from the metadata read after them was dropped.
    let handles = node.groups.all();
    let meta = node.meta_snapshot();
    let present: BTreeSet<u64> = meta.shard_groups().map(|(_, shard)| shard.store()).collect();
    for handle in handles {
        let dropped = handle.shards.values().filter(|s| s.store != handle.group && !present.contains(&s.store));
        for slot in dropped.filter(|slot| !slot.erased.swap(true, Ordering::Relaxed)) {
            match node.db.drop_group(slot.store) {
                Ok(()) => tracing::info!(group = handle.group, store = slot.store, "dropped shard's data erased"),
                Err(error) => {
                    slot.erased.store(false, Ordering::Relaxed);
                    tracing::error!(group = handle.group, store = slot.store, %error, "cannot erase a dropped shard");
                }
            }
        }
    }
}

/// Removes the Raft log entries of each local group that retention and openraft
/// are both done with, and moves openraft's purge point up to the entries no
/// shard reads any more, so that the next pass can remove those too.
///
/// openraft purges on its own only after a snapshot, and keeps the last
/// [`LOG_KEPT_AFTER_SNAPSHOT`](shoal_raft::type_config::LOG_KEPT_AFTER_SNAPSHOT) entries even then: an idle group would keep its
/// expired records on disk for good, and with them whole blob files that other
/// groups' expired records share. So a pass asks openraft to purge
/// (`purge_log`, which does not keep that tail; a follower that falls further
/// behind gets a snapshot instead), and asks for a snapshot first where the last
/// one does not reach that far and the group is resting or has many such entries.
async fn release_logs(node: &Node) {
    for handle in node.groups.all() {
        if handle.shards.is_empty() {
            continue;
        }
        let stores: Vec<u64> = handle.shards.keys().copied().collect();
        let release = match release_log(&node.db, handle.group, &stores) {
            Ok(release) => release,
            Err(error) => {
                tracing::error!(group = handle.group, %error, "releasing log entries failed");
                continue;
            }
        };
        if let Some(below) = release.released_below {
            tracing::debug!(group = handle.group, below, "log entries of expired records removed");
        }
        // Entries before a group's first record (its first membership entries)
        // are left to openraft: only expired records are worth a snapshot.
        if release.awaiting_purge == 0 {
            handle.expired_unpurged.store(false, Ordering::Relaxed);
            continue;
        }
        if !handle.expired_unpurged.load(Ordering::Relaxed) {
            continue;
        }
        let upto = release.needed_from.saturating_sub(1);
        let snapshot = handle.raft.metrics().borrow_watched().snapshot.map(|id| id.index);
        if snapshot.is_none_or(|index| index < upto)
            && (handle.is_resting() || release.awaiting_purge > UNNEEDED_ENTRIES_BEFORE_A_SNAPSHOT)
        {
            tracing::info!(
                group = handle.group,
                entries = release.awaiting_purge,
                "snapshot to release expired log entries"
            );
            if let Err(error) = handle.raft.trigger().snapshot().await {
                tracing::warn!(group = handle.group, %error, "cannot trigger a snapshot");
            }
        }
        if let Err(error) = handle.raft.trigger().purge_log(upto).await {
            tracing::warn!(group = handle.group, %error, "cannot trigger a log purge");
        }
    }
}

/// Unneeded entries past which a busy group is asked for a snapshot early, so
/// that they can be purged (a resting group is asked whatever their number).
const UNNEEDED_ENTRIES_BEFORE_A_SNAPSHOT: u64 = 1_000;

/// One pass over every local shard; on the metadata leader, also forgets closed
/// shards whose records have all expired (their groups then stop everywhere).
pub async fn expire(node: &Node) {
    let meta = node.meta_snapshot();
    let now = now_millis();
    if node.meta.is_leader() {
        for stream in meta.streams.values() {
            let cutoff = node.config.retention_cutoff(stream.retention_hours, now);
            if stream.shards.iter().any(|s| s.is_expired(cutoff)) {
                let command =
                    MetaCommand::DropExpiredShards { stream: stream.name.clone(), closed_before_millis: cutoff };
                match meta_writer::propose(node, command).await {
                    Ok(_) => tracing::info!(stream = %stream.name, "expired closed shards dropped"),
                    Err(error) => tracing::warn!(stream = %stream.name, %error, "cannot drop expired shards"),
                }
            }
        }
    }
    let mut expired_any = false;
    for (stream, shard) in meta.shard_groups() {
        let Some(handle) = node.groups.get(shard.group_id) else { continue };
        let cutoff = node.config.retention_cutoff(stream.retention_hours, now);
        match expire_before(&node.db, shard.store(), cutoff) {
            Ok(true) => {
                expired_any = true;
                handle.expired_unpurged.store(true, Ordering::Relaxed);
                tracing::info!(stream = %stream.name, shard = %shard.id, "expired records removed");
            }
            Ok(false) => {}
            Err(error) => tracing::error!(stream = %stream.name, shard = %shard.id, %error, "retention pass failed"),
        }
    }
    erase_dropped_shards(node);
    release_logs(node).await;
    // Shards apply without syncing: flushing now persists their applied state
    // past the records just removed, so a crash does not re-apply expired records
    // from the Raft log (a crash before this flush: until the next pass).
    if expired_any && let Err(error) = node.db.flushed().await {
        tracing::error!(%error, "flush after the retention pass failed");
    }
}
