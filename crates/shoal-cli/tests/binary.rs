//! The real binary: `shoal dev` started as a process and driven by the CLI.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// A `shoal dev` process, killed when dropped.
struct DevCluster {
    child: Child,
    endpoint: String,
    _data: tempfile::TempDir,
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port_block() -> u16 {
    // Three consecutive free ports: bind them, note the first, release them.
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port > 65000 {
            continue;
        }
        let second = std::net::TcpListener::bind(("127.0.0.1", port + 1));
        let third = std::net::TcpListener::bind(("127.0.0.1", port + 2));
        if second.is_ok() && third.is_ok() {
            return port;
        }
    }
}

fn start_dev() -> DevCluster {
    start_dev_with_metrics("")
}

fn start_dev_with_metrics(metrics_addr: &str) -> DevCluster {
    start_dev_with(&[], metrics_addr)
}

/// `shoal [global] dev …`: `global` are flags before the command.
fn start_dev_with(global: &[&str], metrics_addr: &str) -> DevCluster {
    let data = tempfile::tempdir().unwrap();
    let port = free_port_block();
    let mut child = Command::new(SHOAL)
        .args(global)
        .args(["dev", "--port", &port.to_string(), "--metrics-addr", metrics_addr, "--aws-port", "0"])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("shoal dev starts");
    // Wait for the "ready" line.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let started = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(read > 0, "shoal dev exited before it was ready");
        if line.contains("ready in") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "shoal dev never said it was ready");
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    DevCluster { child, endpoint: format!("127.0.0.1:{port}"), _data: data }
}

