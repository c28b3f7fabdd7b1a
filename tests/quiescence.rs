//! Idle shard groups rest (no heartbeats, no election timers) and wake when
//! written to, or when their leader's node dies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use shoal_client::{Record, ShoalClient};
use shoal_testkit::TestCluster;
use shoal_types::{NodeId, Stream};

const SHARDS: u32 = 6;

/// How many shard-group replicas rest on each running node.
fn resting(cluster: &TestCluster) -> BTreeMap<NodeId, usize> {
    cluster
        .node_ids()
        .into_iter()
        .filter_map(|id| cluster.node(id).map(|node| (id, node)))
        .map(|(id, node)| (id, node.groups.all().iter().filter(|g| g.is_resting()).count()))
        .collect()
}

async fn wait_until_all_rest(cluster: &TestCluster, per_node: usize, timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = resting(cluster);
        if now.values().all(|count| *count == per_node) {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "groups did not come to rest: {now:?} of {per_node} per node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A record for shard `index` (its explicit hash key is the shard's first key).
fn record_for(stream: &Stream, index: u32, data: String) -> Record {
    let shard = stream.shards.iter().find(|s| s.id.index() == index).expect("shard exists");
    Record {
        data: data.into_bytes().into(),
        partition_key: "k".into(),
        explicit_hash_key: Some(shard.hash_key_range.start.to_string()),
    }
}

async fn put_to_shard(client: &ShoalClient, stream: &Stream, index: u32, data: String) -> bool {
    match client.put_records(&stream.name, vec![record_for(stream, index, data)]).await {
        Ok(response) => response.records.iter().all(|r| r.error_code.is_empty()),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_groups_rest_and_wake_for_writes_and_for_a_dead_leader() {
    let mut cluster = TestCluster::start_with(3, |config| {
        config.raft.quiesce_after_millis = 500;
        config.shards_per_group = 2;
    })
    .await
    .unwrap();
    let client = cluster.client(1).await.unwrap();
    client.create_stream("calm", SHARDS).await.unwrap();
    client.wait_for_active("calm", Duration::from_secs(10)).await.unwrap();
    let stream = cluster.stream(1, "calm").await.unwrap();

    // Every replica of every group comes to rest once nothing happens (the six
    // shards share three groups, two a group).
    let groups = stream.shards.iter().map(|s| s.group_id).collect::<BTreeSet<_>>().len();
    assert_eq!(groups, 3);
    let took = wait_until_all_rest(&cluster, groups, Duration::from_secs(15)).await;
    println!("all {groups} groups resting on all 3 nodes after {took:?}");

    // A write to a resting shard is acknowledged and reaches every replica.
    let mut acked: Vec<(u32, String)> = Vec::new();
    let started = Instant::now();
    for index in 0..SHARDS {
        let data = format!("wake-{index}");
        assert!(put_to_shard(&client, &stream, index, data.clone()).await, "write to resting shard {index} failed");
        acked.push((index, data));
    }
    println!("{SHARDS} writes to resting shards took {:?}", started.elapsed());
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(10)).await.unwrap();
    wait_until_all_rest(&cluster, groups, Duration::from_secs(15)).await;

    // The node leading the most shards dies while everything rests: its shards
    // must take writes again once the others notice (liveness probes).
    let mut led: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
    for index in 0..SHARDS {
        if let Some(leader) = cluster.shard_leader(&stream, index) {
            led.entry(leader).or_default().push(index);
        }
    }
    let (victim, shards) = led.into_iter().max_by_key(|(_, shards)| shards.len()).expect("shards have leaders");
    let survivor = if victim == 1 { 2 } else { 1 };
    let client = cluster.client(survivor).await.unwrap().with_retry_for(Duration::from_millis(200));
    cluster.kill(victim).await.unwrap();
    let killed = Instant::now();
    let mut resumed = Vec::new();
    for index in &shards {
        loop {
            let data = format!("after-{index}");
            if put_to_shard(&client, &stream, *index, data.clone()).await {
                acked.push((*index, data));
                resumed.push(killed.elapsed());
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(20), "shard {index} took no writes after its leader died");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!("node {victim} led shards {shards:?}; writes resumed after {resumed:?}");

    // Nothing acknowledged is missing.
    for (index, data) in &acked {
        let shard_id = format!("shardId-{index:012}");
        let records = client.read_shard("calm", &shard_id).await.unwrap();
        assert_eq!(
            records.iter().filter(|r| r.data == data.as_bytes()).count(),
            1,
            "{data} is not in {shard_id} exactly once"
        );
    }
    cluster.shutdown().await;
}
