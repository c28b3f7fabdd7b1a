//! Deterministic simulation of Shoal's replication layer.
//!
//! One seed drives everything: the fault schedule, the clients, the network's
//! losses and latencies, and openraft's election timeouts (through
//! `shoal_raft::runtime::seed_thread_rng`). The run uses tokio's current-thread
//! runtime on paused time, so a minute of virtual time passes in well under a
//! second of wall time whenever every task waits on a timer.
//!
//! A run: three nodes with in-memory databases start the metadata group and two
//! shard groups, one carrying a single shard and one carrying two (as a packed
//! stream's group does). For [`Schedule::faults`] of virtual time clients write while the
//! schedule partitions nodes (both ways and one way), loses and delays messages,
//! and crashes nodes (losing their unsynced writes) and restarts them. Then
//! everything heals, every group must accept a write within [`PROGRESS_BOUND`],
//! the replicas must converge, and [`checks`] runs.

mod checks;
mod network;
mod node;
mod observer;
pub mod scenarios;
mod trace;
mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::rt::WatchReceiver;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_types::stream::META_GROUP_ID;
use shoal_types::{GroupId, NodeId};
use tokio::time::Instant;

use network::SimNetwork;
use node::{SimNode, node_info};
use observer::Observer;
use trace::Trace;
use workload::Ledger;

/// A shard group and the stores of the shards it carries.
type ShardGroup = (GroupId, &'static [u64]);

/// The shard groups every node runs besides the metadata group: 1001 carries one
/// shard, stored under the group's id; 1002 carries two, each stored apart.
const SHARD_GROUPS: [ShardGroup; 2] = [(1001, &[1001]), (1002, &[2001, 2002])];
const NODES: [NodeId; 3] = [1, 2, 3];
/// After healing, every group must acknowledge a new write within this.
const PROGRESS_BOUND: Duration = Duration::from_secs(10);
/// After the progress writes, every replica must have applied them within this.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(20);

/// How long a run injects faults, in virtual time.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub faults: Duration,
}

/// What one seed did, for its one-line summary.
#[derive(Debug)]
pub struct Summary {
    pub seed: u64,
    pub acked_batches: usize,
    pub acked_streams: usize,
    pub unknown: u64,
    pub faults: u32,
    pub crashes: u32,
    pub leaderships: usize,
    pub messages: u64,
    pub lost: u64,
    pub virtual_ms: u64,
    pub digest: u64,
    pub events: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: acked {} batches and {} streams ({} unknown), {} faults, {} crashes, {} leaderships, \
             {} messages ({} lost), {} virtual ms, trace {} events digest {:016x}",
            self.seed,
            self.acked_batches,
            self.acked_streams,
            self.unknown,
            self.faults,
            self.crashes,
            self.leaderships,
            self.messages,
            self.lost,
            self.virtual_ms,
            self.events,
            self.digest
        )
    }
}

/// A failed run: what broke, and the trace leading to it.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub trace_tail: String,
}

/// Runs `seed` on a fresh current-thread runtime with paused time.
pub fn run_seed(seed: u64, schedule: Schedule) -> Result<Summary, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| Failure { message: format!("building the runtime: {e}"), trace_tail: String::new() })?;
    runtime.block_on(async move {
        let trace = Trace::new();
        match run(seed, schedule, trace.clone()).await {
            Ok(summary) => Ok(summary),
            Err(message) => Err(Failure { message, trace_tail: trace.tail() }),
        }
    })
}

/// Raft timing of the simulated groups: fast elections, and snapshots and log
/// purges often enough that lagging or restarted replicas get snapshots.
fn sim_raft_config() -> Result<Arc<openraft::Config>, String> {
    let base = shoal_raft::raft_config(50, 300).map_err(|e| e.to_string())?;
    let config = openraft::Config {
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(64),
        max_in_snapshot_log_to_keep: 16,
        purge_batch_size: 8,
        ..(*base).clone()
    };
    Ok(Arc::new(config.validate().map_err(|e| e.to_string())?))
}

