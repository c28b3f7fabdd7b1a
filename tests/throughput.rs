//! Per-shard throughput limits: excess is refused with
//! ProvisionedThroughputExceededException, per record, and nothing refused is stored.

use std::time::Duration;

use shoal_client::ErrorCode;
use shoal_testkit::TestCluster;
use shoal_tests::record;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_and_reads_beyond_a_shards_limits_are_refused_and_nothing_refused_is_stored() -> anyhow::Result<()> {
    let cluster = TestCluster::start_with(3, |config| {
        config.limits =
            shoal_node::ThroughputLimits { write_records_per_sec: 100, read_calls_per_sec: 5, ..Default::default() };
    })
    .await?;
    let client = cluster.client(1).await?.with_retry_for(Duration::ZERO);
    client.create_stream("limited", 1).await?;
    client.wait_for_active("limited", Duration::from_secs(10)).await?;

    let (mut accepted, mut throttled) = (Vec::new(), 0);
    for batch in 0..10 {
        let records = (0..30).map(|i| record(format!("k{i}"), format!("b{batch}-{i}"))).collect();
        let response = client.put_records("limited", records).await?;
        for (i, result) in response.records.iter().enumerate() {
            if result.error_code.is_empty() {
                accepted.push(format!("b{batch}-{i}"));
            } else {
                assert_eq!(result.error_code, "ProvisionedThroughputExceededException");
                throttled += 1;
            }
        }
    }
    assert!(throttled > 0, "300 records in a burst exceed 100 records/s");
    assert!(!accepted.is_empty());

    let reader = cluster.client(2).await?.with_retry_for(Duration::from_secs(10));
    let stored: Vec<String> = reader
        .read_shard("limited", "shardId-000000000000")
        .await?
        .into_iter()
        .map(|r| String::from_utf8(r.data.to_vec()).unwrap())
        .collect();
    assert_eq!(stored, accepted, "exactly the accepted records are stored, in order");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let iterator = client.get_shard_iterator("limited", "shardId-000000000000", "TRIM_HORIZON", None, None).await?;
    let mut refused = None;
    for _ in 0..10 {
        if let Err(error) = client.get_records(&iterator, 1).await {
            refused = Some(error.code);
            break;
        }
    }
    assert_eq!(refused, Some(ErrorCode::ProvisionedThroughputExceeded), "more than 5 GetRecords calls in a second");
    cluster.shutdown().await;
    Ok(())
}
