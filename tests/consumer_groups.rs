//! Consumer applications: members of a group share a stream's shards through
//! leases kept in the cluster, checkpoint their progress, take over the shards of
//! a member that dies, and follow resharding lineage so each key stays in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_client::consumer::{Batch, Checkpointer, Consumer, ConsumerConfig, Delivery, ProcessResult, RecordProcessor};
use shoal_client::{ErrorCode, ShoalClient, proto};
use shoal_testkit::TestCluster;
use shoal_tests::{Acked, KeyedProducer};

const ACTIVE_WITHIN: Duration = Duration::from_secs(15);
const LEASE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Remembers every record it was handed (member, data) and checkpoints each batch.
#[derive(Clone)]
struct Collect {
    member: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl RecordProcessor for Collect {
    async fn process(&self, batch: Batch, checkpointer: Checkpointer) -> ProcessResult {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for record in &batch.records {
                seen.push((self.member.clone(), String::from_utf8_lossy(&record.data).to_string()));
            }
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

fn config(application: &str, member: &str) -> ConsumerConfig {
    ConsumerConfig {
        member: member.into(),
        lease_timeout: LEASE_TIMEOUT,
        idle_poll: Duration::from_millis(50),
        ..ConsumerConfig::new(application)
    }
}

async fn start(
    cluster: &TestCluster,
    node: u64,
    stream: &str,
    application: &str,
    member: &str,
    seen: &Arc<Mutex<Vec<(String, String)>>>,
) -> anyhow::Result<Consumer> {
    let processor = Collect { member: member.into(), seen: seen.clone() };
    Ok(Consumer::start(cluster.client(node).await?, stream, config(application, member), processor).await?)
}

async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Every acknowledged record was processed at least once, and each key's records
/// were first processed in the order they were written.
fn check_processing(acked: &[Acked], seen: &[(String, String)]) {
    let processed: BTreeSet<&str> = seen.iter().map(|(_, data)| data.as_str()).collect();
    let missing: Vec<String> =
        acked.iter().map(|a| format!("{}:{}", a.key, a.n)).filter(|d| !processed.contains(d.as_str())).collect();
    assert!(missing.is_empty(), "{} acknowledged records never processed, e.g. {:?}", missing.len(), missing.first());
    let acked_set: BTreeSet<String> = acked.iter().map(|a| format!("{}:{}", a.key, a.n)).collect();
    let mut first_seen: BTreeSet<&str> = BTreeSet::new();
    let mut last_n: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, data) in seen {
        if !acked_set.contains(data) || !first_seen.insert(data.as_str()) {
            continue;
        }
        let Some((key, n)) = data.rsplit_once(':') else { continue };
        let n: u64 = n.parse().unwrap_or_default();
        if let Some(previous) = last_n.insert(key, n) {
            assert!(previous < n, "{key}: record {n} was first processed after {previous}");
        }
    }
}

/// A three-node cluster with an ACTIVE stream, and a client of node 1.
async fn cluster_with_stream(name: &str, shards: u32) -> anyhow::Result<(TestCluster, ShoalClient)> {
    let cluster = TestCluster::start(3).await?;
    let admin = cluster.client(1).await?;
    admin.create_stream(name, shards).await?;
    admin.wait_for_active(name, ACTIVE_WITHIN).await?;
    Ok((cluster, admin))
}

/// Waits until every acknowledged record has been handed to a processor.
async fn wait_until_all_processed(acked: &[Acked], seen: &Arc<Mutex<Vec<(String, String)>>>) -> anyhow::Result<()> {
    let expected: BTreeSet<String> = acked.iter().map(|r| format!("{}:{}", r.key, r.n)).collect();
    wait_until("every acknowledged record to be processed", Duration::from_secs(20), || {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let processed: BTreeSet<&String> = seen.iter().map(|(_, d)| d).collect();
        expected.iter().all(|d| processed.contains(d))
    })
    .await
}

async fn describe(client: &ShoalClient, stream: &str, app: &str) -> anyhow::Result<proto::DescribeGroupResponse> {
    Ok(client.describe_group(stream, app).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_share_eight_shards_and_take_over_from_a_dead_one() -> anyhow::Result<()> {
    let (cluster, admin) = cluster_with_stream("shared", 8).await?;
    let producer = KeyedProducer::start(cluster.client(2).await?, "shared", 32);
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let a = start(&cluster, 1, "shared", "billing", "a", &seen).await?;
    let b = start(&cluster, 2, "shared", "billing", "b", &seen).await?;
    let c = start(&cluster, 3, "shared", "billing", "c", &seen).await?;

    // The 8 shards are split 3/3/2 (give the first members' heartbeats time to rebalance).
    wait_until("an even split", Duration::from_secs(10), || {
        let mut counts = [a.shards().len(), b.shards().len(), c.shards().len()];
        counts.sort();
        counts == [2, 3, 3]
    })
    .await?;
    let group = describe(&admin, "shared", "billing").await?;
    assert_eq!(group.members.len(), 3);
    assert!(group.shards.iter().all(|s| !s.owner.is_empty()), "every shard is leased");

    // Member c dies without a word: its shards move to a and b once its lease times out.
    let died = Instant::now();
    c.abort();
    wait_until("the dead member's shards to move", LEASE_TIMEOUT * 4, || a.shards().len() + b.shards().len() == 8)
        .await?;
    println!("shards of a dead member moved after {:?} (lease timeout {LEASE_TIMEOUT:?})", died.elapsed());

    let acked = producer.stop().await;
    wait_until_all_processed(&acked, &seen).await?;
    check_processing(&acked, &seen.lock().unwrap_or_else(|e| e.into_inner()));

    // Clean shutdowns checkpoint and leave: nothing is left to process.
    a.shutdown().await?;
    b.shutdown().await?;
    let group = describe(&admin, "shared", "billing").await?;
    assert!(group.members.is_empty());
    for shard in &group.shards {
        let (lag, _) = admin.lag_after("shared", &shard.shard_id, &shard.checkpoint_sequence_number, 1000).await?;
        assert_eq!(lag, 0, "{} is checkpointed at its end", shard.shard_id);
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_stay_in_order_across_a_split_and_a_merge_under_load() -> anyhow::Result<()> {
    let (cluster, admin) = cluster_with_stream("growing", 2).await?;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    // Member a polls, member b has its records pushed: both follow lineage.
    let a = start(&cluster, 2, "growing", "ordered", "a", &seen).await?;
    let pushed = ConsumerConfig { delivery: Delivery::Push, ..config("ordered", "b") };
    let b = Consumer::start(
        cluster.client(3).await?,
        "growing",
        pushed,
        Collect { member: "b".into(), seen: seen.clone() },
    )
    .await?;
    let producer = KeyedProducer::start(cluster.client(1).await?, "growing", 24);
    tokio::time::sleep(Duration::from_millis(400)).await;
    admin.split_shard("growing", "shardId-000000000000", &(1u128 << 126).to_string()).await?;
    admin.wait_for_active("growing", ACTIVE_WITHIN).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    admin.merge_shards("growing", "shardId-000000000003", "shardId-000000000001").await?;
    admin.wait_for_active("growing", ACTIVE_WITHIN).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let acked = producer.stop().await;

    wait_until_all_processed(&acked, &seen).await?;
    check_processing(&acked, &seen.lock().unwrap_or_else(|e| e.into_inner()));
    let group = describe(&admin, "growing", "ordered").await?;
    let finished: Vec<&str> = group.shards.iter().filter(|s| s.shard_end).map(|s| s.shard_id.as_str()).collect();
    assert_eq!(finished, ["shardId-000000000000", "shardId-000000000001", "shardId-000000000003"]);
    a.shutdown().await?;
    b.shutdown().await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_applications_progress_independently_and_stale_checkpoints_are_refused() -> anyhow::Result<()> {
    let (cluster, admin) = cluster_with_stream("twice", 2).await?;
    let records: Vec<_> = (0..40).map(|i| shoal_tests::record(format!("k{i}"), format!("k{i}:0"))).collect();
    admin.put_records("twice", records).await?;

    // Application "fast" reads everything and stops.
    let fast_seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let fast = start(&cluster, 2, "twice", "fast", "f1", &fast_seen).await?;
    wait_until("fast to read all 40", Duration::from_secs(10), || fast_seen.lock().map(|s| s.len()).unwrap_or(0) >= 40)
        .await?;
    fast.shutdown().await?;
    // Application "slow" starts later and still sees all 40, from the beginning.
    let slow_seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let slow = start(&cluster, 3, "twice", "slow", "s1", &slow_seen).await?;
    wait_until("slow to read all 40", Duration::from_secs(10), || slow_seen.lock().map(|s| s.len()).unwrap_or(0) >= 40)
        .await?;
    slow.shutdown().await?;
    // A restarted "fast" member resumes after its checkpoints: nothing again.
    let again: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let fast = start(&cluster, 1, "twice", "fast", "f2", &again).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(again.lock().map(|s| s.is_empty()).unwrap_or(false), "resumed after the checkpoints");
    fast.shutdown().await?;

    // A member presumed dead cannot move a checkpoint any more.
    let stale = admin.join_group("twice", "fencing", "old", Duration::from_millis(300)).await?;
    let lease = stale.leases.first().cloned().expect("a lease");
    tokio::time::sleep(Duration::from_millis(600)).await;
    admin.join_group("twice", "fencing", "new", Duration::from_millis(300)).await?;
    let refused = admin
        .checkpoint(proto::CheckpointRequest {
            group: Some(proto::GroupRef { stream_name: "twice".into(), application: "fencing".into() }),
            member: "old".into(),
            shard_id: lease.shard_id.clone(),
            epoch: lease.epoch,
            sequence_number: "1".into(),
            sub_sequence_number: 0,
            shard_end: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::ResourceInUse);
    let group = describe(&admin, "twice", "fencing").await?;
    assert_eq!(group.members.iter().map(|m| m.member.as_str()).collect::<Vec<_>>(), ["new"]);
    assert!(group.shards.iter().all(|s| s.checkpoint_sequence_number.is_empty()));
    cluster.shutdown().await;
    Ok(())
}

/// Collects the user records (KPL aggregates unpacked) in the order they came.
struct CollectUsers {
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl RecordProcessor for CollectUsers {
    async fn process(&self, batch: Batch, checkpointer: Checkpointer) -> ProcessResult {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for user in batch.user_records() {
                seen.push((user.partition_key.clone(), String::from_utf8_lossy(&user.data).to_string()));
            }
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aggregating_producer_under_throttling_keeps_each_key_in_order() -> anyhow::Result<()> {
    use shoal_client::producer::{Producer, ProducerConfig};
    // 16 KiB/s per shard: the producer is throttled and must retry.
    let cluster = TestCluster::start_with(3, |config| {
        config.limits = shoal_node::ThroughputLimits {
            enabled: true,
            write_bytes_per_sec: 16 * 1024,
            ..shoal_node::ThroughputLimits::default()
        };
    })
    .await?;
    let admin = cluster.client(1).await?;
    admin.create_stream("packed", 2).await?;
    admin.wait_for_active("packed", ACTIVE_WITHIN).await?;
    let producing = ProducerConfig { aggregate: true, max_aggregate_bytes: 4 * 1024, ..Default::default() };
    let producer = Producer::start(cluster.client(2).await?, "packed", producing);
    let started = Instant::now();
    let mut acks = Vec::new();
    for n in 0..1500u32 {
        let key = format!("key-{}", n % 16);
        acks.push(producer.send(&key, format!("{key}:{n}:{}", "x".repeat(40)).into_bytes()).await?);
        if n == 700 {
            // The first call spends each shard's budget (and more): the rest waits.
            producer.flush().await;
        }
    }
    let mut sent = Vec::new();
    for ack in acks {
        sent.push(ack.await?);
    }
    producer.close().await;
    let elapsed = started.elapsed();
    println!("1500 records (~84 KB) in two calls at 2 x 16 KiB/s took {elapsed:?}");
    assert!(elapsed > Duration::from_millis(800), "the write limit slowed the producer down");
    let aggregated = sent.iter().filter(|s| s.sub_sequence_number > 0).count();
    assert!(aggregated > 0, "records travelled inside aggregates");

    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let consumer = Consumer::start(
        cluster.client(3).await?,
        "packed",
        config("unpacker", "u1"),
        CollectUsers { seen: seen.clone() },
    )
    .await?;
    wait_until("all 1500 user records", Duration::from_secs(20), || seen.lock().map(|s| s.len()).unwrap_or(0) >= 1500)
        .await?;
    consumer.shutdown().await?;
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut last: BTreeMap<String, u32> = BTreeMap::new();
    let mut distinct = BTreeSet::new();
    for (key, data) in &seen {
        let n: u32 = data.split(':').nth(1).and_then(|n| n.parse().ok()).unwrap_or_default();
        if !distinct.insert(n) {
            continue;
        }
        if let Some(previous) = last.insert(key.clone(), n) {
            assert!(previous < n, "{key}: {n} after {previous}");
        }
    }
    assert_eq!(distinct.len(), 1500, "every record arrived");
    cluster.shutdown().await;
    Ok(())
}

/// Records how long each record took from being sent to reaching the processor.
/// It does not checkpoint (a checkpoint per record would be the bottleneck);
/// shutdown checkpoints what was processed.
struct Latency {
    delays: Arc<Mutex<Vec<u64>>>,
}

impl RecordProcessor for Latency {
    async fn process(&self, batch: Batch, _checkpointer: Checkpointer) -> ProcessResult {
        let now = shoal_types::now_millis();
        let mut delays = self.delays.lock().unwrap_or_else(|e| e.into_inner());
        for record in &batch.records {
            let sent: u64 = String::from_utf8_lossy(&record.data).parse().unwrap_or(now);
            delays.push(now.saturating_sub(sent));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushed_records_reach_the_processor_within_milliseconds() -> anyhow::Result<()> {
    let (cluster, admin) = cluster_with_stream("pushed", 2).await?;
    let delays: Arc<Mutex<Vec<u64>>> = Arc::default();
    let pushed = ConsumerConfig { delivery: Delivery::Push, ..config("latency", "p1") };
    let consumer =
        Consumer::start(cluster.client(2).await?, "pushed", pushed, Latency { delays: delays.clone() }).await?;
    wait_until("both shards leased", Duration::from_secs(5), || consumer.shards().len() == 2).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..200 {
        let sent = shoal_types::now_millis().to_string();
        admin.put_record("pushed", &format!("k{i}"), sent.into_bytes()).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until("all 200 pushed", Duration::from_secs(10), || delays.lock().map(|d| d.len()).unwrap_or(0) >= 200)
        .await?;
    consumer.shutdown().await?;
    let mut delays = delays.lock().unwrap_or_else(|e| e.into_inner()).clone();
    delays.sort();
    let (p50, p99) = (delays[delays.len() / 2], delays[delays.len() * 99 / 100]);
    println!("push delivery, put sent -> processor: p50 {p50} ms, p99 {p99} ms (debug build)");
    // Well below the default polling pause of 200 ms: the records were pushed.
    assert!(p50 < 150, "p50 {p50} ms");
    cluster.shutdown().await;
    Ok(())
}
