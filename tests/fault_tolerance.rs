//! Killing, restarting and cutting off nodes while producers write: every
//! acknowledged record must then be on every replica, exactly once, in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_client::{LeaderRouter, Record, ShoalClient};
use shoal_testkit::TestCluster;
use shoal_tests::record;
use shoal_tls::Dialer;
use shoal_types::{SequenceNumber, Stream};

/// A record the cluster acknowledged: where it said it put it, and what it was.
#[derive(Debug, Clone)]
struct Acked {
    shard_id: String,
    sequence_number: String,
    data: String,
    writer: usize,
    counter: u64,
}

type Ledger = Arc<Mutex<Vec<Acked>>>;

/// Writes batches through whichever node answers, recording every acknowledged
/// record, until `stop` is set. Each record's data names its writer and a counter,
/// so a retried batch never looks like the original.
async fn writer(id: usize, addrs: Vec<String>, stream: String, stop: Arc<AtomicBool>, ledger: Ledger) -> u64 {
    let mut counter = 0u64;
    let mut attempts = 0u64;
    let mut clients: Vec<Option<ShoalClient>> = vec![None; addrs.len()];
    let mut pick = id;
    while !stop.load(Ordering::Relaxed) {
        pick = (pick + 1) % addrs.len();
        let client = match &clients[pick] {
            Some(client) => client.clone(),
            None => match ShoalClient::connect(&addrs[pick]).await {
                Ok(client) => {
                    let client = client.with_retry_for(Duration::from_millis(500));
                    clients[pick] = Some(client.clone());
                    client
                }
                Err(_) => continue,
            },
        };
        attempts += 1;
        let batch: Vec<(u64, Record)> = (0..10)
            .map(|_| {
                counter += 1;
                (counter, record(format!("w{id}-{counter}"), format!("w{id}-{counter}-a{attempts}")))
            })
            .collect();
        let records = batch.iter().map(|(_, r)| r.clone()).collect();
        let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(3), client.put_records(&stream, records)).await
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut ledger = ledger.lock().unwrap();
        for ((counter, sent), result) in batch.into_iter().zip(response.records) {
            if result.error_code.is_empty() {
                ledger.push(Acked {
                    shard_id: result.shard_id,
                    sequence_number: result.sequence_number,
                    data: String::from_utf8(sent.data.to_vec()).unwrap(),
                    writer: id,
                    counter,
                });
            }
        }
    }
    attempts
}

/// Checks one replica against the ledger: every acknowledged record is there at
/// its sequence number, no data appears twice, and each writer's records of a
/// shard are in the order it wrote them.
fn check_replica(cluster: &TestCluster, node: u64, stream: &Stream, acked: &[Acked]) {
    for shard in &stream.shards {
        let held = cluster.replica_records(node, stream, shard.id.index()).unwrap();
        let shard_id = shard.id.to_string();
        let mut by_seq: HashMap<String, String> = HashMap::new();
        let mut data_seen: HashMap<String, usize> = HashMap::new();
        for r in &held {
            let seq = stream.sequence_number(shard.id, r.position).to_string();
            let data = String::from_utf8(r.record.data.to_vec()).unwrap();
            *data_seen.entry(data.clone()).or_default() += 1;
            by_seq.insert(seq, data);
        }
        let duplicates: Vec<_> = data_seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(duplicates.is_empty(), "node {node} {shard_id}: data stored twice: {duplicates:?}");
        let mut last_counter: BTreeMap<usize, (u64, String)> = BTreeMap::new();
        let mut mine: Vec<&Acked> = acked.iter().filter(|a| a.shard_id == shard_id).collect();
        mine.sort_by(|a, b| a.sequence_number.cmp(&b.sequence_number));
        for a in mine {
            assert_eq!(
                by_seq.get(&a.sequence_number),
                Some(&a.data),
                "node {node} {shard_id}: acknowledged record {} ({}) missing or different",
                a.sequence_number,
                a.data
            );
            if let Some((previous, previous_seq)) = last_counter.get(&a.writer) {
                assert!(
                    a.counter > *previous,
                    "node {node} {shard_id}: writer {} record {} stored after {} ({previous_seq})",
                    a.writer,
                    a.counter,
                    previous
                );
            }
            last_counter.insert(a.writer, (a.counter, a.sequence_number.clone()));
        }
        // Positions parse back and sort like the log.
        let seqs: Vec<SequenceNumber> = held
            .iter()
            .map(|r| SequenceNumber::parse(&stream.sequence_number(shard.id, r.position).to_string()).unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "node {node} {shard_id}: records out of order");
    }
}

