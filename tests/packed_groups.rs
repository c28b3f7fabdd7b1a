//! Shards that share a Raft group ("packed" shards, docs/architecture.md): one
//! entry carries appends to several of them, yet each keeps its own records,
//! sequence numbers, seal and lineage, on every replica.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use shoal_testkit::TestCluster;
use shoal_tests::{Audit, KeyedProducer, audit, read_in_lineage_order};
use shoal_types::Stream;

const ACTIVE_WITHIN: Duration = Duration::from_secs(15);

/// Waits until `producer` has `count` acknowledged records.
async fn until_acked(producer: &KeyedProducer, count: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while producer.acked_count() < count {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "only {} records acknowledged", producer.acked_count());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Creates `name` with `shards` shards through node 1, waits until it is ACTIVE
/// and returns its metadata.
async fn active_stream(cluster: &TestCluster, name: &str, shards: u32) -> anyhow::Result<Stream> {
    let client = cluster.client(1).await?;
    client.create_stream(name, shards).await?;
    client.wait_for_active(name, ACTIVE_WITHIN).await?;
    cluster.stream(1, name).await
}

fn assert_clean(audit: &Audit) {
    assert!(audit.acknowledged > 0);
    assert_eq!((audit.lost, audit.duplicated, audit.reordered), (0, 0, 0), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_that_share_a_group_keep_their_records_apart_on_every_replica() -> anyhow::Result<()> {
    let cluster = TestCluster::start_with(3, |config| config.shards_per_group = 4).await?;
    let client = cluster.client(1).await?;
    let stream = active_stream(&cluster, "packed", 12).await?;
    let groups: BTreeSet<u64> = stream.shards.iter().map(|s| s.group_id).collect();
    assert_eq!(groups.len(), 3, "twelve shards, up to four a group: three groups");
    let stores: BTreeSet<u64> = stream.shards.iter().map(|s| s.store()).collect();
    assert_eq!(stores.len(), 12, "each shard keeps its records under a key space of its own");
    let leaders: HashSet<u64> = (0..12).filter_map(|i| cluster.shard_leader(&stream, i)).collect();
    assert_eq!(leaders.len(), 3, "each node leads one group");

    // Calls of 48 records over 12 shards: each call appends to every group's
    // shards at once.
    let producer = KeyedProducer::start(cluster.client(2).await?, "packed", 48);
    until_acked(&producer, 3_000).await?;
    let acked = producer.stop().await;
    let read = read_in_lineage_order(&client, "packed").await?;
    assert_clean(&audit(&acked, &read));

    // Every replica holds the same records for every shard.
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(10)).await?;
    for index in 0..12 {
        let on_first = cluster.replica_records(1, &stream, index)?;
        assert!(!on_first.is_empty(), "shard {index} took records");
        for node in [2, 3] {
            assert_eq!(cluster.replica_records(node, &stream, index)?, on_first, "shard {index} on node {node}");
        }
    }
    // One Raft entry carried appends to more than one shard of its group: the
    // same log index holds records of two shards.
    let mut shards_by_entry: BTreeMap<(u64, u64), BTreeSet<u32>> = BTreeMap::new();
    for shard in &stream.shards {
        for read in cluster.replica_records(1, &stream, shard.id.index())? {
            shards_by_entry.entry((shard.group_id, read.position.log_index)).or_default().insert(shard.id.index());
        }
    }
    assert!(shards_by_entry.values().any(|shards| shards.len() > 1), "no entry carried two shards");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_split_out_of_a_shared_group_leaves_its_siblings_writable() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(1).await?;
    let before = active_stream(&cluster, "split", 6).await?;
    assert_eq!(before.shards[0].group_id, before.shards[1].group_id, "shards 0 and 1 share a group");

    let producer = KeyedProducer::start(cluster.client(2).await?, "split", 24);
    until_acked(&producer, 500).await?;
    // Shard 0's range is [0, 2^128/6): split it in the middle.
    let middle = (u128::MAX / 12).to_string();
    client.split_shard("split", "shardId-000000000000", &middle).await?;
    client.wait_for_active("split", ACTIVE_WITHIN).await?;
    let after = cluster.stream(1, "split").await?;
    let parent = &after.shards[0];
    assert!(!parent.is_open(), "the parent is sealed");
    assert!(after.shards[1].is_open(), "its sibling in the same group is not");
    let children: Vec<_> = after.shards.iter().filter(|s| s.parent == Some(parent.id)).collect();
    assert_eq!(children.len(), 2);
    assert!(children.iter().all(|c| c.group_id != parent.group_id), "children get groups of their own");

    let acked_at_split = producer.acked_count();
    until_acked(&producer, acked_at_split + 500).await?;
    let acked = producer.stop().await;
    let read = read_in_lineage_order(&client, "split").await?;
    assert_clean(&audit(&acked, &read));
    let sibling_records = read.iter().filter(|(shard, _)| shard == "shardId-000000000001").count();
    let sibling_acked_after =
        acked.iter().skip(acked_at_split).filter(|a| a.shard_id == "shardId-000000000001").count();
    assert!(sibling_records > 0 && sibling_acked_after > 0, "the sibling took records after the split");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_shard_leaves_its_shared_group_and_the_disks_while_its_sibling_lives_on() -> anyhow::Result<()> {
    let cluster = TestCluster::start_with(3, |config| {
        config.retention_hour_millis = 50;
        config.retention_check_secs = 1;
    })
    .await?;
    let client = cluster.client(1).await?;
    let before = active_stream(&cluster, "shedding", 6).await?;
    let producer = KeyedProducer::start(cluster.client(2).await?, "shedding", 24);
    until_acked(&producer, 200).await?;
    let (parent, sibling) = (before.shards[0].clone(), before.shards[1].clone());
    assert_eq!(parent.group_id, sibling.group_id);
    let middle = (u128::MAX / 12).to_string();
    client.split_shard("shedding", "shardId-000000000000", &middle).await?;
    client.wait_for_active("shedding", ACTIVE_WITHIN).await?;

    // 24 retention "hours" are 1.2 s here: the parent's records expire, it leaves
    // the metadata, and every node erases what it kept of it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = cluster.stream(1, "shedding").await?;
        let gone = listed.shard(parent.id).is_none();
        let erased = cluster.node_ids().iter().all(|id| {
            cluster.node(*id).is_some_and(|node| {
                let left = shoal_raft::shard_state::read_records(
                    &node.db,
                    parent.store(),
                    shoal_types::RecordPosition::START,
                    1,
                    usize::MAX,
                );
                left.is_ok_and(|records| records.is_empty())
                    && node
                        .db
                        .get(
                            shoal_storage::Cf::StateMachine,
                            &shoal_storage::keys::group_named(parent.store(), "progress"),
                        )
                        .ok()
                        .flatten()
                        .is_none()
            })
        });
        if gone && erased {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the parent is still listed ({gone}) or on disk ({erased})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The group lives on for the sibling, which still takes records.
    for id in cluster.node_ids() {
        let node = cluster.node(id).expect("running");
        assert!(node.groups.get(sibling.group_id).is_some(), "node {id} stopped the shared group");
    }
    let acked_before = producer.acked_count();
    until_acked(&producer, acked_before + 200).await?;
    let acked = producer.stop().await;
    let sibling_after = acked.iter().skip(acked_before).any(|a| a.shard_id == "shardId-000000000001");
    assert!(sibling_after, "the sibling took records after its neighbour was erased");
    cluster.shutdown().await;
    Ok(())
}
