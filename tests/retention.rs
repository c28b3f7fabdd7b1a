//! Retention with a shortened clock: a retention "hour" of 50 ms makes the default
//! 24 hours last 1.2 s, so expiry can be watched instead of waited for.

use std::time::Duration;

use anyhow::Context;
use shoal_raft::MetaCommand;
use shoal_storage::{Cf, keys};
use shoal_testkit::TestCluster;
use shoal_tests::record;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_records_leave_reads_at_once_and_disk_soon_after() -> anyhow::Result<()> {
    let cluster = TestCluster::start_with(3, |config| {
        config.retention_hour_millis = 50;
        config.retention_check_secs = 1;
    })
    .await?;
    let client = cluster.client(1).await?;
    client.create_stream("fleeting", 1).await?;
    client.wait_for_active("fleeting", Duration::from_secs(10)).await?;
    let stream = cluster.stream(1, "fleeting").await?;

    client.put_records("fleeting", (0..10).map(|i| record("k", format!("old-{i}"))).collect()).await?;
    assert_eq!(client.read_shard("fleeting", "shardId-000000000000").await?.len(), 10);
    tokio::time::sleep(Duration::from_millis(1400)).await;
    client.put_record("fleeting", "k", b"fresh".to_vec()).await?;
    let readable: Vec<Vec<u8>> =
        client.read_shard("fleeting", "shardId-000000000000").await?.into_iter().map(|r| r.data.to_vec()).collect();
    assert_eq!(readable, [b"fresh".to_vec()], "records older than retention are not served");

    // The retention pass then removes them from every replica with range deletes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for node in cluster.node_ids() {
        let held: Vec<Vec<u8>> =
            cluster.replica_records(node, &stream, 0)?.into_iter().map(|r| r.record.data.to_vec()).collect();
        assert!(!held.iter().any(|d| d.starts_with(b"old-")), "node {node} still holds expired records");
    }

    // The records' bytes live in the group's Raft log: once the group rests, each
    // replica snapshots, purges and removes the entries that held them.
    let group = stream.shards[0].group_id;
    let first_entry = |node: u64| -> anyhow::Result<Option<u64>> {
        let node = cluster.node(node).context("node runs")?;
        let first = node.db.first(Cf::RaftLog, &keys::group_prefix(group), &keys::group_end(group))?;
        Ok(first.and_then(|(key, _)| keys::read_u64(&key, 8)))
    };
    let old_entries: Vec<(u64, Option<u64>)> =
        cluster.node_ids().into_iter().map(|node| Ok((node, first_entry(node)?))).collect::<anyhow::Result<_>>()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for (node, before) in old_entries {
        let before = before.context("the log held the records")?;
        while first_entry(node)?.is_some_and(|first| first <= before) {
            anyhow::ensure!(std::time::Instant::now() < deadline, "node {node} still keeps log entry {before}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retention_decrease_hides_older_records_immediately() -> anyhow::Result<()> {
    let cluster = TestCluster::start_with(3, |config| {
        config.retention_hour_millis = 50;
        config.retention_check_secs = 3600;
    })
    .await?;
    let client = cluster.client(1).await?;
    client.create_stream("shrinking", 1).await?;
    client.wait_for_active("shrinking", Duration::from_secs(10)).await?;
    let node = cluster.node(1).expect("node 1 runs");
    let raise = MetaCommand::UpdateRetention { name: "shrinking".into(), hours: 200, increase: true };
    shoal_node::meta_writer::propose(&node, raise).await?;
    client.put_records("shrinking", (0..5).map(|i| record("k", format!("r{i}"))).collect()).await?;
    tokio::time::sleep(Duration::from_millis(1400)).await;
    assert_eq!(client.read_shard("shrinking", "shardId-000000000000").await?.len(), 5, "200 h = 10 s: still kept");
    let lower = MetaCommand::UpdateRetention { name: "shrinking".into(), hours: 24, increase: false };
    shoal_node::meta_writer::propose(&node, lower).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client.read_shard("shrinking", "shardId-000000000000").await?.is_empty(), "24 h = 1.2 s: gone at once");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_shards_leave_listings_and_disks_once_their_records_expire() -> anyhow::Result<()> {
    let cluster = TestCluster::start_with(3, |config| {
        config.retention_hour_millis = 50;
        config.retention_check_secs = 1;
    })
    .await?;
    let client = cluster.client(1).await?;
    client.create_stream("shedding", 1).await?;
    client.wait_for_active("shedding", Duration::from_secs(10)).await?;
    client.put_records("shedding", (0..10).map(|i| record(format!("k{i}"), "before")).collect()).await?;
    let parent = cluster.stream(1, "shedding").await?.shards[0].group_id;
    client.split_shard("shedding", "shardId-000000000000", "170141183460469231731687303715884105728").await?;
    client.wait_for_active("shedding", Duration::from_secs(10)).await?;
    assert_eq!(client.list_shards("shedding").await?.len(), 3, "the closed parent is listed while it holds records");

    // 24 retention "hours" are 1.2 s here: then the parent holds nothing readable.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed: Vec<String> = client.list_shards("shedding").await?.into_iter().map(|s| s.shard_id).collect();
        if listed == ["shardId-000000000001", "shardId-000000000002"] {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the expired parent is still listed: {listed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let described = client.describe_stream("shedding").await?;
    assert_eq!(described.shards.len(), 2);
    // Its group stops on every node.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cluster.node_ids().iter().any(|id| cluster.node(*id).is_some_and(|n| n.groups.get(parent).is_some())) {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the expired parent's group still runs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The children still take and serve records.
    client.put_records("shedding", (0..10).map(|i| record(format!("k{i}"), "after")).collect()).await?;
    assert_eq!(client.read_stream("shedding").await?.iter().map(|(_, r)| r.len()).sum::<usize>(), 10);
    cluster.shutdown().await;
    Ok(())
}
