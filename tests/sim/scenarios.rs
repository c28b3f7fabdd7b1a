//! Scripted schedules for failures the random ones found, so they stay covered
//! however the random schedules change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::rt::WatchReceiver;
use shoal_raft::{BatchOrigin, Command, RecordBatch};
use shoal_types::Record;

use super::network::SimNetwork;
use super::node::{SimNode, node_info};
use super::observer::Observer;
use super::trace::Trace;
use super::{NODES, SHARD_GROUPS, checks, current_leader, sim_raft_config, wait_for_leader, wait_until_applied};

/// Writes `data` through whichever node leads `group`, retrying for 10 s.
async fn write_through_leader(network: &SimNetwork, group: u64, data: &[u8]) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leader = wait_for_leader(network, group, Duration::from_secs(10)).await?;
        let raft = network.group(leader, group).ok_or("leader is down")?;
        match tokio::time::timeout(Duration::from_secs(2), raft.client_write(std::sync::Arc::new(record(data).into())))
            .await
        {
            Ok(Ok(_)) => return Ok(()),
            _ if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(Err(e)) => return Err(format!("writing {data:?}: {e}")),
            Err(_) => return Err(format!("writing {data:?}: no answer")),
        }
    }
}

fn record(data: &[u8]) -> Command {
    Command::Append(RecordBatch {
        records: std::sync::Arc::new(vec![Record {
            partition_key: "scenario".into(),
            explicit_hash_key: None,
            data: bytes::Bytes::copy_from_slice(data),
        }]),
        arrival_millis: 1,
        origin: BatchOrigin::default(),
    })
}

/// The shard leader's own disk is slow: its followers fsync entry A and commit
/// it while the leader's copy is still unsynced. Then every node crashes; the
/// leader loses A. The leader and one follower restart, and the leader is asked
/// to write B. Raft must keep A (a majority held it durably); a leader that
/// resumed its old term without an election would write B under A's log id and
/// the follower, seeing a matching id, would keep A: the replicas would diverge.
///
/// `leader_restore` sets openraft's `enable_leader_restore`; the scenario returns
/// the replicas' disagreement, if any, as an error.
pub fn restarted_leader_keeps_what_followers_committed(leader_restore: bool) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        shoal_raft::runtime::seed_thread_rng(1);
        let trace = Trace::new();
        let network = SimNetwork::new(1, trace.clone());
        let observer = Observer::new(trace.clone());
        let config = openraft::Config { enable_leader_restore: Some(leader_restore), ..(*sim_raft_config()?).clone() };
        let config = Arc::new(config);
        let (group, _) = SHARD_GROUPS[0];
        let members = NODES.iter().map(|id| (*id, node_info(*id))).collect::<BTreeMap<_, _>>();
        // Node 1's disk is slow; it initializes the group and so leads it.
        let mut nodes: Vec<SimNode> = NODES
            .iter()
            .map(|id| SimNode::with_sync_delay(*id, Duration::from_millis(if *id == 1 { 200 } else { 1 })))
            .collect();
        for node in &mut nodes {
            node.start(&config, &SHARD_GROUPS[..1], &network, &observer).await?;
        }
        nodes[0].initialize(&members).await?;
        let leader = wait_for_leader(&network, group, Duration::from_secs(5)).await?;
        if leader != 1 {
            return Err(format!("node {leader} was elected, not node 1"));
        }
        write_through_leader(&network, group, b"warm-up").await?;
        tokio::time::sleep(Duration::from_millis(500)).await;

        // A reaches both followers' disks at once; the leader's own fsync takes 200 ms.
        let raft = network.group(leader, group).ok_or("leader is down")?;
        tokio::spawn(async move { raft.client_write(std::sync::Arc::new(record(b"A").into())).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let slow = 0;
        for node in &mut nodes {
            node.crash(&network, 0).await?;
        }
        let follower = nodes.iter().position(|n| n.id != leader).ok_or("no follower")?;
        nodes[slow].start(&config, &SHARD_GROUPS[..1], &network, &observer).await?;
        nodes[follower].start(&config, &SHARD_GROUPS[..1], &network, &observer).await?;

        write_through_leader(&network, group, b"B").await?;
        for node in &mut nodes {
            if !node.is_up() {
                node.start(&config, &SHARD_GROUPS[..1], &network, &observer).await?;
            }
        }
        let last = current_leader(&network, group)
            .and_then(|l| network.group(l, group))
            .and_then(|r| r.metrics().borrow_watched().last_log_index)
            .unwrap_or(0);
        wait_until_applied(&network, group, last, Duration::from_secs(20)).await?;
        let outcome = checks::replicas_agree_on_records(&nodes, group);
        for node in &mut nodes {
            node.crash(&network, 0).await?;
        }
        outcome
    })
}
