//! ON_DEMAND streams follow their load: the autoscaler splits shards that stay
//! hot and merges neighbours that stay cold, while producers keep writing. The
//! per-shard capacity is shrunk to 20 records/s so a test producer can heat
//! shards up.

use std::time::{Duration, Instant};

use shoal_client::{ErrorCode, ShoalClient};
use shoal_testkit::TestCluster;
use shoal_tests::{KeyedProducer, audit, read_in_lineage_order};

async fn open_shards(client: &ShoalClient, name: &str) -> anyhow::Result<usize> {
    Ok(client.describe_stream_summary(name).await?.open_shard_count as usize)
}

async fn wait_for_open_shards(
    client: &ShoalClient,
    name: &str,
    what: &str,
    check: impl Fn(usize) -> bool,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = open_shards(client, name).await?;
        if check(open) {
            return Ok(open);
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: still {open} open shards after 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_on_demand_stream_grows_under_load_and_shrinks_when_idle() -> anyhow::Result<()> {
    let cluster = TestCluster::start_with(3, |config| {
        config.autoscaler.interval_secs = 1;
        config.autoscaler.sustain_intervals = 2;
        config.autoscaler.shard_records_per_sec = 20;
        config.autoscaler.min_shards = 4;
        config.autoscaler.max_shards = 8;
    })
    .await?;
    let client = cluster.client(1).await?;
    client.create_on_demand_stream("elastic").await?;
    let description = client.wait_for_active("elastic", Duration::from_secs(15)).await?;
    assert_eq!(description.summary.map(|s| (s.open_shard_count, s.stream_mode)), Some((4, "ON_DEMAND".into())));
    // ON_DEMAND streams are not resharded by hand.
    let refused = client.update_shard_count("elastic", 8).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Validation);

    let producer = KeyedProducer::start(cluster.client(2).await?, "elastic", 64);
    let grown = wait_for_open_shards(&client, "elastic", "scaling up under load", |n| n >= 6).await?;
    println!("under load: {grown} open shards");
    let acked = producer.stop().await;

    let shrunk = wait_for_open_shards(&client, "elastic", "scaling down when idle", |n| n == 4).await?;
    println!("idle again: {shrunk} open shards");
    let audit = audit(&acked, &read_in_lineage_order(&client, "elastic").await?);
    println!("{audit:?}");
    assert!(audit.acknowledged > 0);
    assert_eq!((audit.lost, audit.duplicated, audit.reordered), (0, 0, 0), "{audit:?}");

    // Switched to PROVISIONED, the stream stays as it is and can be resharded by hand.
    client.update_stream_mode("elastic", "PROVISIONED").await?;
    client.update_shard_count("elastic", 2).await?;
    assert_eq!(open_shards(&client, "elastic").await?, 2);
    cluster.shutdown().await;
    Ok(())
}
