//! The real Rust AWS SDK (`aws-sdk-kinesis`) as a client of a running `shoal dev` cluster.
//!
//! The test starts the Shoal binary (env `SHOAL_BIN`, default `/var/tmp/shoal-target/debug/shoal`)
//! as a child process, talks plain HTTP to its AWS-compatible API and kills it at the end.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

const DEFAULT_SHOAL_BIN: &str = "/var/tmp/shoal-target/debug/shoal";
const STREAM: &str = "rust-sdk";
const SHARD_COUNT: i32 = 2;
const RECORD_COUNT: usize = 20;
/// Kinesis sequence numbers are decimal strings of 56 digits.
const SEQUENCE_NUMBER_DIGITS: usize = 56;

/// A `shoal dev` cluster (three nodes in one process) running as a child process.
///
/// Dropping it kills the process; its log (stderr) is printed if the test is panicking.
struct ShoalDev {
    child: Child,
    aws_port: u16,
    log_path: PathBuf,
    _data_dir: tempfile::TempDir,
}

impl ShoalDev {
    async fn start() -> Self {
        let bin = std::env::var("SHOAL_BIN").unwrap_or_else(|_| DEFAULT_SHOAL_BIN.to_string());
        let grpc_port = first_of_three_free_ports(&[]);
        let aws_port = first_of_three_free_ports(&[grpc_port, grpc_port + 1, grpc_port + 2]);
        let data_dir = tempfile::tempdir().expect("create a temporary data directory");
        let log_path = data_dir.path().join("shoal-dev.log");
        let log = std::fs::File::create(&log_path).expect("create the server log file");

        let mut child = Command::new(&bin)
            .arg("dev")
            .args(["--port", &grpc_port.to_string()])
            .args(["--aws-port", &aws_port.to_string()])
            .args(["--metrics-addr", ""])
            .arg("--data-dir")
            .arg(data_dir.path().join("cluster"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin} (set SHOAL_BIN to the shoal binary): {e}"));
        let stdout = child.stdout.take().expect("child stdout is piped");
        let dev = ShoalDev { child, aws_port, log_path, _data_dir: data_dir };

        tokio::time::timeout(Duration::from_secs(60), wait_until_ready(stdout))
            .await
            .expect("shoal dev did not print \"ready in\" within 60 s");
        dev
    }

    /// The AWS API endpoint of node `node` (1, 2 or 3).
    fn aws_endpoint(&self, node: u16) -> String {
        assert!((1..=3).contains(&node), "shoal dev has nodes 1 to 3, not {node}");
        format!("http://127.0.0.1:{}", self.aws_port + node - 1)
    }
}

impl Drop for ShoalDev {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Reap the killed server before the data directory is removed.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of the shoal dev log ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Reads the server's stdout until its "ready in" line, then keeps draining it in the background.
async fn wait_until_ready(stdout: ChildStdout) {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next_line().await.expect("read shoal dev stdout");
        let line = line.expect("shoal dev exited before it was ready (see its log)");
        if line.contains("ready in") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}

/// The first of three consecutive ports on 127.0.0.1 that can be bound now, none of them in `avoid`.
fn first_of_three_free_ports(avoid: &[u16]) -> u16 {
    for _ in 0..100 {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
        let first = probe.local_addr().expect("local address of the probe").port();
        drop(probe);
        let Some(last) = first.checked_add(2) else { continue };
        let ports: Vec<u16> = (first..=last).collect();
        if ports.iter().any(|p| avoid.contains(p)) {
            continue;
        }
        let held: Vec<_> = ports.iter().filter_map(|&p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).ok()).collect();
        if held.len() == 3 {
            return first;
        }
    }
    panic!("found no three consecutive free ports on 127.0.0.1");
}

/// An SDK client of one node, configured as a Kinesis user would, over plain HTTP.
fn kinesis_client(endpoint: &str) -> Client {
    let http_client = aws_smithy_http_client::Builder::new().build_http();
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(http_client)
        .build();
    Client::from_conf(config)
}

async fn wait_until_stream_active(client: &Client, stream: &str) -> i32 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = client.describe_stream_summary().stream_name(stream).send().await.expect("DescribeStreamSummary");
        let summary = out.stream_description_summary().expect("DescribeStreamSummary has a StreamDescriptionSummary");
        if *summary.stream_status() == StreamStatus::Active {
            return summary.open_shard_count();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stream {stream} is still {:?} after 10 s",
            summary.stream_status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_sequence_number(sequence_number: &str) {
    assert!(
        sequence_number.len() == SEQUENCE_NUMBER_DIGITS && sequence_number.bytes().all(|b| b.is_ascii_digit()),
        "sequence number {sequence_number:?} is not {SEQUENCE_NUMBER_DIGITS} decimal digits"
    );
}

/// Compares two Kinesis sequence numbers (decimal strings) numerically.
fn sequence_number_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

async fn shard_ids(client: &Client, stream: &str) -> Vec<String> {
    let out = client.list_shards().stream_name(stream).send().await.expect("ListShards");
    assert!(out.next_token().is_none(), "ListShards paginated a {SHARD_COUNT}-shard stream");
    out.shards().iter().map(|shard| shard.shard_id().to_string()).collect()
}

async fn shard_iterator(
    client: &Client,
    stream: &str,
    shard_id: &str,
    kind: ShardIteratorType,
    at: Option<&str>,
) -> String {
    let out = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(kind.clone())
        .set_starting_sequence_number(at.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetShardIterator {kind:?} on {shard_id}: {e:?}"));
    out.shard_iterator().expect("GetShardIterator returns a ShardIterator").to_string()
}

/// All records of a shard from TRIM_HORIZON, as (sequence number, data), in the order GetRecords returns them.
async fn read_whole_shard(client: &Client, stream: &str, shard_id: &str) -> Vec<(String, String)> {
    let mut iterator = shard_iterator(client, stream, shard_id, ShardIteratorType::TrimHorizon, None).await;
    let mut records = Vec::new();
    for _ in 0..50 {
        let out = client
            .get_records()
            .shard_iterator(&iterator)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetRecords on {shard_id}: {e:?}"));
        for record in out.records() {
            let data = String::from_utf8(record.data().as_ref().to_vec()).expect("record data is UTF-8");
            records.push((record.sequence_number().to_string(), data));
        }
        // An open shard always hands out a next iterator; stop once a read is empty and caught up.
        let caught_up = out.records().is_empty() && out.millis_behind_latest() == Some(0);
        match out.next_shard_iterator() {
            Some(next) if !caught_up => iterator = next.to_string(),
            _ => return records,
        }
    }
    panic!("GetRecords on {shard_id} did not catch up within 50 calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_for_rust_drives_shoal_dev() {
    let shoal = ShoalDev::start().await;
    let node1 = kinesis_client(&shoal.aws_endpoint(1));
    let node2 = kinesis_client(&shoal.aws_endpoint(2));

    // 1. CreateStream, then DescribeStreamSummary until ACTIVE.
    node1.create_stream().stream_name(STREAM).shard_count(SHARD_COUNT).send().await.expect("CreateStream");
    let open_shards = wait_until_stream_active(&node1, STREAM).await;
    assert_eq!(open_shards, SHARD_COUNT, "open shard count of a new {SHARD_COUNT}-shard stream");

    // 2. PutRecords.
    let entries: Vec<PutRecordsRequestEntry> = (0..RECORD_COUNT)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(format!("record-{i}")))
                .partition_key(format!("key-{i}"))
                .build()
                .expect("a PutRecords entry with data and a partition key")
        })
        .collect();
    let put = node1.put_records().stream_name(STREAM).set_records(Some(entries)).send().await.expect("PutRecords");
    assert_eq!(put.failed_record_count(), Some(0), "PutRecords failures: {:?}", put.records());
    assert_eq!(put.records().len(), RECORD_COUNT);
    for entry in put.records() {
        assert!(entry.shard_id().is_some_and(|id| !id.is_empty()), "PutRecords entry without a shard id: {entry:?}");
        assert_sequence_number(entry.sequence_number().expect("PutRecords entry has a sequence number"));
    }

    // 3. Read every shard from TRIM_HORIZON through another node.
    let shards = shard_ids(&node1, STREAM).await;
    assert_eq!(shards.len(), SHARD_COUNT as usize, "ListShards: {shards:?}");
    let mut payloads_per_shard = BTreeMap::new();
    for shard_id in &shards {
        let records = read_whole_shard(&node2, STREAM, shard_id).await;
        for pair in records.windows(2) {
            assert!(
                sequence_number_order(&pair[0].0, &pair[1].0).is_lt(),
                "sequence numbers do not increase in {shard_id}: {} then {}",
                pair[0].0,
                pair[1].0
            );
        }
        payloads_per_shard.insert(shard_id.clone(), records.into_iter().map(|(_, data)| data).collect::<Vec<_>>());
    }
    let mut payloads: Vec<String> = payloads_per_shard.values().flatten().cloned().collect();
    payloads.sort();
    let mut expected: Vec<String> = (0..RECORD_COUNT).map(|i| format!("record-{i}")).collect();
    expected.sort();
    assert_eq!(payloads, expected, "every record exactly once across shards: {payloads_per_shard:?}");

    // 4. PutRecord, then AT_SEQUENCE_NUMBER starts at that record.
    let single = node1
        .put_record()
        .stream_name(STREAM)
        .data(Blob::new("single"))
        .partition_key("single-key")
        .send()
        .await
        .expect("PutRecord");
    assert_sequence_number(single.sequence_number());
    let iterator = shard_iterator(
        &node2,
        STREAM,
        single.shard_id(),
        ShardIteratorType::AtSequenceNumber,
        Some(single.sequence_number()),
    )
    .await;
    let read = node2.get_records().shard_iterator(iterator).send().await.expect("GetRecords at the sequence number");
    let first = read.records().first().expect("GetRecords AT_SEQUENCE_NUMBER returns the record put");
    assert_eq!(first.sequence_number(), single.sequence_number());
    assert_eq!(first.data().as_ref(), b"single");
    assert_eq!(first.partition_key(), Some("single-key"));

    // 5. Modeled errors.
    let missing = node1
        .describe_stream()
        .stream_name("no-such-stream")
        .send()
        .await
        .expect_err("DescribeStream of a missing stream must fail");
    let missing = missing.into_service_error();
    assert!(missing.is_resource_not_found_exception(), "expected ResourceNotFoundException, got {missing:?}");
    let duplicate = node1
        .create_stream()
        .stream_name(STREAM)
        .shard_count(SHARD_COUNT)
        .send()
        .await
        .expect_err("CreateStream of an existing stream must fail");
    let duplicate = duplicate.into_service_error();
    assert!(duplicate.is_resource_in_use_exception(), "expected ResourceInUseException, got {duplicate:?}");

    // 6. ListStreams, DeleteStream.
    let listed = node1.list_streams().send().await.expect("ListStreams");
    assert!(listed.stream_names().iter().any(|name| name == STREAM), "ListStreams: {:?}", listed.stream_names());
    node1.delete_stream().stream_name(STREAM).send().await.expect("DeleteStream");
}
