//! Makes the node run exactly the shard groups the metadata group assigns to it.
//!
//! Whenever the metadata changes (and every quarter second besides), the
//! reconciler compares the shards placed on this node with the groups it runs:
//! it starts the missing ones, initializes those it is the preferred leader of,
//! reports shards whose group has a leader (so the stream turns ACTIVE), and stops
//! and erases groups whose stream is gone. On the metadata leader it also
//! finishes deletions.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use shoal_raft::{GroupLogStore, GroupRaft, GroupStateMachine, MetaCommand, ShardProgress, StateWatch};
use shoal_types::stream::META_GROUP_ID;
use shoal_types::{GroupId, NodeInfo, Shard, Stream, StreamStatus};
use tokio::sync::{Mutex, watch};

use crate::groups::{GroupHandle, ShardSlot};
use crate::meta_writer;
use crate::node::Node;

const TICK: Duration = Duration::from_millis(250);
/// The pause between passes when nothing is under way (every shard ready, no
/// replica moving, no stream being created or deleted): a thousand idle shards
/// should cost next to nothing.
const SETTLED_TICK: Duration = Duration::from_secs(1);
const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// A leader hands leadership to the preferred leader at most this often per group.
const LEADER_TRANSFER_PAUSE_MILLIS: u64 = 5_000;

pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let mut meta = node.meta_state.clone();
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut last_health = tokio::time::Instant::now();
    loop {
        // Raft health metrics every two seconds, not on every pass.
        let record_health = last_health.elapsed() >= HEALTH_EVERY;
        if record_health {
            last_health = tokio::time::Instant::now();
        }
        reconcile(&node, &in_flight, record_health).await;
        let pause = if settled(&node, &in_flight).await { SETTLED_TICK } else { TICK };
        tokio::select! {
            _ = meta.changed() => {}
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Whether nothing is under way that the next pass would have to push on.
async fn settled(node: &Node, in_flight: &Mutex<HashSet<String>>) -> bool {
    let meta = node.meta_snapshot();
    in_flight.lock().await.is_empty()
        && meta.streams.values().all(|s| s.status == StreamStatus::Active)
        && meta.shard_groups().all(|(_, shard)| shard.ready && shard.retiring.is_empty())
}

async fn reconcile(node: &Arc<Node>, in_flight: &Arc<Mutex<HashSet<String>>>, record_health: bool) {
    let meta = node.meta_snapshot();
    // Each wanted group with its stream and shards (the first stands for the
    // group: shards that share a group share its replicas and readiness).
    let mut wanted: BTreeMap<GroupId, (&Stream, Vec<&Shard>)> = BTreeMap::new();
    for (stream, shard) in meta.shard_groups() {
        if stream.status != StreamStatus::Deleting && shard.holders().any(|id| id == node.id) {
            wanted.entry(shard.group_id).or_insert_with(|| (stream, Vec::new())).1.push(shard);
        }
    }
    // Stop groups whose stream is gone or being deleted, and erase their data.
    for handle in node.groups.all() {
        if handle.group != META_GROUP_ID && !wanted.contains_key(&handle.group) {
            stop_group(node, &handle).await;
        }
    }
    let members = node.cluster_nodes();
    for (group, (stream, shards)) in wanted {
        let shard = shards[0];
        let handle = match node.groups.get(group) {
            Some(handle) => handle,
            None => match start_group(node, group, stream, &shards).await {
                Ok(handle) => handle,
                Err(error) => {
                    tracing::error!(group, shard = %shard.id, %error, "cannot start shard group");
                    continue;
                }
            },
        };
        if record_health {
            record_raft_health(node, &handle);
        }
        let preferred_leader = shard.replicas.first() == Some(&node.id);
        // Only a shard that never had a leader is initialized: a replica that moved
        // here joins the existing group instead.
        if preferred_leader && !shard.ready && !handle.initialized.load(Ordering::Relaxed) {
            initialize(&handle, shard, &members).await;
        }
        if shard.ready && handle.raft.is_leader() {
            follow_placement(node, in_flight, &handle, stream, shard, &members).await;
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

/// On the group's leader: makes the group's voters the shard's replicas (adding
/// new ones as learners until they catch up), reports retired replicas, and hands
/// leadership to the preferred leader once it has caught up.
async fn follow_placement(
    node: &Arc<Node>,
    in_flight: &Arc<Mutex<HashSet<String>>>,
    handle: &Arc<GroupHandle>,
    stream: &Stream,
    shard: &Shard,
    members: &BTreeMap<u64, NodeInfo>,
) {
    let wanted: BTreeSet<u64> = shard.replicas.iter().copied().collect();
    let preferred = shard.replicas.first().copied();
    let fresh = Duration::from_millis(node.config.raft.heartbeat_millis.saturating_mul(3));
    // Read what is needed under the metrics borrow (no copy of the whole metrics).
    let (voters, joint, preferred_ready) = {
        let metrics = handle.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let joint = membership.get_joint_config().len() > 1;
        // The preferred leader may take over once it holds the whole log and
        // answered a heartbeat just now (a transfer to an unreachable node would
        // leave the shard without a leader until the next election).
        let preferred_ready = preferred.is_some_and(|preferred| {
            let responsive = metrics
                .heartbeat
                .as_ref()
                .and_then(|h| h.get(&preferred).cloned())
                .flatten()
                .is_some_and(|acked| acked.elapsed() < fresh);
            let caught_up = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&preferred).cloned())
                .flatten()
                .is_some_and(|matched| Some(matched.index) == metrics.last_log_index);
            responsive && caught_up
        });
        (voters, joint, preferred_ready)
    };
    if voters != wanted || joint {
        let key = format!("members:{}", handle.group);
        if !in_flight.lock().await.insert(key.clone()) {
            return;
        }
        let (handle, members, in_flight) = (handle.clone(), members.clone(), in_flight.clone());
        handle.wake();
        tokio::spawn(async move {
            if let Err(error) = change_members(&handle, wanted, &members).await {
                tracing::warn!(group = handle.group, %error, "replica move not finished; will retry");
            }
            in_flight.lock().await.remove(&key);
        });
        return;
    }
    for retired in shard.retiring.iter().filter(|id| !voters.contains(id)) {
        let command =
            MetaCommand::ReplicaRetired { stream: stream.name.clone(), shard_index: shard.id.index(), node: *retired };
        spawn_once(node, in_flight, format!("retired:{}:{retired}", handle.group), command).await;
    }
    let Some(preferred) = preferred else { return };
    let caught_up = preferred_ready;
    let now = shoal_types::now_millis();
    let last = handle.last_leader_transfer.load(Ordering::Relaxed);
    if preferred != node.id && caught_up && now.saturating_sub(last) > LEADER_TRANSFER_PAUSE_MILLIS {
        handle.last_leader_transfer.store(now, Ordering::Relaxed);
        handle.wake();
        if let Err(error) = handle.raft.trigger().transfer_leader(preferred).await {
            tracing::warn!(group = handle.group, %error, "leader transfer refused");
        } else {
            tracing::debug!(group = handle.group, to = preferred, "leadership handed to the preferred leader");
        }
    }
}

/// Adds the new replicas as learners (waiting until they catch up), then makes
/// the replicas the group's voters; removed voters leave the group.
async fn change_members(
    handle: &GroupHandle,
    wanted: BTreeSet<u64>,
    members: &BTreeMap<u64, NodeInfo>,
) -> anyhow::Result<()> {
    let known: BTreeSet<u64> =
        handle.raft.metrics().borrow_watched().membership_config.membership().nodes().map(|(id, _)| *id).collect();
    for id in wanted.iter().filter(|id| !known.contains(id)) {
        let info = members.get(id).cloned().ok_or_else(|| anyhow::anyhow!("node {id} is not a cluster member"))?;
        tracing::info!(group = handle.group, node = id, "adding a replica; waiting for it to catch up");
        handle.raft.add_learner(*id, info, true).await?;
    }
    handle.raft.change_membership(wanted.clone(), false).await?;
    tracing::info!(group = handle.group, voters = ?wanted, "group membership follows placement");
    Ok(())
}

/// Raft health as Prometheus sees it: leader changes this node observed, and on
/// the leader each follower's lag in entries.
fn record_raft_health(node: &Node, handle: &GroupHandle) {
    let (stream, shard) = handle.labels();
    let metrics = handle.raft.metrics();
    let metrics = metrics.borrow_watched();
    let leader = metrics.current_leader.unwrap_or(0);
    if leader != 0 && handle.last_seen_leader.swap(leader, Ordering::Relaxed) != leader {
        metrics::counter!("shoal_raft_leader_changes_total", "stream" => stream.clone(), "shard" => shard.clone())
            .increment(1);
    }
    if leader == node.id
        && let Some(replication) = metrics.replication.as_ref()
    {
        let last = metrics.last_log_index.unwrap_or(0);
        for (follower, matched) in replication.iter().filter(|(id, _)| **id != node.id) {
            let lag = last.saturating_sub(matched.as_ref().map(|m| m.index).unwrap_or(0));
            metrics::gauge!(
                "shoal_raft_follower_lag_entries",
                "stream" => stream.clone(), "shard" => shard.clone(), "follower" => follower.to_string()
            )
            .set(lag as f64);
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

/// Starts the group that carries `shards` (of `stream`) on this node.
async fn start_group(
    node: &Node,
    group: GroupId,
    stream: &Stream,
    shards: &[&Shard],
) -> anyhow::Result<Arc<GroupHandle>> {
    let mut watches = Vec::with_capacity(shards.len());
    let mut slots = Vec::with_capacity(shards.len());
    for shard in shards {
        let (progress_tx, progress_rx) = watch::channel(ShardProgress::default());
        watches.push((shard.store(), progress_tx));
        let limits = node.config.limits.clone();
        slots.push(ShardSlot::new(shard.store(), progress_rx, limits, &stream.name, &shard.id.to_string()));
    }
    // A shard alone in its group keeps the layout every version reads.
    let lone = matches!(shards, [shard] if shard.store() == group);
    let watch = match watches.pop() {
        Some((_, progress_tx)) if lone => StateWatch::Shard(progress_tx),
        last => StateWatch::Shards(watches.into_iter().chain(last).collect()),
    };
    let state_machine = GroupStateMachine::open(node.db.clone(), group, watch)?;
    let raft = GroupRaft::new(
        node.id,
        node.raft_config.clone(),
        node.network.for_group(group),
        GroupLogStore::for_shards(node.db.clone(), group),
        state_machine,
    )
    .await?;
    let handle = Arc::new(GroupHandle::new(group, raft, slots));
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
    // The group's log and state, and each shard's records where they are kept apart.
    let stores = handle.shards.keys().copied().filter(|store| *store != handle.group);
    let mut erased = true;
    for key_space in std::iter::once(handle.group).chain(stores) {
        if let Err(error) = node.db.drop_group(key_space) {
            tracing::error!(group = handle.group, key_space, %error, "cannot erase shard group data");
            erased = false;
        }
    }
    if erased {
        tracing::info!(node = node.id, group = handle.group, "shard group removed");
    }
}