async fn start_writers(cluster: &TestCluster, stream: &str, count: usize) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let ledger: Ledger = Arc::default();
    let addrs: Vec<String> = cluster.node_ids().into_iter().map(|id| cluster.addr(id)).collect();
    let tasks = (0..count)
        .map(|id| tokio::spawn(writer(id, addrs.clone(), stream.to_string(), stop.clone(), ledger.clone())))
        .collect();
    (stop, ledger, tasks)
}

async fn acked_count(ledger: &Ledger) -> usize {
    ledger.lock().unwrap().len()
}

/// Waits until writers have had `more` further records acknowledged.
async fn wait_for_progress(ledger: &Ledger, more: usize, timeout: Duration) {
    let target = acked_count(ledger).await + more;
    let deadline = Instant::now() + timeout;
    while acked_count(ledger).await < target {
        assert!(Instant::now() < deadline, "writes did not make progress within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Writers = (Arc<AtomicBool>, Ledger, Vec<tokio::task::JoinHandle<u64>>);

/// A three-node cluster with stream `name` of `shards` shards, and four writers
/// that have had 200 records acknowledged.
async fn cluster_under_writes(name: &str, shards: u32) -> anyhow::Result<(TestCluster, Stream, Writers)> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(1).await?;
    client.create_stream(name, shards).await?;
    client.wait_for_active(name, Duration::from_secs(10)).await?;
    let stream = cluster.stream(1, name).await?;
    let writers = start_writers(&cluster, name, 4).await;
    wait_for_progress(&writers.1, 200, Duration::from_secs(20)).await;
    Ok((cluster, stream, writers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_survive_leader_kills_restarts_and_partitions() -> anyhow::Result<()> {
    let (mut cluster, stream, (stop, ledger, writers)) = cluster_under_writes("ledger", 3).await?;

    // Kill the leader of shard 0; writes must go on through the survivors.
    let victim = cluster.shard_leader(&stream, 0).expect("shard 0 has a leader");
    cluster.kill(victim).await?;
    wait_for_progress(&ledger, 200, Duration::from_secs(20)).await;
    cluster.restart(victim).await?;
    wait_for_progress(&ledger, 200, Duration::from_secs(20)).await;

    // Cut off the leader of shard 1; the majority carries on without it.
    let cut = cluster.shard_leader(&stream, 1).expect("shard 1 has a leader");
    cluster.isolate(cut);
    wait_for_progress(&ledger, 200, Duration::from_secs(20)).await;
    cluster.heal();
    wait_for_progress(&ledger, 200, Duration::from_secs(20)).await;

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    let acked = ledger.lock().unwrap().clone();
    assert!(acked.len() >= 1000, "only {} records acknowledged", acked.len());
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(20)).await?;
    for node in cluster.node_ids() {
        check_replica(&cluster, node, &stream, &acked);
    }
    // And the API serves the same records in the same order.
    let via_api: usize = cluster.client(2).await?.read_stream("ledger").await?.iter().map(|(_, r)| r.len()).sum();
    let on_disk: usize = (0..3).map(|i| cluster.replica_records(1, &stream, i).unwrap().len()).sum();
    assert_eq!(via_api, on_disk);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_resume_within_seconds_when_a_leader_dies() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start(3).await?;
    let client = cluster.client(1).await?;
    client.create_stream("failover", 1).await?;
    client.wait_for_active("failover", Duration::from_secs(10)).await?;
    let stream = cluster.stream(1, "failover").await?;
    let before = client.put_record("failover", "k", b"before".to_vec()).await?;
    let victim = cluster.shard_leader(&stream, 0).expect("a leader");
    cluster.kill(victim).await?;
    let survivor = cluster.node_ids().into_iter().find(|id| *id != victim).unwrap();
    let client = cluster.client(survivor).await?;
    let killed_at = Instant::now();
    let after = client.put_record("failover", "k", b"after".to_vec()).await?;
    let outage = killed_at.elapsed();
    assert!(outage < Duration::from_secs(5), "writes resumed after {outage:?}");
    assert!(after.sequence_number > before.sequence_number);
    let new_leader = cluster.shard_leader(&stream, 0).expect("a new leader");
    assert_ne!(new_leader, victim);
    let data: Vec<Vec<u8>> =
        client.read_shard("failover", "shardId-000000000000").await?.into_iter().map(|r| r.data.to_vec()).collect();
    assert_eq!(data, [b"before".to_vec(), b"after".to_vec()]);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_off_leader_acknowledges_nothing_and_catches_up_after_healing() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(1).await?;
    client.create_stream("island", 1).await?;
    client.wait_for_active("island", Duration::from_secs(10)).await?;
    let stream = cluster.stream(1, "island").await?;
    let leader = cluster.shard_leader(&stream, 0).expect("a leader");
    cluster.isolate(leader);
    // The cut-off leader cannot reach a quorum: its write must not be acknowledged.
    let island = cluster.client(leader).await?.with_retry_for(Duration::from_millis(100));
    let stranded =
        tokio::time::timeout(Duration::from_secs(3), island.put_record("island", "k", b"stranded".to_vec())).await;
    assert!(!matches!(stranded, Ok(Ok(_))), "an isolated leader acknowledged a write: {stranded:?}");
    // The majority elects a new leader and keeps accepting writes.
    let majority = cluster.node_ids().into_iter().find(|id| *id != leader).unwrap();
    let mainland = cluster.client(majority).await?;
    for i in 0..20 {
        mainland.put_record("island", "k", format!("m{i}").into_bytes()).await?;
    }
    cluster.heal();
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(20)).await?;
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for node in cluster.node_ids() {
        let held: Vec<String> = cluster
            .replica_records(node, &stream, 0)?
            .into_iter()
            .map(|r| String::from_utf8(r.record.data.to_vec()).unwrap())
            .filter(|d| d != "stranded")
            .collect();
        assert_eq!(held, expected, "node {node} after healing");
    }
    cluster.shutdown().await;
    Ok(())
}

/// `count` records keyed `k0`, `k1`, … with data `{tag}-0`, `{tag}-1`, ….
fn tagged(tag: &str, count: usize) -> Vec<Record> {
    (0..count).map(|i| record(format!("k{i}"), format!("{tag}-{i}"))).collect()
}

/// A three-node cluster whose stream `name` of `shards` shards holds `records` on
/// every replica.
async fn cluster_holding(
    name: &str,
    shards: u32,
    records: Vec<Record>,
) -> anyhow::Result<(TestCluster, ShoalClient, Stream)> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(1).await?;
    client.create_stream(name, shards).await?;
    client.wait_for_active(name, Duration::from_secs(10)).await?;
    let stream = cluster.stream(1, name).await?;
    assert_eq!(client.put_records(name, records).await?.failed_record_count, 0);
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(10)).await?;
    Ok((cluster, client, stream))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_recovers_its_records_from_disk_and_catches_up() -> anyhow::Result<()> {
    let (mut cluster, client, stream) = cluster_holding("durable", 2, tagged("first", 100)).await?;
    cluster.kill(3).await?;
    assert_eq!(client.put_records("durable", tagged("second", 100)).await?.failed_record_count, 0);
    cluster.restart(3).await?;
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(20)).await?;
    for shard in 0..2 {
        let on_3 = cluster.replica_records(3, &stream, shard)?;
        let on_1 = cluster.replica_records(1, &stream, shard)?;
        assert_eq!(on_3.len(), on_1.len(), "shard {shard}: restarted replica holds as many records");
        assert!(on_3 == on_1, "shard {shard}: restarted replica holds the same records");
    }
    let total: usize = (0..2).map(|s| cluster.replica_records(3, &stream, s).unwrap().len()).sum();
    assert_eq!(total, 200);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stops_promptly_while_its_peers_hold_raft_streams_to_it_and_they_reconnect() -> anyhow::Result<()> {
    let (mut cluster, client, stream) = cluster_holding("streams", 2, tagged("first", 50)).await?;

    // Nodes 1 and 3 hold open Raft exchanges to node 2; its graceful stop must end
    // them instead of waiting for its peers to hang up.
    let stopping = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), cluster.kill(2)).await??;
    assert!(stopping.elapsed() < Duration::from_secs(5), "node 2 took {:?} to stop", stopping.elapsed());

    // Its peers open new exchanges to the restarted node, which catches up.
    cluster.restart(2).await?;
    assert_eq!(client.put_records("streams", tagged("second", 50)).await?.failed_record_count, 0);
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(20)).await?;
    let held: usize =
        (0..2).map(|s| cluster.replica_records(2, &stream, s).map(|r| r.len())).sum::<anyhow::Result<_>>()?;
    assert_eq!(held, 100, "the restarted node holds every record");
    cluster.shutdown().await;
    Ok(())
}