async fn run(seed: u64, schedule: Schedule, trace: Trace) -> Result<Summary, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    shoal_raft::runtime::seed_thread_rng(rng.random());
    let network = SimNetwork::new(rng.random(), trace.clone());
    let observer = Observer::new(trace.clone());
    let ledger = Ledger::default();
    let config = sim_raft_config()?;
    let members = NODES.iter().map(|id| (*id, node_info(*id))).collect::<BTreeMap<_, _>>();
    let all_groups: Vec<GroupId> = std::iter::once(META_GROUP_ID).chain(SHARD_GROUPS.map(|(g, _)| g)).collect();

    let mut nodes: Vec<SimNode> = NODES.iter().map(|id| SimNode::new(*id)).collect();
    for node in &mut nodes {
        node.start(&config, &SHARD_GROUPS, &network, &observer).await?;
    }
    nodes[0].initialize(&members).await?;
    for group in &all_groups {
        wait_for_leader(&network, *group, Duration::from_secs(10)).await?;
    }
    trace.record("cluster up");

    let faults_end = Instant::now() + schedule.faults;
    let env = workload::ClientEnv {
        network: network.clone(),
        trace: trace.clone(),
        ledger: ledger.clone(),
        nodes: NODES.to_vec(),
    };
    let mut clients = Vec::new();
    for (g, (group, stores)) in SHARD_GROUPS.iter().enumerate() {
        for p in 0..2u32 {
            let producer = g as u32 * 2 + p;
            let rng = StdRng::seed_from_u64(rng.random());
            let run = workload::run_producer(env.clone(), *group, stores, producer, rng, faults_end);
            clients.push(tokio::spawn(run));
        }
    }
    let meta_rng = StdRng::seed_from_u64(rng.random());
    clients.push(tokio::spawn(workload::run_meta_client(env, 0, meta_rng, faults_end)));

    let mut faults = 0u32;
    let mut crashes = 0u32;
    let mut restarts: BTreeMap<NodeId, Instant> = BTreeMap::new();
    while Instant::now() < faults_end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
        for (id, at) in restarts.clone() {
            if Instant::now() >= at {
                restarts.remove(&id);
                nodes[index(id)].start(&config, &SHARD_GROUPS, &network, &observer).await?;
                trace.record(format!("node {id} restarted"));
            }
        }
        faults += 1;
        let node = NODES[rng.random_range(0..NODES.len())];
        match rng.random_range(0..11u32) {
            0 | 1 => {
                network.isolate(node, &NODES);
                trace.record(format!("fault: node {node} isolated"));
            }
            2 => {
                let to = NODES[(index(node) + rng.random_range(1..NODES.len())) % NODES.len()];
                network.block(node, to);
                trace.record(format!("fault: link {node} -> {to} cut one way"));
            }
            3 => {
                let rate = rng.random_range(1..400);
                network.set_drop_rate(rate);
                trace.record(format!("fault: {rate}‰ of messages lost"));
            }
            4 => {
                let max = rng.random_range(1..150);
                network.set_max_latency(max);
                trace.record(format!("fault: latency up to {max} ms"));
            }
            5..=7 => {
                if nodes[index(node)].is_up() {
                    crash(&mut nodes[index(node)], &network, &trace, &mut rng, &mut restarts).await?;
                    crashes += 1;
                } else {
                    faults -= 1;
                }
            }
            8 => {
                // A correlated failure (a rack's power): every node that is up dies at once.
                trace.record("fault: every node crashes at once");
                for node in &mut nodes {
                    if node.is_up() {
                        crash(node, &network, &trace, &mut rng, &mut restarts).await?;
                        crashes += 1;
                    }
                }
            }
            _ => {
                network.heal();
                trace.record("network healed");
            }
        }
    }

    network.heal();
    for (id, _) in std::mem::take(&mut restarts) {
        nodes[index(id)].start(&config, &SHARD_GROUPS, &network, &observer).await?;
        trace.record(format!("node {id} restarted"));
    }
    trace.record("healed: every link up, every node running");
    for client in clients {
        client.await.map_err(|e| format!("a client task failed: {e}"))?;
    }

    // Progress: each group acknowledges a new write soon after healing.
    let mut progress_index = BTreeMap::new();
    for group in &all_groups {
        let started = Instant::now();
        let answer = tokio::time::timeout(
            PROGRESS_BOUND,
            workload::probe_progress(&network, *group, stores_of(*group)[0], NODES.to_vec(), &mut rng, &trace),
        )
        .await;
        match answer {
            Ok(Some(_)) => {}
            _ => {
                return Err(format!(
                    "progress: group {group} acknowledged no write within {PROGRESS_BOUND:?} of healing"
                ));
            }
        }
        let leader = current_leader(&network, *group).ok_or(format!("group {group} lost its leader"))?;
        let last = leader_last_log(&network, leader, *group);
        progress_index.insert(*group, last);
        trace.record(format!("progress: group {group} wrote after {:?}, log at {last}", started.elapsed()));
    }

    // Convergence: every replica applies everything the leaders have.
    for (group, last) in &progress_index {
        wait_until_applied(&network, *group, *last, CONVERGENCE_BOUND).await?;
    }
    trace.record("converged");

    let mut violations = observer.violations();
    violations.extend(ledger.violations());
    if let Some(first) = violations.first() {
        return Err(first.clone());
    }
    for (group, last) in &progress_index {
        checks::logs_match(&nodes, *group, *last).await?;
    }
    for store in SHARD_GROUPS.iter().flat_map(|(_, stores)| stores.iter()) {
        checks::replicas_agree_on_records(&nodes, *store)?;
        checks::acknowledged_records_survive(&nodes, *store, &ledger)?;
    }
    checks::replicas_agree_on_metadata(&nodes)?;
    checks::acknowledged_streams_exist(&nodes, &ledger)?;

    let stats = network.stats();
    let summary = Summary {
        seed,
        acked_batches: ledger.acked_batches().len(),
        acked_streams: ledger.acked_streams().len(),
        unknown: ledger.unknown(),
        faults,
        crashes,
        leaderships: observer.leaderships(),
        messages: stats.sent,
        lost: stats.lost,
        virtual_ms: trace.now_ms(),
        digest: trace.digest(),
        events: trace.events(),
    };
    for node in &mut nodes {
        node.crash(&network, 0).await?;
    }
    Ok(summary)
}

