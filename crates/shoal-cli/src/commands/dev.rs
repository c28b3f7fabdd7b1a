//! `shoal dev`: a three-node, three-zone cluster in one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shoal_node::{NodeConfig, PeerConfig, RaftTiming};
use shoal_raft::NetworkFaults;

use crate::cli::DevArgs;

const ZONES: [&str; 3] = ["az-a", "az-b", "az-c"];

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let temp_dir;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp_dir = tempfile::Builder::new().prefix("shoal-dev-").tempdir()?;
            temp_dir.path().to_path_buf()
        }
    };
    let metrics = super::metrics::install()?;
    let ports: Vec<u16> = (0..3).map(|i| args.port + i).collect();
    let peers: Vec<PeerConfig> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| PeerConfig { id: i as u64 + 1, zone: ZONES[i].into(), addr: format!("{}:{port}", args.host) })
        .collect();
    let faults = Arc::new(NetworkFaults::default());
    let tls = match &args.tls_dir {
        Some(dir) => Some(dev_certificates(dir, &args.host)?),
        None => None,
    };
    let credentials: Vec<shoal_node::AwsCredential> =
        args.aws_credentials.iter().map(|c| super::node::parse_credential(c)).collect::<anyhow::Result<_>>()?;
    let mut nodes = Vec::new();
    // One directory for the buckets of all three nodes' workers.
    let mut firehose =
        shoal_firehose::FirehoseConfig { local_dir: Some(data_dir.join("firehose")), ..Default::default() };
    args.firehose.apply(&mut firehose)?;
    let mut aws_tasks = Vec::new();
    let mut workers = Vec::new();
    for peer in &peers {
        let listener =
            tokio::net::TcpListener::bind(&peer.addr).await.with_context(|| format!("binding {}", peer.addr))?;
        let config = NodeConfig {
            id: peer.id,
            zone: peer.zone.clone(),
            listen: peer.addr.clone(),
            advertise: Some(peer.addr.clone()),
            data_dir: data_dir.join(format!("node-{}", peer.id)),
            direct_io: shoal_node::DirectIo::Set(false),
            shards_per_group: shoal_node::config::DEFAULT_SHARDS_PER_GROUP,
            peers: peers.clone(),
            raft: RaftTiming { heartbeat_millis: 100, election_timeout_millis: 800, ..Default::default() },
            aws_listen: aws_addr(&args, peer.id),
            aws_credentials: credentials.clone(),
            shard_iterator_ttl_millis: args.iterator_ttl_millis,
            limits: if args.enforce_limits {
                shoal_node::ThroughputLimits::default()
            } else {
                shoal_node::ThroughputLimits::off()
            },
            retention_check_secs: 30,
            retention_hour_millis: 3_600_000,
            autoscaler: Default::default(),
            tls: match &args.tls_dir {
                Some(dir) => shoal_tls::TlsConfig {
                    cert: Some(dir.join(format!("node-{}.pem", peer.id))),
                    key: Some(dir.join(format!("node-{}-key.pem", peer.id))),
                    ca: Some(dir.join("ca.pem")),
                    require_client_cert: false,
                },
                None => Default::default(),
            },
            firehose: firehose.clone(),
        };
        let node = shoal_node::start(listener, config.clone(), faults.clone()).await?;
        if let Some(task) = super::aws::start(&node, &config.aws_listen).await? {
            aws_tasks.push(task);
        }
        workers.extend(super::firehose::start(&node));
        nodes.push(node);
    }
    let dialer = tls.clone().unwrap_or_default();
    let client = shoal_client::ShoalClient::connect_with(&peers[0].addr, &dialer).await?;
    client.list_streams().await.context("cluster did not become ready")?;
    super::metrics::serve(&args.metrics_addr, metrics, nodes.iter().map(|n| n.node.clone()).collect()).await?;
    println!("shoal dev: 3 nodes in zones az-a, az-b, az-c, ready in {:?}", started.elapsed());
    for peer in &peers {
        let aws = aws_addr(&args, peer.id);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let aws = if aws.is_empty() { String::new() } else { format!("  AWS Kinesis API {scheme}://{aws}") };
        println!("  node {} ({}) gRPC {}{aws}", peer.id, peer.zone, peer.addr);
    }
    if !args.metrics_addr.is_empty() {
        println!("  metrics  http://{}/metrics", args.metrics_addr);
    }
    println!("  data     {}", data_dir.display());
    match (&args.firehose.firehose_s3_endpoint, &args.firehose.firehose_local_dir) {
        (Some(endpoint), _) => println!("  firehose delivers to S3 at {endpoint}"),
        (None, Some(dir)) => println!("  firehose delivers to {}/BUCKET", dir.display()),
        (None, None) => println!("  firehose delivers to {}/BUCKET", data_dir.join("firehose").display()),
    }
    if let Some(dir) = &args.tls_dir {
        println!("  TLS on   clients: export SHOAL_TLS_CA={}", dir.join("ca.pem").display());
    }
    println!("try: shoal stream create demo --shards 2 && seq 1 5 | shoal put demo && shoal get demo");
    super::shutdown_signal().await;
    eprintln!("shoal dev: stopping");
    for worker in workers {
        worker.stop().await;
    }
    for task in aws_tasks {
        task.abort();
    }
    for node in nodes {
        let _ = tokio::time::timeout(Duration::from_secs(5), node.stop()).await;
    }
    Ok(())
}

/// Certificates for the three dev nodes in `dir` (made if absent), and how a
/// client of them dials: trusting the CA and presenting the client certificate.
fn dev_certificates(dir: &std::path::Path, host: &str) -> anyhow::Result<shoal_client::Dialer> {
    if !dir.join("ca.pem").exists() {
        let nodes: Vec<String> = (1..=3).map(|id| format!("node-{id}")).collect();
        shoal_tls::generate::write_cluster(dir, &nodes, &[host.to_string()])
            .with_context(|| format!("writing dev certificates to {}", dir.display()))?;
    }
    Ok(shoal_client::Dialer::from_files(
        Some(&dir.join("ca.pem")),
        Some(&dir.join("client.pem")),
        Some(&dir.join("client-key.pem")),
    )?)
}

/// The AWS API address of dev node `id` (1-based), or empty when disabled.
fn aws_addr(args: &DevArgs, id: u64) -> String {
    if args.aws_port == 0 { String::new() } else { format!("{}:{}", args.host, args.aws_port + id as u16 - 1) }
}
