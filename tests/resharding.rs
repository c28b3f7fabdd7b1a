//! Splitting and merging shards while producers write: parents close at a seal,
//! children take over their hash keys, nothing acknowledged is lost or doubled.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_client::{ErrorCode, ShoalClient};
use shoal_testkit::TestCluster;
use shoal_tests::{KeyedProducer, audit, read_in_lineage_order, record};

const ACTIVE_WITHIN: Duration = Duration::from_secs(15);
/// 2^127: the middle of the hash-key space.
const MIDDLE: &str = "170141183460469231731687303715884105728";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_and_merge_keep_every_acknowledged_record_once() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(1).await?;
    client.create_stream("reshard", 1).await?;
    client.wait_for_active("reshard", ACTIVE_WITHIN).await?;

    // A producer writes through node 2 the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let producer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let writer = cluster.client(2).await?;
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch = (0..10).map(|i| record(format!("key-{n}-{i}"), format!("r{n}-{i}"))).collect();
                if let Ok(response) = writer.put_records("reshard", batch).await {
                    let mut acked = acked.lock().unwrap();
                    for (i, result) in response.records.iter().enumerate() {
                        if result.error_code.is_empty() {
                            acked.push((result.shard_id.clone(), format!("r{n}-{i}")));
                        }
                    }
                }
                n += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    client.split_shard("reshard", "shardId-000000000000", MIDDLE).await?;
    let description = client.wait_for_active("reshard", ACTIVE_WITHIN).await?;
    assert_eq!(description.shards.len(), 3);
    let parent = &description.shards[0];
    assert!(!parent.ending_sequence_number.is_empty(), "the parent is closed");
    assert_eq!(description.shards[1].parent_shard_id, "shardId-000000000000");
    assert_eq!(description.shards[1].ending_hash_key, "170141183460469231731687303715884105727");
    assert_eq!(description.shards[2].starting_hash_key, MIDDLE);
    tokio::time::sleep(Duration::from_millis(500)).await;

    client.merge_shards("reshard", "shardId-000000000001", "shardId-000000000002").await?;
    let description = client.wait_for_active("reshard", ACTIVE_WITHIN).await?;
    assert_eq!(description.shards.len(), 4);
    assert_eq!(description.shards[3].parent_shard_id, "shardId-000000000001");
    assert_eq!(description.shards[3].adjacent_parent_shard_id, "shardId-000000000002");
    assert_eq!(description.shards[3].starting_hash_key, "0");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    producer.await?;

    let acked = acked.lock().unwrap().clone();
    let stored = client.read_stream("reshard").await?;
    let mut where_stored: HashMap<String, Vec<String>> = HashMap::new();
    for (shard, records) in &stored {
        for r in records {
            where_stored.entry(String::from_utf8(r.data.to_vec())?).or_default().push(shard.clone());
        }
        let seqs: Vec<&String> = records.iter().map(|r| &r.sequence_number).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{shard} in order");
    }
    assert!(stored.iter().all(|(_, r)| !r.is_empty()), "every shard, parent and children, took records");
    for (shard, data) in &acked {
        assert_eq!(
            where_stored.get(data),
            Some(&vec![shard.clone()]),
            "{data} acknowledged on {shard}, stored exactly there once"
        );
    }
    assert!(where_stored.values().all(|shards| shards.len() == 1), "no record stored twice");

    // A closed shard ends: no next iterator, and it names its children.
    let iterator = client.get_shard_iterator("reshard", "shardId-000000000000", "LATEST", None, None).await?;
    let end = client.get_records(&iterator, 100).await?;
    assert!(end.next_shard_iterator.is_empty());
    let children: Vec<&str> = end.child_shards.iter().map(|c| c.shard_id.as_str()).collect();
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_resharding_requests_change_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let client: ShoalClient = cluster.client(3).await?;
    client.create_stream("steady", 3).await?;
    client.wait_for_active("steady", ACTIVE_WITHIN).await?;
    let code = |r: Result<(), shoal_client::ShoalError>| r.unwrap_err().code;
    // Outside the shard's range: refused before anything is sealed.
    assert_eq!(code(client.split_shard("steady", "shardId-000000000001", "0").await), ErrorCode::InvalidArgument);
    assert_eq!(code(client.split_shard("steady", "shardId-000000000009", MIDDLE).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(client.split_shard("nope", "shardId-000000000000", MIDDLE).await), ErrorCode::ResourceNotFound);
    assert_eq!(
        code(client.merge_shards("steady", "shardId-000000000000", "shardId-000000000002").await),
        ErrorCode::InvalidArgument,
        "shards 0 and 2 are not adjacent"
    );
    let description = client.describe_stream("steady").await?;
    assert_eq!(description.shards.len(), 3);
    assert!(description.shards.iter().all(|s| s.ending_sequence_number.is_empty()));
    // And the untouched shards still take writes.
    let put = client.put_records("steady", (0..30).map(|i| record(format!("k{i}"), "x")).collect()).await?;
    assert_eq!(put.failed_record_count, 0);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lineage_following_consumer_sees_every_key_once_and_in_order_across_reshards() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let admin = cluster.client(1).await?;
    admin.create_stream("lineage", 2).await?;
    admin.wait_for_active("lineage", ACTIVE_WITHIN).await?;
    let producer = KeyedProducer::start(cluster.client(2).await?, "lineage", 32);
    let pause = || tokio::time::sleep(Duration::from_millis(300));
    pause().await;

    // Split, merge back across the old boundary, then scale 2 -> 3 -> 6 -> 4.
    admin.split_shard("lineage", "shardId-000000000000", &(1u128 << 126).to_string()).await?;
    admin.wait_for_active("lineage", ACTIVE_WITHIN).await?;
    pause().await;
    admin.merge_shards("lineage", "shardId-000000000003", "shardId-000000000001").await?;
    admin.wait_for_active("lineage", ACTIVE_WITHIN).await?;
    pause().await;
    for target in [3, 6, 4] {
        admin.update_shard_count("lineage", target).await?;
        admin.wait_for_active("lineage", ACTIVE_WITHIN).await?;
        pause().await;
    }
    let acked = producer.stop().await;
    let shards = admin.list_shards("lineage").await?;
    let open = shards.iter().filter(|s| s.ending_sequence_number.is_empty()).count();
    assert_eq!(open, 4);
    let read = read_in_lineage_order(&admin, "lineage").await?;
    let audit = audit(&acked, &read);
    println!("{} shards after resharding under load: {audit:?}", shards.len());
    assert!(audit.acknowledged > 0);
    assert_eq!((audit.lost, audit.duplicated, audit.reordered), (0, 0, 0), "{audit:?}");
    cluster.shutdown().await;
    Ok(())
}
