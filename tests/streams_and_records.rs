//! Streams and records on an in-process three-zone cluster, through the gRPC API.

use std::collections::HashSet;
use std::time::Duration;

use shoal_client::{ErrorCode, Record, proto};
use shoal_testkit::TestCluster;
use shoal_tests::record;
use shoal_types::HashKey;

const ACTIVE_WITHIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_written_through_one_node_are_read_through_another_in_shard_order() -> anyhow::Result<()> {
    // A group per shard, so that each node leads one of them.
    let cluster = TestCluster::start_with(3, |config| config.shards_per_group = 1).await?;
    let (first, second, third) = (cluster.client(1).await?, cluster.client(2).await?, cluster.client(3).await?);
    first.create_stream("orders", 3).await?;
    let description = second.wait_for_active("orders", ACTIVE_WITHIN).await?;
    assert_eq!(description.shards.len(), 3);
    // Each node leads one of the three shards.
    let stream = cluster.stream(1, "orders").await?;
    let leaders: HashSet<u64> = (0..3).filter_map(|i| cluster.shard_leader(&stream, i)).collect();
    assert_eq!(leaders.len(), 3, "shard leaders spread over the nodes");

    let mut written = Vec::new();
    for i in 0..90 {
        let key = format!("customer-{i}");
        let put = second.put_record("orders", &key, format!("order {i}").into_bytes()).await?;
        // The record went to the shard whose hash-key range holds MD5(key).
        let hash = HashKey::from_partition_key(&key).0;
        let owner = description
            .shards
            .iter()
            .find(|s| {
                s.starting_hash_key.parse::<u128>().unwrap() <= hash
                    && hash <= s.ending_hash_key.parse::<u128>().unwrap()
            })
            .unwrap();
        assert_eq!(put.shard_id, owner.shard_id, "record {key} routed by MD5");
        assert_eq!(put.sequence_number.len(), 56);
        written.push((put.shard_id, put.sequence_number, format!("order {i}")));
    }

    let read = third.read_stream("orders").await?;
    let mut seen = 0;
    for (shard_id, records) in &read {
        let expected: Vec<_> = written.iter().filter(|(s, _, _)| s == shard_id).collect();
        assert_eq!(records.len(), expected.len(), "{shard_id} holds exactly what was written to it");
        for (record, (_, seq, data)) in records.iter().zip(expected) {
            assert_eq!(&record.sequence_number, seq);
            assert_eq!(record.data, data.as_bytes());
        }
        let seqs: Vec<u128> = records.iter().map(|r| r.sequence_number[20..].parse().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers increase within {shard_id}");
        seen += records.len();
    }
    assert_eq!(seen, 90);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_records_answers_per_record_in_request_order() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(3).await?;
    client.create_stream("batch", 4).await?;
    client.wait_for_active("batch", ACTIVE_WITHIN).await?;
    let records: Vec<Record> = (0..500).map(|i| record(format!("k{i}"), format!("v{i}"))).collect();
    let response = client.put_records("batch", records).await?;
    assert_eq!(response.failed_record_count, 0);
    assert_eq!(response.records.len(), 500);
    // Within a shard, request order is sequence order.
    for shard in ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002", "shardId-000000000003"] {
        let seqs: Vec<&String> =
            response.records.iter().filter(|r| r.shard_id == shard).map(|r| &r.sequence_number).collect();
        assert!(!seqs.is_empty(), "500 keys reach every shard");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }
    let stored: usize = client.read_stream("batch").await?.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(stored, 500);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shard_iterators_start_where_asked() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(2).await?;
    client.create_stream("events", 1).await?;
    client.wait_for_active("events", ACTIVE_WITHIN).await?;
    let shard = "shardId-000000000000";
    let mut seqs = Vec::new();
    for i in 0..10 {
        seqs.push(client.put_record("events", "k", format!("e{i}").into_bytes()).await?.sequence_number);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let data = |page: &proto::GetRecordsResponse| -> Vec<String> {
        page.records.iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()).collect()
    };

    let it = client.get_shard_iterator("events", shard, "TRIM_HORIZON", None, None).await?;
    let page = client.get_records(&it, 3).await?;
    assert_eq!(data(&page), ["e0", "e1", "e2"]);
    assert!(page.millis_behind_latest > 0 || page.records.len() == 10, "more records remain behind the page");
    let page = client.get_records(&page.next_shard_iterator, 100).await?;
    assert_eq!(page.records.len(), 7, "the next iterator continues after the page");
    assert_eq!(page.millis_behind_latest, 0);

    let it = client.get_shard_iterator("events", shard, "AT_SEQUENCE_NUMBER", Some(&seqs[5]), None).await?;
    assert_eq!(data(&client.get_records(&it, 100).await?)[0], "e5");
    let it = client.get_shard_iterator("events", shard, "AFTER_SEQUENCE_NUMBER", Some(&seqs[5]), None).await?;
    assert_eq!(data(&client.get_records(&it, 100).await?)[0], "e6");

    let all =
        client.get_records(&client.get_shard_iterator("events", shard, "TRIM_HORIZON", None, None).await?, 100).await?;
    let arrival = all.records[4].approximate_arrival_timestamp_millis;
    assert!(
        all.records
            .windows(2)
            .all(|w| w[0].approximate_arrival_timestamp_millis <= w[1].approximate_arrival_timestamp_millis)
    );
    let it = client.get_shard_iterator("events", shard, "AT_TIMESTAMP", None, Some(arrival)).await?;
    let from_time = client.get_records(&it, 100).await?;
    assert!(from_time.records.iter().all(|r| r.approximate_arrival_timestamp_millis >= arrival));
    assert!(data(&from_time).contains(&"e4".to_string()));

    let latest = client.get_shard_iterator("events", shard, "LATEST", None, None).await?;
    assert!(client.get_records(&latest, 100).await?.records.is_empty());
    client.put_record("events", "k", b"after".to_vec()).await?;
    assert_eq!(data(&client.get_records(&latest, 100).await?), ["after"]);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_kinesis_error_and_writes_nothing() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(1).await?;

    assert_eq!(code(&client.describe_stream("missing").await), ErrorCode::ResourceNotFound);
    assert_eq!(code(&client.put_record("missing", "k", b"x".to_vec()).await), ErrorCode::ResourceNotFound);
    assert_eq!(code(&client.create_stream("has space", 1).await), ErrorCode::Validation);
    assert_eq!(code(&client.create_stream("zero", 0).await), ErrorCode::InvalidArgument);

    client.create_stream("strict", 2).await?;
    client.wait_for_active("strict", ACTIVE_WITHIN).await?;
    assert_eq!(code(&client.create_stream("strict", 1).await), ErrorCode::ResourceInUse);

    let too_big = vec![0u8; 1024 * 1024];
    assert_eq!(code(&client.put_record("strict", "k", too_big).await), ErrorCode::Validation);
    assert_eq!(code(&client.put_record("strict", "", b"x".to_vec()).await), ErrorCode::Validation);
    let mut batch: Vec<Record> = (0..501).map(|i| record(format!("k{i}"), "x")).collect();
    assert_eq!(code(&client.put_records("strict", batch.clone()).await), ErrorCode::Validation);
    // One bad record refuses the whole call: nothing of it is written.
    batch.truncate(10);
    batch[7].explicit_hash_key = Some("340282366920938463463374607431768211456".into());
    assert_eq!(code(&client.put_records("strict", batch).await), ErrorCode::InvalidArgument);

    let shard = "shardId-000000000000";
    assert_eq!(
        code(&client.get_shard_iterator("strict", "shardId-000000000009", "LATEST", None, None).await),
        ErrorCode::ResourceNotFound
    );
    assert_eq!(
        code(&client.get_shard_iterator("strict", "not-a-shard", "LATEST", None, None).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(&client.get_shard_iterator("strict", shard, "SIDEWAYS", None, None).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        code(&client.get_shard_iterator("strict", shard, "AT_SEQUENCE_NUMBER", Some("12"), None).await),
        ErrorCode::InvalidArgument
    );
    let seq_of_other_shard = client
        .put_records(
            "strict",
            vec![Record {
                explicit_hash_key: Some("340282366920938463463374607431768211455".into()),
                ..record("k", "x")
            }],
        )
        .await?
        .records[0]
        .sequence_number
        .clone();
    assert_eq!(
        code(&client.get_shard_iterator("strict", shard, "AT_SEQUENCE_NUMBER", Some(&seq_of_other_shard), None).await),
        ErrorCode::InvalidArgument
    );
    assert_eq!(code(&client.get_records("garbage", 10).await), ErrorCode::InvalidArgument);
    let iterator = client.get_shard_iterator("strict", shard, "TRIM_HORIZON", None, None).await?;
    assert_eq!(code(&client.get_records(&iterator, 10_001).await), ErrorCode::InvalidArgument);

    let stored: Vec<usize> = client.read_stream("strict").await?.iter().map(|(_, r)| r.len()).collect();
    assert_eq!(stored, vec![0, 1], "only the one valid record was written");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_are_listed_paged_deleted_and_recreated() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(2).await?;
    for name in ["a-stream", "b-stream", "c-stream"] {
        client.create_stream(name, 5).await?;
    }
    for name in ["a-stream", "b-stream", "c-stream"] {
        let summary = client.wait_for_active(name, ACTIVE_WITHIN).await?.summary.unwrap();
        assert_eq!(summary.open_shard_count, 5);
        assert_eq!(summary.retention_period_hours, 24);
        assert_eq!(summary.stream_arn, format!("arn:aws:kinesis:us-east-1:123456789012:stream/{name}"));
    }
    let names: Vec<String> = client.list_streams().await?.into_iter().map(|s| s.stream_name).collect();
    assert_eq!(names, ["a-stream", "b-stream", "c-stream"]);

    // Paging by hand through the generated client.
    let channel = tonic_channel(&cluster.addr(3)).await?;
    let mut control = proto::stream_control_client::StreamControlClient::new(channel);
    let page = control
        .list_shards(proto::ListShardsRequest {
            stream_name: "b-stream".into(),
            max_results: 2,
            exclusive_start_shard_id: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(page.shards.len(), 2);
    assert!(page.has_more_shards);
    let rest = control
        .list_shards(proto::ListShardsRequest {
            stream_name: "b-stream".into(),
            max_results: 10,
            exclusive_start_shard_id: page.shards[1].shard_id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        rest.shards.iter().map(|s| s.shard_id.as_str()).collect::<Vec<_>>(),
        ["shardId-000000000002", "shardId-000000000003", "shardId-000000000004"]
    );
    let streams = control
        .list_streams(proto::ListStreamsRequest { limit: 2, exclusive_start_stream_name: String::new() })
        .await?
        .into_inner();
    assert_eq!(streams.streams.len(), 2);
    assert!(streams.has_more_streams);

    client.put_record("b-stream", "k", b"old".to_vec()).await?;
    let old_iterator =
        client.get_shard_iterator("b-stream", "shardId-000000000000", "TRIM_HORIZON", None, None).await?;
    client.delete_stream("b-stream").await?;
    let deadline = tokio::time::Instant::now() + ACTIVE_WITHIN;
    while client.describe_stream("b-stream").await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "deleted stream disappears");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.create_stream("b-stream", 1).await?;
    client.wait_for_active("b-stream", ACTIVE_WITHIN).await?;
    let stored: usize = client.read_stream("b-stream").await?.iter().map(|(_, r)| r.len()).sum();
    assert_eq!(stored, 0, "a re-created stream starts empty");
    let stale = client.get_records(&old_iterator, 10).await.unwrap_err();
    assert_eq!(stale.code, ErrorCode::ResourceNotFound);
    let names: HashSet<String> = client.list_streams().await?.into_iter().map(|s| s.stream_name).collect();
    assert_eq!(names.len(), 3);
    cluster.shutdown().await;
    Ok(())
}

/// The error code of a call that must fail.
fn code<T: std::fmt::Debug>(result: &Result<T, shoal_client::ShoalError>) -> ErrorCode {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error.code,
    }
}

async fn tonic_channel(addr: &str) -> anyhow::Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_one_shard_share_entries_and_keep_their_sequence_numbers() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let clients = [cluster.client(1).await?, cluster.client(2).await?, cluster.client(3).await?];
    clients[0].create_stream("coalesced", 1).await?;
    clients[0].wait_for_active("coalesced", ACTIVE_WITHIN).await?;
    // 60 calls of 5 records at once, through all three nodes, to the one shard.
    let calls = (0..60).map(|call| {
        let client = clients[call % 3].clone();
        async move {
            let records = (0..5).map(|i| record(format!("k{call}"), format!("call {call} record {i}"))).collect();
            let answer = client.put_records("coalesced", records).await?;
            anyhow::Ok((call, answer))
        }
    });
    let mut acknowledged = std::collections::HashMap::new();
    let mut shared_entries = 0;
    for outcome in futures::future::join_all(calls).await {
        let (call, answer) = outcome?;
        assert_eq!(answer.failed_record_count, 0);
        // The last 13 digits are the offset inside the Raft entry: a call that
        // starts past offset 0 shared its entry with an earlier call.
        if !answer.records[0].sequence_number.ends_with("0000000000000") {
            shared_entries += 1;
        }
        for (i, result) in answer.records.iter().enumerate() {
            let fresh = acknowledged.insert(result.sequence_number.clone(), format!("call {call} record {i}"));
            assert!(fresh.is_none(), "sequence number {} given twice", result.sequence_number);
        }
    }
    assert!(shared_entries > 0, "no call shared a Raft entry with another");
    let stored = clients[1].read_shard("coalesced", "shardId-000000000000").await?;
    assert_eq!(stored.len(), 300);
    for record in &stored {
        let data = String::from_utf8(record.data.to_vec())?;
        assert_eq!(acknowledged.get(&record.sequence_number), Some(&data), "record at {}", record.sequence_number);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_router_sends_records_to_their_leaders_and_answers_in_request_order() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let client = cluster.client(1).await?;
    client.create_stream("routed", 3).await?;
    let description = client.wait_for_active("routed", ACTIVE_WITHIN).await?;
    let router = shoal_client::LeaderRouter::discover(client.clone(), shoal_client::Dialer::plain(), "routed").await?;
    assert_eq!(router.routed_shards(), 3);
    let records: Vec<Record> = (0..90).map(|i| record(format!("key-{i}"), format!("value {i}"))).collect();
    let answer = router.put_records(records.clone()).await?;
    assert_eq!(answer.failed_record_count, 0);
    assert_eq!(answer.records.len(), 90);
    for (record, result) in records.iter().zip(&answer.records) {
        let hash = HashKey::from_partition_key(&record.partition_key).0;
        let owner = description.shards.iter().find(|s| {
            s.starting_hash_key.parse::<u128>().unwrap_or(u128::MAX) <= hash
                && hash <= s.ending_hash_key.parse::<u128>().unwrap_or(0)
        });
        assert_eq!(
            Some(&result.shard_id),
            owner.map(|s| &s.shard_id),
            "{} answered in its place",
            record.partition_key
        );
    }
    let stored: usize = client.read_stream("routed").await?.iter().map(|(_, records)| records.len()).sum();
    assert_eq!(stored, 90);
    Ok(())
}

/// `callers` router calls at once, thirty records each (caller `bad`'s all to one
/// shard, one of them over the stream's 1 MiB limit); each call's answer.
async fn concurrent_calls(
    router: &shoal_client::LeaderRouter,
    round: &str,
    callers: usize,
    bad: Option<usize>,
) -> Vec<(usize, shoal_client::ShoalResult<proto::PutRecordsResponse>)> {
    let calls = (0..callers).map(|caller| {
        let router = router.clone();
        let round = round.to_string();
        async move {
            let mut records: Vec<Record> =
                (0..30).map(|i| record(format!("{round}-{caller}-key-{i}"), format!("{round}/{caller}/{i}"))).collect();
            if Some(caller) == bad {
                for record in &mut records {
                    record.explicit_hash_key = Some("0".into());
                }
                records[7].data = vec![0; 2 * 1024 * 1024].into();
            }
            (caller, router.put_records(records).await)
        }
    });
    let spawned: Vec<_> = calls.map(tokio::spawn).collect();
    let mut answers = Vec::new();
    for call in spawned {
        answers.push(call.await.expect("a caller panicked"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_router_calls_share_calls_to_a_leader_and_each_caller_gets_its_own_answer() -> anyhow::Result<()> {
    // A group per shard: three leaders, so that calls split into parts.
    let cluster = TestCluster::start_with(3, |config| config.shards_per_group = 1).await?;
    let client = cluster.client(1).await?;
    client.create_stream("collected", 3).await?;
    client.wait_for_active("collected", ACTIVE_WITHIN).await?;
    let router =
        shoal_client::LeaderRouter::discover(client.clone(), shoal_client::Dialer::plain(), "collected").await?;
    assert_eq!(router.routed_shards(), 3);
    // Forty callers at once: each call splits into up to three parts, one per
    // leader; with at most four calls in flight to a node, parts that meet go as one.
    for (caller, answer) in concurrent_calls(&router, "first", 40, None).await {
        let answer = answer?;
        assert_eq!(answer.failed_record_count, 0);
        assert_eq!(answer.records.len(), 30, "caller {caller} gets one result per record");
        assert!(answer.records.iter().all(|r| !r.shard_id.is_empty() && !r.sequence_number.is_empty()));
    }
    assert!(router.calls_sent() <= 60, "{} calls for 40 callers' parts (up to 120)", router.calls_sent());
    // Again, with one caller whose records all go to one shard and one of which
    // is over the stream's limit: the leader refuses that caller's part, and only
    // that caller's, even when it was collected with others.
    let mut written = 40 * 30;
    for (caller, answer) in concurrent_calls(&router, "second", 20, Some(7)).await {
        if caller == 7 {
            let error = answer.expect_err("a record over 1 MiB is refused");
            assert_eq!(error.code, ErrorCode::Validation, "{error:?}");
            assert!(error.message.contains("records.8.member.data"), "the caller's own index: {}", error.message);
            continue;
        }
        let answer = answer?;
        assert_eq!((answer.failed_record_count, answer.records.len()), (0, 30), "caller {caller}");
        written += 30;
    }
    let stored: Vec<String> = client
        .read_stream("collected")
        .await?
        .into_iter()
        .flat_map(|(_, records)| records.into_iter().map(|r| String::from_utf8_lossy(&r.data).into_owned()))
        .collect();
    assert_eq!(stored.len(), written, "every acknowledged record stored once, the refused caller's none");
    assert!(!stored.iter().any(|data| data.starts_with("second/7/")));
    // A call the router can see is bad (an empty partition key) is refused whole,
    // before any of its parts leaves: nothing more is stored.
    let mut records: Vec<Record> = (0..30).map(|i| record(format!("late-{i}"), "x")).collect();
    records[4].partition_key.clear();
    let error = router.put_records(records).await.expect_err("an empty partition key is refused");
    assert_eq!(error.code, ErrorCode::Validation);
    assert!(error.message.contains("records.5.member.partitionKey"), "{}", error.message);
    let stored_after: usize = client.read_stream("collected").await?.iter().map(|(_, records)| records.len()).sum();
    assert_eq!(stored_after, written);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_on_a_node_that_does_not_lead_the_shard_is_pushed_records_by_the_leader() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3).await?;
    let entry = cluster.client(1).await?;
    entry.create_stream("pushed", 1).await?;
    let shard_id = entry.wait_for_active("pushed", ACTIVE_WITHIN).await?.shards[0].shard_id.clone();
    let stream = cluster.stream(1, "pushed").await?;
    let leader = cluster.shard_leader(&stream, 0).expect("the shard has a leader");
    let follower = cluster.node_ids().into_iter().find(|&id| id != leader).expect("three nodes");
    // The follower's replica hears nothing more from the leader: served there, the
    // subscription would only see new records when it polls (once a second).
    cluster.faults.block(leader, follower);
    let mut events = cluster.client(follower).await?.subscribe_to_shard("pushed", &shard_id, "LATEST", None).await?;
    let writer = cluster.client(leader).await?;
    for i in 0..5 {
        let data = format!("pushed {i}");
        writer.put_record("pushed", "key", data.clone().into_bytes()).await?;
        let acknowledged = tokio::time::Instant::now();
        let record = loop {
            let event = tokio::time::timeout(Duration::from_secs(5), events.message()).await??;
            let event = event.ok_or_else(|| anyhow::anyhow!("the subscription ended"))?;
            if let Some(record) = event.records.into_iter().next() {
                break record;
            }
        };
        assert_eq!(record.data, data.as_bytes());
        // Well under the poll interval: the leader pushed it when it applied it.
        assert!(acknowledged.elapsed() < Duration::from_millis(400), "record {i} took {:?}", acknowledged.elapsed());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    drop(events);
    cluster.heal();
    cluster.shutdown().await;
    Ok(())
}

/// The SETTINGS frame a node sends first on a new HTTP/2 connection, as
/// `(identifier, value)` pairs.
async fn server_http2_settings(addr: &str) -> anyhow::Result<Vec<(u16, u32)>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    // The client preface, then an empty SETTINGS frame.
    socket.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
    socket.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await?;
    let mut header = [0u8; 9];
    socket.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    anyhow::ensure!(header[3] == 4, "the server's first frame is of type {}, not SETTINGS", header[3]);
    let mut payload = vec![0u8; length];
    socket.read_exact(&mut payload).await?;
    Ok(payload
        .chunks_exact(6)
        .map(|s| (u16::from_be_bytes([s[0], s[1]]), u32::from_be_bytes([s[2], s[3], s[4], s[5]])))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_take_http2_frames_of_a_mebibyte_and_large_calls_round_trip() -> anyhow::Result<()> {
    const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
    let cluster = TestCluster::start(3).await?;
    // Every node tells its peers and clients to send messages in frames of up to a
    // MiB (HTTP/2's default is 16 KiB: a frame per `writev`).
    for id in cluster.node_ids() {
        let settings = server_http2_settings(&cluster.addr(id)).await?;
        assert!(
            settings.contains(&(SETTINGS_MAX_FRAME_SIZE, shoal_tls::dialer::MAX_FRAME_BYTES)),
            "node {id} sent SETTINGS {settings:?}"
        );
    }
    // A call bigger than a frame of either size: six records of 200 KiB, one per
    // shard (within each shard's 1 MiB/s), read back through another node.
    let (writer, reader) = (cluster.client(1).await?, cluster.client(2).await?);
    writer.create_stream("large", 6).await?;
    writer.wait_for_active("large", ACTIVE_WITHIN).await?;
    let records: Vec<Record> = (0..6u8)
        .map(|i| Record {
            data: vec![i; 200 * 1024].into(),
            partition_key: format!("key-{i}"),
            explicit_hash_key: Some((u128::MAX / 6 * u128::from(i) + 1).to_string()),
        })
        .collect();
    let put = writer.put_records("large", records).await?;
    assert_eq!(put.failed_record_count, 0);
    let read = reader.read_stream("large").await?;
    let mut seen: Vec<u8> = read.iter().flat_map(|(_, records)| records.iter().map(|r| r.data[0])).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..6u8).collect::<Vec<_>>(), "every large record is read back once");
    for (_, records) in &read {
        for record in records {
            assert_eq!(record.data, vec![record.data[0]; 200 * 1024], "a large record is read back whole");
        }
    }
    cluster.shutdown().await;
    Ok(())
}
