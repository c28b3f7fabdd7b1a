//! Retention with a shortened clock: a retention "hour" of 50 ms makes the default
//! 24 hours last 1.2 s, so expiry can be watched instead of waited for.

use std::time::Duration;

use shoal_raft::MetaCommand;
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
        client.read_shard("fleeting", "shardId-000000000000").await?.into_iter().map(|r| r.data).collect();
    assert_eq!(readable, [b"fresh".to_vec()], "records older than retention are not served");

    // The retention pass then removes them from every replica with range deletes.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for node in cluster.node_ids() {
        let held: Vec<Vec<u8>> =
            cluster.replica_records(node, &stream, 0)?.into_iter().map(|r| r.record.data).collect();
        assert!(!held.iter().any(|d| d.starts_with(b"old-")), "node {node} still holds expired records");
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