/// Crashes `node` (keeping a random prefix of its unsynced writes) and schedules
/// its restart after a random downtime.
async fn crash(
    node: &mut SimNode,
    network: &SimNetwork,
    trace: &Trace,
    rng: &mut StdRng,
    restarts: &mut BTreeMap<NodeId, Instant>,
) -> Result<(), String> {
    let unsynced = node.unsynced_batches();
    let surviving = rng.random_range(0..=unsynced);
    node.crash(network, surviving).await?;
    let downtime = Duration::from_millis(rng.random_range(200..6000));
    restarts.insert(node.id, Instant::now() + downtime);
    trace.record(format!(
        "fault: node {} crashed, {surviving} of {unsynced} unsynced batches survive, down {downtime:?}",
        node.id
    ));
    Ok(())
}

fn index(node: NodeId) -> usize {
    NODES.iter().position(|n| *n == node).unwrap_or(0)
}

/// The shard stores `group` carries (the metadata group: its own id).
fn stores_of(group: GroupId) -> &'static [u64] {
    SHARD_GROUPS.iter().find(|(g, _)| *g == group).map(|(_, stores)| *stores).unwrap_or(&[META_GROUP_ID])
}

/// The node that leads `group` by its own account, if exactly one does in the
/// highest term seen.
fn current_leader(network: &SimNetwork, group: GroupId) -> Option<NodeId> {
    let mut best: Option<(u64, NodeId)> = None;
    for node in NODES {
        let Some(raft) = network.group(node, group) else { continue };
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        if m.state == openraft::ServerState::Leader && best.is_none_or(|(term, _)| m.current_term > term) {
            best = Some((m.current_term, node));
        }
    }
    best.map(|(_, node)| node)
}

fn leader_last_log(network: &SimNetwork, leader: NodeId, group: GroupId) -> u64 {
    network.group(leader, group).and_then(|raft| raft.metrics().borrow_watched().last_log_index).unwrap_or(0)
}

async fn wait_for_leader(network: &SimNetwork, group: GroupId, bound: Duration) -> Result<NodeId, String> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(leader) = current_leader(network, group) {
            return Ok(leader);
        }
        if Instant::now() >= deadline {
            return Err(format!("group {group} elected no leader within {bound:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until_applied(network: &SimNetwork, group: GroupId, index: u64, bound: Duration) -> Result<(), String> {
    let deadline = Instant::now() + bound;
    loop {
        let lagging: Vec<(NodeId, Option<u64>)> = NODES
            .iter()
            .map(|node| {
                let applied = network
                    .group(*node, group)
                    .and_then(|raft| raft.metrics().borrow_watched().last_applied.map(|id| id.index));
                (*node, applied)
            })
            .filter(|(_, applied)| applied.is_none_or(|a| a < index))
            .collect();
        if lagging.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "convergence: group {group}: replicas {lagging:?} (node, applied) did not apply up to {index} within {bound:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