fn shoal(cluster: &DevCluster, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(SHOAL)
        .args(args)
        .env("SHOAL_ENDPOINT", &cluster.endpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "command failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn dev_cluster_serves_the_cli_end_to_end() {
    let cluster = start_dev();
    let created = stdout(&shoal(&cluster, &["stream", "create", "demo", "--shards", "3"], None));
    assert!(created.contains("ACTIVE"), "{created}");

    let lines: String = (1..=250).map(|i| format!("line {i}\n")).collect();
    let put = shoal(&cluster, &["put", "demo"], Some(&lines));
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    assert!(String::from_utf8_lossy(&put.stderr).contains("put 250 record(s)"));

    let keyed = shoal(&cluster, &["put", "demo", "--key-separator", ","], Some("user-1,hello\nuser-1,world\n"));
    assert!(keyed.status.success());

    let got = stdout(&shoal(&cluster, &["get", "demo"], None));
    let mut got: Vec<&str> = got.lines().collect();
    assert_eq!(got.len(), 252);
    got.sort();
    assert!(got.contains(&"line 1") && got.contains(&"line 250") && got.contains(&"hello"));

    // Records with one key keep their order within the shard.
    let verbose = stdout(&shoal(&cluster, &["get", "demo", "--verbose"], None));
    let user: Vec<&str> =
        verbose.lines().filter(|l| l.contains("\tuser-1\t")).map(|l| l.rsplit('\t').next().unwrap()).collect();
    assert_eq!(user, ["hello", "world"]);

    let listed = stdout(&shoal(&cluster, &["stream", "list"], None));
    assert!(listed.contains("demo\tACTIVE\t3 shard(s)"), "{listed}");
    let described = stdout(&shoal(&cluster, &["stream", "describe", "demo"], None));
    assert!(described.contains("shardId-000000000002"));
    let status = stdout(&shoal(&cluster, &["cluster", "status"], None));
    for zone in ["az-a", "az-b", "az-c"] {
        assert!(status.contains(zone), "{status}");
    }
    assert_eq!(status.lines().filter(|l| l.contains("\tdemo\tshardId-")).count(), 3);

    let missing = shoal(&cluster, &["get", "nope"], None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ResourceNotFoundException"));

    let split = stdout(&shoal(&cluster, &["stream", "split", "demo", "shardId-000000000000"], None));
    assert!(split.contains("split at hash key"), "{split}");
    let scaled = stdout(&shoal(&cluster, &["stream", "scale", "demo", "--shards", "3"], None));
    assert!(scaled.contains("scaled from 4 to 3"), "{scaled}");
    let listed = stdout(&shoal(&cluster, &["stream", "list"], None));
    assert!(listed.contains("demo\tACTIVE\t3 shard(s)"), "{listed}");
    assert_eq!(stdout(&shoal(&cluster, &["get", "demo"], None)).lines().count(), 252, "resharding loses nothing");

    let deleted = stdout(&shoal(&cluster, &["stream", "delete", "demo"], None));
    assert!(deleted.contains("being deleted"));

    let elastic = stdout(&shoal(&cluster, &["stream", "create", "elastic", "--on-demand"], None));
    assert!(elastic.contains("ACTIVE with 4 shard(s), ON_DEMAND"), "{elastic}");
    let refused = shoal(&cluster, &["stream", "scale", "elastic", "--shards", "8"], None);
    assert!(!refused.status.success(), "ON_DEMAND streams are not scaled by hand");
    let switched = stdout(&shoal(&cluster, &["stream", "mode", "elastic", "PROVISIONED"], None));
    assert!(switched.contains("elastic is now PROVISIONED"), "{switched}");
    let scaled = stdout(&shoal(&cluster, &["stream", "scale", "elastic", "--shards", "8"], None));
    assert!(scaled.contains("scaled from 4 to 8"), "{scaled}");
    let drained = shoal(&cluster, &["cluster", "drain", "--id", "9"], None);
    assert!(String::from_utf8_lossy(&drained.stderr).contains("not a member"), "unknown nodes are refused");
}

#[test]
fn tail_follows_new_records() {
    let cluster = start_dev();
    stdout(&shoal(&cluster, &["stream", "create", "live"], None));
    let mut tail = Command::new(SHOAL)
        .args(["tail", "live"])
        .env("SHOAL_ENDPOINT", &cluster.endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    stdout(&shoal(&cluster, &["put", "live"], Some("first\nsecond\n")));
    let mut reader = std::io::BufReader::new(tail.stdout.take().unwrap());
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        seen.push(line.trim().to_string());
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(seen, ["first", "second"]);
}

#[test]
fn a_consumer_member_prints_records_and_checkpoints() {
    let cluster = start_dev();
    stdout(&shoal(&cluster, &["stream", "create", "jobs", "--shards", "2"], None));
    stdout(&shoal(&cluster, &["put", "jobs"], Some("one\ntwo\nthree\n")));
    let mut member = Command::new(SHOAL)
        .args(["consumer", "run", "jobs", "--application", "workers", "--member", "m1"])
        .env("SHOAL_ENDPOINT", &cluster.endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(member.stdout.take().unwrap());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        seen.push(line.trim().to_string());
    }
    seen.sort();
    assert_eq!(seen, ["one", "three", "two"]);
    std::thread::sleep(Duration::from_millis(500));
    let described = stdout(&shoal(&cluster, &["consumer", "describe", "jobs", "--application", "workers"], None));
    let _ = member.kill();
    let _ = member.wait();
    assert!(described.contains("m1\tshardId-000000000000,shardId-000000000001"), "{described}");
    assert_eq!(
        described.lines().filter(|l| l.contains("\tm1\t") && l.ends_with("\tleased\t0\t0")).count(),
        2,
        "{described}"
    );
}

/// A plain HTTP GET: `(status code, body)`.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn metrics_and_probes_answer() {
    let metrics = format!("127.0.0.1:{}", free_port_block());
    let cluster = start_dev_with_metrics(&metrics);
    assert_eq!(http_get(&metrics, "/health").0, 200);
    // Ready once every node has heard from the metadata leader (503 until then).
    let started = Instant::now();
    loop {
        match http_get(&metrics, "/ready") {
            (200, body) => {
                assert_eq!(body, "ready\n");
                break;
            }
            (503, body) => assert!(body.contains("metadata leader"), "{body}"),
            other => panic!("unexpected /ready answer {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    stdout(&shoal(&cluster, &["stream", "create", "measured"], None));
    stdout(&shoal(&cluster, &["put", "measured"], Some("a\nb\nc\n")));
    stdout(&shoal(&cluster, &["get", "measured"], None));
    assert_serves(
        &metrics,
        "/metrics",
        &[
            "shoal_shard_incoming_records_total{stream=\"measured\",shard=\"shardId-000000000000\"} 3",
            "shoal_shard_outgoing_records_total{stream=\"measured\",shard=\"shardId-000000000000\"} 3",
            "shoal_shard_iterator_age_milliseconds{stream=\"measured\"",
            "shoal_put_records_seconds",
            "shoal_wal_sync_seconds",
            "shoal_rocksdb_memtable_bytes{node=\"1\"}",
            "shoal_rocksdb_level0_files{node=\"3\"}",
            "shoal_rocksdb_write_stopped{node=\"2\"} 0",
            "shoal_decoded_entries_bytes{node=\"1\"}",
        ],
    );
    // RocksDB's own report, for each node: flushes, compactions and stalls.
    assert_serves(
        &metrics,
        "/debug/rocksdb",
        &[
            "node 1\n",
            "node 3\n",
            "** DB Stats **",
            "Cumulative stall",
            "column family records\n",
            "** Compaction Stats [records] **",
        ],
    );
    // Where a write's time went: openraft's per-stage latencies of every group a
    // node of this process leads, the shard's group among them — or, in a build
    // without the `raft-stats` feature, how to get them.
    let expected: &[&str] = if cfg!(feature = "raft-stats") {
        &["\"measured\", \"shardId-000000000000\"", "Log Stage Latencies", "submitted→persisted", "ClientWrite"]
    } else {
        &["--features raft-stats"]
    };
    assert_serves(&metrics, "/debug/raft", expected);
}

/// Asserts that `path` on the metrics address answers 200 with every one of `parts`.
fn assert_serves(addr: &str, path: &str, parts: &[&str]) {
    let (status, body) = http_get(addr, path);
    assert_eq!(status, 200, "{path}:\n{body}");
    for part in parts {
        assert!(body.contains(part), "{part} missing from {path}:\n{body}");
    }
}

#[test]
fn bench_runs_briefly_and_writes_its_results() {
    let cluster = start_dev();
    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("bench.json");
    let plot = out.path().join("latency.svg");
    let output = shoal(
        &cluster,
        &[
            "bench",
            "--shards",
            "2",
            "--rate",
            "400",
            "--batch",
            "10",
            "--producers",
            "2",
            "--duration-secs",
            "2",
            "--warmup-secs",
            "0",
            "--record-bytes",
            "64",
            "-o",
            results.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
            "--shoal-pids",
            &cluster.child.id().to_string(),
            "--settle-secs",
            "10",
        ],
        None,
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json = std::fs::read_to_string(&results).unwrap();
    assert!(json.contains("\"system\": \"shoal\""), "{json}");
    assert!(json.contains("\"records_per_sec\""), "{json}");
    // How late the client sent is measured for every call it measured.
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let run = &parsed[0];
    assert!(run["publish_ms"]["count"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(run["late_ms"]["count"], run["publish_ms"]["count"], "{json}");
    assert!(run["late_ms"]["p99"].as_f64().unwrap() <= run["publish_ms"]["max"].as_f64().unwrap(), "{json}");
    // The CPU of the cluster's process (given by pid) and of the benchmark itself.
    assert!(run["cpu"]["server_cores"].as_f64().unwrap() > 0.0, "{json}");
    assert!(run["cpu"]["client_cores"].as_f64().unwrap() > 0.0, "{json}");
    assert!(stdout(&output).contains("records/s"));
    assert!(stdout(&output).contains("late p99"));
    assert!(stdout(&output).contains("srv cores"));
    // How long the machine was stalled on I/O (null where the kernel does not say).
    assert!(run.get("io_stall_s").is_some(), "{json}");
    assert!(stdout(&output).contains("io stall s"));
    // Where the kernel says, the calls that met no I/O stall are a subset of all calls,
    // and the stall is given per second of the window.
    if run["io_stall_s"].is_number() {
        let clear = run["publish_clear_ms"]["count"].as_u64().unwrap();
        assert!(clear <= run["publish_ms"]["count"].as_u64().unwrap(), "{json}");
        assert_eq!(run["io_stall_per_second_ms"].as_array().unwrap().len(), 2, "{json}");
        let clear = run["end_to_end_clear_ms"]["count"].as_u64().unwrap();
        assert!(clear <= run["end_to_end_ms"]["count"].as_u64().unwrap(), "{json}");
    }
    assert!(stdout(&output).contains("p99 clear") && stdout(&output).contains("e2e clear"));
    // The plot has the run's panel and its three lines, with points in them.
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert!(svg.contains("shoal · "), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
    assert!(!svg.contains("points=\"\""), "every line has points: {svg}");
}

#[test]
fn a_cluster_started_with_the_worker_threads_flag_serves_and_zero_threads_is_refused() {
    let cluster = start_dev_with(&["--worker-threads", "1"], "");
    stdout(&shoal(&cluster, &["stream", "create", "single", "--shards", "2"], None));
    stdout(&shoal(&cluster, &["put", "single"], Some("one\ntwo\nthree\n")));
    let got = stdout(&shoal(&cluster, &["get", "single"], None));
    let mut lines: Vec<&str> = got.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["one", "three", "two"]);

    let refused = Command::new(SHOAL).args(["--worker-threads", "0", "dev"]).output().unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("--worker-threads"), "{message}");
}

#[test]
fn help_explains_every_command() {
    let output = Command::new(SHOAL).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["node", "dev", "stream", "put", "get", "tail", "cluster", "consumer", "bench"] {
        assert!(help.contains(command), "{help}");
    }
}
