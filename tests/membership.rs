//! Cluster membership under write load: a node joins and takes replicas, a node
//! is drained and removed, a dead node is replaced within its zone. Afterwards
//! every acknowledged record is read exactly once, in per-key order, and every
//! replica holds the same records.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal_testkit::TestCluster;
use shoal_tests::{KeyedProducer, audit, read_in_lineage_order};
use shoal_types::{NodeId, Stream};

const ACTIVE_WITHIN: Duration = Duration::from_secs(15);
const MOVES_WITHIN: Duration = Duration::from_secs(90);

/// Waits until `check` holds for node `via`'s view of the stream.
async fn wait_for_placement(
    cluster: &TestCluster,
    via: NodeId,
    name: &str,
    what: &str,
    check: impl Fn(&Stream) -> bool,
) -> anyhow::Result<Stream> {
    let deadline = Instant::now() + MOVES_WITHIN;
    loop {
        let stream = cluster.stream(via, name).await?;
        if check(&stream) {
            return Ok(stream);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not happen within {MOVES_WITHIN:?}: {:?}",
            stream.shards
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every shard has three replicas in three zones, none on `absent`, and no move
/// is under way.
fn well_placed(stream: &Stream, zone_of: impl Fn(NodeId) -> String, absent: &[NodeId]) -> bool {
    stream.shards.iter().all(|shard| {
        let zones: BTreeSet<String> = shard.replicas.iter().map(|id| zone_of(*id)).collect();
        shard.retiring.is_empty()
            && shard.replicas.len() == 3
            && zones.len() == 3
            && !shard.replicas.iter().any(|id| absent.contains(id))
    })
}

/// Whether producers may still be writing while the replicas are compared.
#[derive(Clone, Copy, PartialEq)]
enum Writes {
    /// The replicas are read one after another while entries keep committing, so
    /// the replica read last may lack the newest ones, or hold more: compare what
    /// all of them hold (a replica missing or differing in a record before its
    /// end still fails).
    Ongoing,
    /// Nothing is written any more: once converged, the copies are identical.
    Stopped,
}

/// After a move, every replica of every shard holds the same records.
async fn replicas_agree(cluster: &TestCluster, stream: &Stream, writes: Writes) -> anyhow::Result<()> {
    cluster.wait_for_replicas_to_converge(stream, Duration::from_secs(20)).await?;
    for shard in &stream.shards {
        let mut copies: Vec<Vec<Vec<u8>>> = shard
            .replicas
            .iter()
            .map(|id| {
                cluster
                    .replica_records(*id, stream, shard.id.index())
                    .map(|records| records.into_iter().map(|r| r.record.data.to_vec()).collect())
            })
            .collect::<anyhow::Result<_>>()?;
        if writes == Writes::Ongoing {
            let common = copies.iter().map(Vec::len).min().unwrap_or(0);
            copies.iter_mut().for_each(|copy| copy.truncate(common));
        }
        assert!(copies.windows(2).all(|w| w[0] == w[1]), "replicas of {} differ", shard.id);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joins_and_another_leaves_while_producers_write() -> anyhow::Result<()> {
    // Three groups of two shards, so that there are groups to move and to lead.
    let mut cluster = TestCluster::start_with(3, |config| config.shards_per_group = 2).await?;
    let admin = cluster.client(2).await?;
    admin.create_stream("moving", 6).await?;
    admin.wait_for_active("moving", ACTIVE_WITHIN).await?;
    let producer = KeyedProducer::start(cluster.client(3).await?, "moving", 24);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Node 4 joins zone az-1 and takes about half of node 1's replicas: the six
    // shards share three groups, so one or two of them.
    let addr = cluster.start_new_node(4, "az-1").await?;
    assert!(admin.add_node(4, &addr, "az-1").await?, "the fourth node votes in the metadata group");
    let zone_of = |id: NodeId| if id == 4 { "az-1".to_string() } else { format!("az-{id}") };
    let stream = wait_for_placement(&cluster, 2, "moving", "node 4 taking replicas", |s| {
        let on = |n| {
            let groups = s.shards.iter().filter(|shard| shard.replicas.contains(&n)).map(|shard| shard.group_id);
            groups.collect::<BTreeSet<_>>().len()
        };
        on(4) >= 1 && on(1) >= 1 && on(4) + on(1) == 3 && well_placed(s, zone_of, &[])
    })
    .await?;
    replicas_agree(&cluster, &stream, Writes::Ongoing).await?;
    let status = admin.cluster_status().await?;
    assert_eq!(status.nodes.len(), 4);
    // Leadership spreads to the new node too.
    let deadline = Instant::now() + MOVES_WITHIN;
    loop {
        let stream = cluster.stream(2, "moving").await?;
        let led_by_4 = stream.shards.iter().filter(|s| cluster.shard_leader(&stream, s.id.index()) == Some(4)).count();
        if led_by_4 >= 1 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "node 4 never became a shard leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Node 1 is removed: its replicas go to node 4, the other node of its zone.
    admin.remove_node(1, MOVES_WITHIN).await?;
    let stream = wait_for_placement(&cluster, 2, "moving", "node 1 emptied", |s| well_placed(s, zone_of, &[1])).await?;
    assert!(stream.shards.iter().all(|s| s.replicas.contains(&4)), "zone az-1 is now node 4");
    let status = admin.cluster_status().await?;
    assert_eq!(status.nodes.iter().map(|n| n.node_id).collect::<Vec<_>>(), [2, 3, 4]);
    cluster.retire(1).await?;

    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = producer.stop().await;
    let read = read_in_lineage_order(&admin, "moving").await?;
    let audit = audit(&acked, &read);
    println!("membership change under load: {audit:?}");
    assert!(audit.acknowledged > 0);
    assert_eq!((audit.lost, audit.duplicated, audit.reordered), (0, 0, 0), "{audit:?}");
    replicas_agree(&cluster, &cluster.stream(2, "moving").await?, Writes::Stopped).await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_node_is_replaced_within_its_zone_and_its_shards_stay_writable() -> anyhow::Result<()> {
    // A group per shard, so that the new node of zone az-3 takes some of them.
    let mut cluster = TestCluster::start_with(3, |config| config.shards_per_group = 1).await?;
    let admin = cluster.client(1).await?;
    admin.create_stream("survivor", 4).await?;
    admin.wait_for_active("survivor", ACTIVE_WITHIN).await?;
    let addr = cluster.start_new_node(4, "az-3").await?;
    admin.add_node(4, &addr, "az-3").await?;
    let zone_of = |id: NodeId| if id == 4 { "az-3".to_string() } else { format!("az-{id}") };
    wait_for_placement(&cluster, 1, "survivor", "node 4 taking replicas", |s| {
        s.shards.iter().any(|shard| shard.replicas.contains(&4)) && well_placed(s, zone_of, &[])
    })
    .await?;
    let producer = KeyedProducer::start(cluster.client(2).await?, "survivor", 16);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Zone az-3 loses node 3: every shard keeps taking writes on its other replicas.
    cluster.kill(3).await?;
    let before = producer.acked_count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(producer.acked_count() > before, "writes go on without node 3");

    // Removing the dead node moves its replicas to node 4, in the same zone.
    admin.remove_node(3, MOVES_WITHIN).await?;
    let stream =
        wait_for_placement(&cluster, 1, "survivor", "node 3 replaced", |s| well_placed(s, zone_of, &[3])).await?;
    cluster.retire(3).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = producer.stop().await;
    let audit = audit(&acked, &read_in_lineage_order(&admin, "survivor").await?);
    println!("dead node replaced under load: {audit:?}");
    assert_eq!((audit.lost, audit.duplicated, audit.reordered), (0, 0, 0), "{audit:?}");
    replicas_agree(&cluster, &stream, Writes::Stopped).await?;
    cluster.shutdown().await;
    Ok(())
}