/// Whether a write through `client` gets an answer (success or error) within
/// `limit`, and which.
async fn answer_within(
    client: &ShoalClient,
    stream: &str,
    data: &str,
    limit: Duration,
) -> Result<shoal_client::proto::PutRecordResponse, String> {
    match tokio::time::timeout(limit, client.put_record(stream, "k", data.as_bytes().to_vec())).await {
        Ok(Ok(put)) => Ok(put),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => panic!("a write through a node with failed storage got no answer within {limit:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_storage_fails_gives_way_and_every_acknowledged_record_survives() -> anyhow::Result<()> {
    let (mut cluster, stream, (stop, ledger, writers)) = cluster_under_writes("full", 1).await?;

    // The disk of shard 0's leader fills up: its writes fail from now on.
    let victim = cluster.shard_leader(&stream, 0).expect("shard 0 has a leader");
    cluster.fail_storage(victim)?;
    let failed_at = Instant::now();
    wait_for_progress(&ledger, 200, Duration::from_secs(20)).await;
    let others = cluster.node_ids().into_iter().filter(|id| *id != victim).collect::<Vec<_>>();
    let failure = cluster.node(victim).and_then(|node| node.storage_failure());
    assert!(failure.is_some_and(|f| f.contains("no space left")), "node {victim} reports no storage failure");
    let new_leader = cluster.shard_leader(&stream, 0).expect("shard 0 has a new leader");
    assert!(others.contains(&new_leader), "shard 0 is still led by the failed node {victim}");
    eprintln!("writes resumed on the healthy nodes {:?} after the failure", failed_at.elapsed());
    // The failed node still takes writes for the shard it led: it forwards them to
    // the new leader instead of waiting on its stopped group.
    let through_victim = cluster.client(victim).await?.with_retry_for(Duration::from_millis(500));
    let forwarded = answer_within(&through_victim, "full", "via-failed-node", Duration::from_secs(10)).await;
    assert!(forwarded.is_ok(), "a write through the failed node: {forwarded:?}");

    // Restarted, with working storage again, it catches up.
    cluster.kill(victim).await?;
    cluster.restart(victim).await?;
    wait_for_progress(&ledger, 200, Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    let acked = ledger.lock().unwrap().clone();
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(20)).await?;
    for node in cluster.node_ids() {
        check_replica(&cluster, node, &stream, &acked);
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_failed_disks_writes_fail_promptly_and_restarts_lose_nothing() -> anyhow::Result<()> {
    let (mut cluster, client, stream) = cluster_holding("stuck", 1, tagged("kept", 20)).await?;
    let leader = cluster.shard_leader(&stream, 0).expect("a leader");
    let follower = cluster.node_ids().into_iter().find(|id| *id != leader).unwrap();
    cluster.fail_storage(leader)?;
    cluster.fail_storage(follower)?;

    // No quorum can make a record durable: every node must say so, not hang.
    for id in cluster.node_ids() {
        let node_client = cluster.client(id).await?.with_retry_for(Duration::from_millis(500));
        let started = Instant::now();
        let answer = answer_within(&node_client, "stuck", &format!("lost-{id}"), Duration::from_secs(15)).await;
        assert!(answer.is_err(), "node {id} acknowledged a write no quorum can hold: {answer:?}");
        eprintln!("node {id} refused the write after {:?}: {:?}", started.elapsed(), answer.err());
    }
    // Restarted with working disks, the cluster takes writes again and holds
    // every acknowledged record once, in order.
    for id in [leader, follower] {
        cluster.kill(id).await?;
        cluster.restart(id).await?;
    }
    let after = client.with_retry_for(Duration::from_secs(10));
    after.put_record("stuck", "k", b"after".to_vec()).await?;
    cluster.wait_for_replicas_to_converge(&stream, Duration::from_secs(20)).await?;
    let read = after.read_shard("stuck", "shardId-000000000000").await?;
    assert_eq!(read.first().map(|r| &r.data[..]), Some(&b"kept-0"[..]));
    for id in cluster.node_ids() {
        let held: Vec<String> = cluster
            .replica_records(id, &stream, 0)?
            .into_iter()
            .map(|r| String::from_utf8(r.record.data.to_vec()).unwrap())
            .filter(|d| !d.starts_with("lost-"))
            .collect();
        let mut expected: Vec<String> = (0..20).map(|i| format!("kept-{i}")).collect();
        expected.push("after".into());
        assert_eq!(held, expected, "node {id}");
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_aware_router_follows_the_leader_once_a_node_forwards() -> anyhow::Result<()> {
    const SHARD: &str = "shardId-000000000000";
    const WITHIN: Duration = Duration::from_secs(20);
    let mut cluster = TestCluster::start(3).await?;
    let client = cluster.client(1).await?;
    client.create_stream("moving", 1).await?;
    client.wait_for_active("moving", Duration::from_secs(10)).await?;
    let stream = cluster.stream(1, "moving").await?;
    let preferred = cluster.shard_leader(&stream, 0).expect("a leader");
    let entry = cluster.node_ids().into_iter().find(|id| *id != preferred).unwrap();
    let entry_client = cluster.client(entry).await?;

    // The router learns the leaders while the preferred leader is down…
    cluster.kill(preferred).await?;
    entry_client.put_record("moving", "k", b"failover".to_vec()).await?;
    let stand_in = cluster.shard_leader(&stream, 0).expect("a new leader");
    let router = LeaderRouter::discover(entry_client.clone(), Dialer::plain(), "moving").await?;
    assert_eq!(router.shard_leader_addr(SHARD), Some(cluster.addr(stand_in)));
    let direct = router.put_records(vec![record("k", "direct")]).await?;
    assert_eq!((direct.failed_record_count, direct.forwarded_record_count), (0, 0), "sent to the leader itself");

    // …which takes its leadership back once it returns: the router's table is stale.
    cluster.restart(preferred).await?;
    let deadline = Instant::now() + WITHIN;
    while cluster.shard_leader(&stream, 0) != Some(preferred) {
        assert!(Instant::now() < deadline, "the preferred leader never took its shard back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stale = router.put_records(vec![record("k", "stale")]).await?;
    assert_eq!(stale.failed_record_count, 0, "a stale table costs a hop, never a record");
    assert_eq!(stale.forwarded_record_count, 1, "the old leader says it forwarded");

    // The router re-reads the table in the background and sends straight to the
    // leader again.
    loop {
        let answer = router.put_records(vec![record("k", "routed")]).await?;
        assert_eq!(answer.failed_record_count, 0);
        if answer.forwarded_record_count == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the router still sends to {:?}", router.shard_leader_addr(SHARD));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(router.shard_leader_addr(SHARD), Some(cluster.addr(preferred)));
    let data: Vec<Vec<u8>> =
        entry_client.read_shard("moving", SHARD).await?.into_iter().map(|r| r.data.to_vec()).collect();
    assert_eq!(&data[..3], [b"failover".to_vec(), b"direct".to_vec(), b"stale".to_vec()]);
    cluster.shutdown().await;
    Ok(())
}
