//! Makes the node run exactly the shard groups the metadata group assigns to it.
//!
//! Whenever the metadata changes (and every quarter second besides), the
//! reconciler compares the shards placed on this node with the groups it runs:
//! it starts the missing ones, initializes those it is the preferred leader of,
//! reports shards whose group has a leader (so the stream turns ACTIVE), and stops
//! and erases groups whose stream is gone. On the metadata leader it also
//! finishes deletions.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_raft::{GroupLogStore, GroupRaft, GroupStateMachine, MetaCommand, ShardProgress, StateWatch};
use shoal_types::stream::META_GROUP_ID;
use shoal_types::{GroupId, NodeInfo, Shard, Stream, StreamStatus};
use tokio::sync::{Mutex, watch};

use crate::groups::GroupHandle;
use crate::meta_writer;
use crate::node::Node;

const TICK: Duration = Duration::from_millis(250);

pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut meta = node.meta_state.clone();
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        reconcile(&node, &in_flight).await;
        tokio::select! {
            _ = meta.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn reconcile(node: &Arc<Node>, in_flight: &Arc<Mutex<HashSet<String>>>) {
    let meta = node.meta_snapshot();
    let mut wanted: BTreeMap<GroupId, (&Stream, &Shard)> = BTreeMap::new();
    for (stream, shard) in meta.shard_groups() {
        if stream.status != StreamStatus::Deleting && shard.replicas.contains(&node.id) {
            wanted.insert(shard.group_id, (stream, shard));
        }
    }
    // Stop groups whose stream is gone or being deleted, and erase their data.
    for handle in node.groups.all() {
        if handle.group != META_GROUP_ID && !wanted.contains_key(&handle.group) {
            stop_group(node, &handle).await;
        }
    }
    let members = node.cluster_nodes();
    for (group, (stream, shard)) in wanted {
        let handle = match node.groups.get(group) {
            Some(handle) => handle,
            None => match start_group(node, group).await {
                Ok(handle) => handle,
                Err(error) => {
                    tracing::error!(group, shard = %shard.id, %error, "cannot start shard group");
                    continue;
                }
            },
        };
        let preferred_leader = shard.replicas.first() == Some(&node.id);
        if preferred_leader && !handle.initialized.load(Ordering::Relaxed) {
            initialize(&handle, shard, &members).await;
        }
        if preferred_leader && !shard.ready && handle.leader().is_some() {
            let command = MetaCommand::MarkShardReady {
                stream: stream.name.clone(),
                created_millis: stream.created_millis,
                shard_index: shard.id.index(),
            };
            spawn_once(node, in_flight, format!("ready:{group}"), command).await;
        }
    }
    if node.meta.is_leader() {
        for stream in meta.streams.values().filter(|s| s.status == StreamStatus::Deleting) {
            let command =
                MetaCommand::RemoveStream { name: stream.name.clone(), created_millis: stream.created_millis };
            spawn_once(node, in_flight, format!("remove:{}:{}", stream.name, stream.created_millis), command).await;
        }
    }
}

/// Proposes `command` in the background unless the same proposal is already on its way.
async fn spawn_once(node: &Arc<Node>, in_flight: &Arc<Mutex<HashSet<String>>>, key: String, command: MetaCommand) {
    if !in_flight.lock().await.insert(key.clone()) {
        return;
    }
    let node = node.clone();
    let in_flight = in_flight.clone();
    tokio::spawn(async move {
        if let Err(error) = meta_writer::propose(&node, command).await {
            tracing::warn!(%key, %error, "metadata proposal failed; will retry");
        }
        in_flight.lock().await.remove(&key);
    });
}

async fn start_group(node: &Node, group: GroupId) -> anyhow::Result<Arc<GroupHandle>> {
    let (progress_tx, progress_rx) = watch::channel(ShardProgress::default());
    let state_machine = GroupStateMachine::open(node.db.clone(), group, StateWatch::Shard(progress_tx))?;
    let raft = GroupRaft::new(
        node.id,
        node.raft_config.clone(),
        node.network.for_group(group),
        GroupLogStore::new(node.db.clone(), group),
        state_machine,
    )
    .await?;
    let handle = Arc::new(GroupHandle::new(group, raft, Some(progress_rx), node.config.limits.clone()));
    node.groups.insert(handle.clone());
    tracing::debug!(node = node.id, group, "shard group started");
    Ok(handle)
}

async fn initialize(handle: &GroupHandle, shard: &Shard, members: &BTreeMap<u64, NodeInfo>) {
    match handle.raft.is_initialized().await {
        Ok(true) => {
            handle.initialized.store(true, Ordering::Relaxed);
            return;
        }
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(group = handle.group, %error, "cannot read group state");
            return;
        }
    }
    let replicas: BTreeMap<u64, NodeInfo> =
        shard.replicas.iter().filter_map(|id| members.get(id).map(|info| (*id, info.clone()))).collect();
    if replicas.len() != shard.replicas.len() {
        tracing::warn!(group = handle.group, "some replicas of the shard are not cluster members yet");
        return;
    }
    match handle.raft.initialize(replicas).await {
        Ok(()) => {
            handle.initialized.store(true, Ordering::Relaxed);
            tracing::debug!(group = handle.group, shard = %shard.id, "shard group initialized");
        }
        Err(error) => tracing::warn!(group = handle.group, %error, "shard group initialization refused"),
    }
}

async fn stop_group(node: &Node, handle: &GroupHandle) {
    if let Err(error) = handle.raft.shutdown().await {
        tracing::warn!(group = handle.group, %error, "group did not shut down cleanly");
    }
    node.groups.remove(handle.group);
    match node.db.drop_group(handle.group) {
        Ok(()) => tracing::info!(node = node.id, group = handle.group, "shard group removed"),
        Err(error) => tracing::error!(group = handle.group, %error, "cannot erase shard group data"),
    }
}
