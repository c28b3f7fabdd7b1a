//! Command-line interface definition.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Shoal: a self-hosted, Kinesis-compatible streaming data platform.
///
/// Start a three-zone cluster on this machine with `shoal dev`, then create a
/// stream, put records and read them back:
///
///   shoal stream create orders --shards 2
///   seq 1 10 | shoal put orders
///   shoal get orders
#[derive(Debug, Parser)]
#[command(name = "shoal", version, propagate_version = true)]
pub struct Cli {
    /// Log format of servers and clients: `human` or `json`. Filter with RUST_LOG.
    #[arg(long, global = true, env = "SHOAL_LOG_FORMAT", default_value = "human")]
    pub log_format: String,

    /// gRPC address of any node of the cluster (for client commands).
    #[arg(long, short = 'e', global = true, env = "SHOAL_ENDPOINT", default_value = "127.0.0.1:50051")]
    pub endpoint: String,

    /// Threads that run the process's async tasks (tokio workers); by default one
    /// per CPU core. For nodes that share a machine's cores; measured trade-offs
    /// in docs/performance.md.
    #[arg(long, global = true, env = "SHOAL_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// TLS files. For client commands: trust the cluster's CA (and present a client
/// certificate where the cluster requires one). For `shoal node`: the node's own
/// certificate and key, and the CA its peers' certificates are checked against
/// (the `[tls]` keys of the configuration file).
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// The cluster's CA certificate (PEM). Client commands then connect with TLS.
    #[arg(long, global = true, env = "SHOAL_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A certificate to present (PEM): a node's own, or a client's.
    #[arg(long, global = true, env = "SHOAL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, global = true, env = "SHOAL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node of a cluster (configured by a TOML file, env and flags).
    Node(NodeArgs),
    /// Run a three-node, three-zone cluster in this process, for development and tests.
    Dev(DevArgs),
    /// Create, list, describe and delete streams.
    #[command(subcommand)]
    Stream(StreamCommand),
    /// Put records read from stdin or a file, one record per line.
    Put(PutArgs),
    /// Print every record of every shard of a stream, then exit.
    Get(GetArgs),
    /// Follow a stream and print records as they arrive.
    Tail(TailArgs),
    /// Inspect and change the cluster: status, add, drain and remove nodes.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Benchmark Shoal (and NATS JetStream, side by side): throughput, publish and
    /// end-to-end latency percentiles, open loop at a fixed rate or at maximum.
    Bench(BenchArgs),
    /// Consumer applications: run a member that prints records, or describe a group.
    #[command(subcommand)]
    Consumer(ConsumerCommand),
    /// Transport security: make certificates for a cluster.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Firehose delivery streams (through a node's AWS API): create, list,
    /// describe, put lines from stdin, delete.
    Firehose {
        /// A node's AWS API, e.g. http://127.0.0.1:4567 (https with --tls-ca).
        #[arg(long, env = "SHOAL_AWS_ENDPOINT", default_value = "http://127.0.0.1:4567")]
        aws_endpoint: String,
        #[command(subcommand)]
        command: FirehoseCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum FirehoseCommand {
    /// Create a delivery stream into an S3 bucket (DirectPut, or from --source-stream).
    Create {
        name: String,
        /// The bucket (as configured for the nodes: an S3 endpoint or a directory).
        #[arg(long)]
        bucket: String,
        /// Key prefix; may use !{timestamp:yyyy/MM/dd}.
        #[arg(long)]
        prefix: Option<String>,
        /// Prefix for records that could not be delivered.
        #[arg(long)]
        error_prefix: Option<String>,
        /// Deliver when a shard's buffer holds this many MiB (1–128)…
        #[arg(long, default_value_t = 5)]
        buffer_mb: u64,
        /// …or after this many seconds (0–900), whichever comes first.
        #[arg(long, default_value_t = 300)]
        interval_secs: u64,
        /// UNCOMPRESSED, GZIP, ZIP, Snappy or HADOOP_SNAPPY.
        #[arg(long, default_value = "UNCOMPRESSED")]
        compression: String,
        /// Read an existing stream instead of taking PutRecord calls.
        #[arg(long)]
        source_stream: Option<String>,
    },
    /// Names of every delivery stream.
    List,
    /// The delivery stream's description (JSON).
    Describe { name: String },
    /// Put each line of stdin as one record (a newline is kept at its end).
    Put { name: String },
    /// Delete a delivery stream (and, for DirectPut, its records).
    Delete { name: String },
    /// Run a delivery worker as a process of its own, against the cluster at
    /// --endpoint (gRPC). Workers share delivery streams' shards with the nodes'
    /// own workers (start nodes with --no-firehose-worker to leave it all here).
    Worker {
        /// This worker's name in the consumer groups (default: host and process id).
        #[arg(long)]
        member: Option<String>,
        /// Seconds without a heartbeat after which this worker's shards move.
        #[arg(long, default_value_t = 10)]
        lease_timeout_secs: u64,
        #[command(flatten)]
        stores: FirehoseArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a new CA (ca.pem, ca-key.pem), a certificate per node (NODE.pem,
    /// NODE-key.pem; valid for NODE, localhost, 127.0.0.1 and any --name) and a
    /// client certificate (client.pem, client-key.pem) into a directory.
    ///
    ///   shoal tls generate --out deploy/tls --node node-1 --node node-2 --node node-3
    Generate {
        /// Directory to write into (created if missing).
        #[arg(long, short = 'o', default_value = "shoal-tls")]
        out: PathBuf,
        /// A node's host name, as peers and clients address it; repeat per node.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
        /// Another DNS name or IP address every node certificate should carry.
        #[arg(long = "name")]
        extra_names: Vec<String>,
        /// Replace certificates already in the directory.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsumerCommand {
    /// Join an application's consumer group and print the records of the shards
    /// it leases, checkpointing after each batch; Ctrl-C checkpoints and leaves.
    /// Run several to share the shards.
    Run {
        stream: String,
        /// The application (consumer group) name.
        #[arg(long, short = 'a')]
        application: String,
        /// This member's name (default: host, process id and a random part).
        #[arg(long)]
        member: Option<String>,
        /// Seconds without a heartbeat after which this member's shards move.
        #[arg(long, default_value_t = 10)]
        lease_timeout_secs: u64,
        /// Start shards without a checkpoint at the newest record instead of the oldest.
        #[arg(long)]
        latest: bool,
        /// Have records pushed (SubscribeToShard) instead of polling GetRecords.
        #[arg(long)]
        push: bool,
        /// Print shard id, sequence number and partition key before each record.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Members, leases, checkpoints and lag (records and ms) of an application.
    Describe {
        stream: String,
        #[arg(long, short = 'a')]
        application: String,
    },
}

impl Command {
    pub fn is_server(&self) -> bool {
        matches!(self, Command::Node(_) | Command::Dev(_))
    }
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// TOML configuration file; every key can be overridden by the flags below or
    /// their SHOAL_* environment variables.
    #[arg(long, short = 'c', env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Node id, unique in the cluster.
    #[arg(long, env = "SHOAL_ID")]
    pub id: Option<u64>,
    /// Availability zone of this node.
    #[arg(long, env = "SHOAL_ZONE")]
    pub zone: Option<String>,
    /// Address the gRPC listener binds, e.g. 0.0.0.0:50051.
    #[arg(long, env = "SHOAL_LISTEN")]
    pub listen: Option<String>,
    /// Address other nodes use to reach this one.
    #[arg(long, env = "SHOAL_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory of the node's RocksDB.
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the AWS-compatible API (Kinesis, JSON 1.1) listens; empty disables it.
    #[arg(long, env = "SHOAL_AWS_LISTEN")]
    pub aws_listen: Option<String>,
    /// Access keys the AWS API accepts, as KEY_ID:SECRET (repeat or comma-separate).
    /// Without any, every request is accepted; with some, SigV4 signatures are verified.
    #[arg(long = "aws-credential", env = "SHOAL_AWS_CREDENTIALS", value_delimiter = ',')]
    pub aws_credentials: Vec<String>,
    /// A cluster member as ID=ZONE@HOST:PORT; repeat for each (this node included).
    #[arg(long = "peer", env = "SHOAL_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Leader heartbeat interval in milliseconds (`raft.heartbeat_millis`).
    #[arg(long, env = "SHOAL_RAFT_HEARTBEAT_MILLIS")]
    pub heartbeat_millis: Option<u64>,
    /// Minimum election timeout in milliseconds (`raft.election_timeout_millis`).
    #[arg(long, env = "SHOAL_RAFT_ELECTION_TIMEOUT_MILLIS")]
    pub election_timeout_millis: Option<u64>,
    /// Write RocksDB flushes and compactions with O_DIRECT: true, false or auto
    /// (`direct_io`; default auto: on where a probe at start finds the data
    /// directory's disk takes 1 MiB direct writes at 640 MiB/s or more; it helps
    /// fast disks and stalls slow ones). `--direct-io` alone means true.
    #[arg(long, env = "SHOAL_DIRECT_IO", num_args = 0..=1, default_missing_value = "true")]
    pub direct_io: Option<shoal_node::DirectIo>,
    /// How many shards of a new stream may share one Raft group (`shards_per_group`,
    /// default 16); a stream gets as few groups as that allows, so a call to it
    /// goes to few leaders. Lower it to spread one stream's leaders over more
    /// nodes; 1 gives every shard a Raft group of its own.
    #[arg(long, env = "SHOAL_SHARDS_PER_GROUP")]
    pub shards_per_group: Option<u32>,
    /// How often expired records are removed, in seconds (`retention_check_secs`).
    #[arg(long, env = "SHOAL_RETENTION_CHECK_SECS")]
    pub retention_check_secs: Option<u64>,
    /// How long shard iterators stay valid, in milliseconds (`shard_iterator_ttl_millis`).
    #[arg(long, env = "SHOAL_SHARD_ITERATOR_TTL_MILLIS")]
    pub shard_iterator_ttl_millis: Option<u64>,
    /// Where Prometheus metrics are served (`/metrics`); empty to disable.
    #[arg(long, env = "SHOAL_METRICS_ADDR", default_value = "0.0.0.0:9464")]
    pub metrics_addr: String,
    /// Take the node id from the host name's StatefulSet ordinal (`shoal-2` is
    /// node 3), and, unless --zone is given, the zone from --zones by ordinal.
    #[arg(long, env = "SHOAL_ID_FROM_ORDINAL")]
    pub id_from_ordinal: bool,
    /// Zones to assign by ordinal with --id-from-ordinal (comma-separated).
    #[arg(long, env = "SHOAL_ZONES", value_delimiter = ',')]
    pub zones: Vec<String>,
    /// Load and validate the configuration (file, environment, flags), print
    /// the outcome, and exit without starting the node.
    #[arg(long)]
    pub check_config: bool,
    /// With TLS on, refuse gRPC clients that present no certificate signed by the
    /// cluster's CA (`tls.require_client_cert`). Peers always present one.
    #[arg(long, env = "SHOAL_TLS_REQUIRE_CLIENT_CERT")]
    pub tls_require_client_cert: bool,
    #[command(flatten)]
    pub firehose: FirehoseArgs,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Keep data here (node-1, node-2, node-3 below it); default: a temporary
    /// directory removed on exit.
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC port of the first node; the others take the next two.
    #[arg(long, env = "SHOAL_DEV_PORT", default_value_t = 50051)]
    pub port: u16,
    /// Port of the first node's AWS-compatible API (Kinesis JSON 1.1); the others
    /// take the next two. 0 disables it.
    #[arg(long, env = "SHOAL_DEV_AWS_PORT", default_value_t = 4567)]
    pub aws_port: u16,
    /// Address the nodes bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Where Prometheus metrics are served (`/metrics`); empty to disable.
    #[arg(long, env = "SHOAL_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: String,
    /// Access keys the AWS API accepts, as KEY_ID:SECRET (repeat or comma-separate).
    /// Without any, every request is accepted; with some, SigV4 signatures are verified.
    #[arg(long = "aws-credential", env = "SHOAL_AWS_CREDENTIALS", value_delimiter = ',')]
    pub aws_credentials: Vec<String>,
    /// Enforce Kinesis's per-shard throughput limits (off in dev by default, so test
    /// suites can write in bursts; `shoal node` enforces them unless configured off).
    #[arg(long)]
    pub enforce_limits: bool,
    /// How long shard iterators stay valid, in milliseconds (tests shorten it).
    #[arg(long, hide = true, default_value_t = shoal_types::limits::SHARD_ITERATOR_TTL_MILLIS)]
    pub iterator_ttl_millis: u64,
    /// Serve gRPC and the AWS API over TLS, with mutual TLS between the nodes, using
    /// certificates in this directory (made there by `shoal tls generate` if absent).
    /// Clients then need `--tls-ca DIR/ca.pem`.
    #[arg(long, env = "SHOAL_DEV_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    #[command(flatten)]
    pub firehose: FirehoseArgs,
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Create a stream.
    Create {
        name: String,
        /// Number of shards (1 to 10000).
        #[arg(long, short = 's', default_value_t = 1, conflicts_with = "on_demand")]
        shards: u32,
        /// Create an ON_DEMAND stream: it starts with 4 shards and scales itself.
        #[arg(long)]
        on_demand: bool,
    },
    /// List streams.
    List,
    /// Show a stream and its shards.
    Describe { name: String },
    /// Delete a stream and all its records.
    Delete { name: String },
    /// Split a shard in two at a hash key (default: the middle of its range).
    Split {
        name: String,
        /// The shard to split, e.g. shardId-000000000000.
        shard: String,
        /// Where the second child starts (decimal hash key).
        #[arg(long)]
        at: Option<String>,
    },
    /// Merge two adjacent shards into one.
    Merge { name: String, shard: String, adjacent: String },
    /// Switch a stream between PROVISIONED (you reshard) and ON_DEMAND (it scales itself).
    Mode {
        name: String,
        /// PROVISIONED or ON_DEMAND.
        #[arg(value_parser = ["PROVISIONED", "ON_DEMAND"])]
        mode: String,
    },
    /// Split or merge shards until the stream has this many open (0.5x to 2x).
    Scale {
        name: String,
        #[arg(long, short = 's')]
        shards: u32,
    },
}

#[derive(Debug, Args)]
pub struct PutArgs {
    pub stream: String,
    /// Read records from this file instead of stdin.
    #[arg(long, short = 'f')]
    pub file: Option<PathBuf>,
    /// Each line is KEY<SEP>DATA: the part before the first SEP is the partition
    /// key. Without it every record gets a random partition key.
    #[arg(long, short = 'k')]
    pub key_separator: Option<String>,
    /// Records per PutRecords call (1 to 500).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Pack records bound for the same shard into KPL aggregates (readable by the
    /// KCL, aws-kinesis-agg and `shoal consumer`), through the batching producer.
    #[arg(long)]
    pub aggregate: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    pub stream: String,
    /// Print shard id, sequence number and partition key before each record, tab-separated.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    pub stream: String,
    /// Start from the oldest record instead of only new ones.
    #[arg(long)]
    pub from_start: bool,
    /// Print shard id, sequence number and partition key before each record.
    #[arg(long, short = 'v')]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes, zones, which node leads which shard, and replication lag.
    Status,
    /// Add a running node to the cluster. Start it first with `shoal node`, its
    /// peers listing the existing nodes and itself; replicas then move to it.
    AddNode {
        /// The new node's id (as in its configuration).
        #[arg(long)]
        id: u64,
        /// Its gRPC address as the other nodes reach it (host:port).
        #[arg(long)]
        addr: String,
        /// Its availability zone.
        #[arg(long)]
        zone: String,
    },
    /// Move every replica off a node (to the same zone where possible); the node
    /// stays a member. `--cancel` takes it back into placement.
    Drain {
        /// The node to drain.
        #[arg(long)]
        id: u64,
        /// Stop draining: the node accepts replicas again.
        #[arg(long)]
        cancel: bool,
        /// Wait until the node holds no replica.
        #[arg(long)]
        wait: bool,
    },
    /// Drain a node and remove it from the cluster (also works on a dead node).
    RemoveNode {
        /// The node to remove.
        #[arg(long)]
        id: u64,
        /// How long to wait for its replicas to move, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which system: shoal, nats, or both (same workloads, then the ratios).
    #[arg(long, default_value = "shoal")]
    pub target: String,
    /// Workloads file (TOML, `[[workload]]` tables); flags below override every workload.
    #[arg(long, short = 'w')]
    pub workload: Option<PathBuf>,
    /// NATS servers (host:port), for --target nats|both.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:4222,127.0.0.1:4223,127.0.0.1:4224")]
    pub nats: Vec<String>,
    /// The Shoal stream the benchmark (re)creates.
    #[arg(long, default_value = "bench")]
    pub stream: String,
    /// Write the results as JSON here.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Plot publish latency over time (p50, p99 and max per second of each run's
    /// measurement window) as an SVG here.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Send every PutRecords to --endpoint and let it forward records to their
    /// shards' leaders, instead of sending each shard's records to its leader.
    #[arg(long)]
    pub via_entry_node: bool,
    /// Shards of the Shoal stream (NATS runs one R3 stream either way).
    #[arg(long)]
    pub shards: Option<u32>,
    /// Record size in bytes.
    #[arg(long)]
    pub record_bytes: Option<usize>,
    /// Distinct partition keys, picked uniformly per record.
    #[arg(long)]
    pub keys: Option<u32>,
    /// Producer tasks sharing the target rate.
    #[arg(long)]
    pub producers: Option<u32>,
    /// Target records/s over all producers (open loop); 0 = as fast as possible.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Calls in flight per producer at maximum throughput.
    #[arg(long)]
    pub in_flight: Option<u32>,
    /// Records per call.
    #[arg(long)]
    pub batch: Option<u32>,
    /// Push consumers measuring end-to-end latency (0 or 1).
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Seconds measured, after the warm-up.
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Seconds of load before measuring starts (not counted in the results).
    #[arg(long)]
    pub warmup_secs: Option<u64>,
    /// The Shoal cluster's processes (comma-separated pids, on this machine): their
    /// CPU over each measurement window is reported ("srv cores", `cpu.server_cores`)
    /// and records per core compared. `bench/compare.sh` passes them.
    #[arg(long, value_delimiter = ',')]
    pub shoal_pids: Vec<u32>,
    /// The NATS servers' processes, as --shoal-pids.
    #[arg(long, value_delimiter = ',')]
    pub nats_pids: Vec<u32>,
    /// Before each run, wait up to this many seconds for the system's processes
    /// (--shoal-pids / --nats-pids) to come to rest, under 0.15 cores together, so
    /// a run does not measure the previous run's flushes and compactions. 0: start
    /// at once.
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
}

impl BenchArgs {
    /// Applies the flags given to `workload`.
    pub fn apply(&self, workload: &mut crate::bench::Workload) {
        macro_rules! set {
            ($($field:ident),*) => {$( if let Some(value) = self.$field.clone() { workload.$field = value; } )*};
        }
        set!(shards, record_bytes, keys, producers, rate, in_flight, batch, consumers, duration_secs, warmup_secs);
        if self.rate.is_some() {
            // A rate given on the command line is the rate.
            workload.rate_of = None;
        }
    }
}

/// Where Firehose delivers (for `shoal node` and `shoal dev`): an S3-compatible
/// server, or a directory with one subdirectory per bucket.
#[derive(Debug, Args, Default)]
pub struct FirehoseArgs {
    /// S3-compatible endpoint for delivery streams' buckets (`firehose.s3_endpoint`).
    #[arg(long, env = "SHOAL_FIREHOSE_S3_ENDPOINT")]
    pub firehose_s3_endpoint: Option<String>,
    /// Region to sign S3 requests for (`firehose.s3_region`, default us-east-1).
    #[arg(long, env = "SHOAL_FIREHOSE_S3_REGION")]
    pub firehose_s3_region: Option<String>,
    /// Access key for the S3 endpoint (`firehose.s3_access_key_id`).
    #[arg(long, env = "SHOAL_FIREHOSE_S3_ACCESS_KEY_ID")]
    pub firehose_s3_access_key_id: Option<String>,
    /// Secret key for the S3 endpoint (`firehose.s3_secret_access_key`).
    #[arg(long, env = "SHOAL_FIREHOSE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub firehose_s3_secret_access_key: Option<String>,
    /// Without an S3 endpoint: deliver into this directory, a subdirectory per bucket
    /// (`firehose.local_dir`).
    #[arg(long, env = "SHOAL_FIREHOSE_LOCAL_DIR")]
    pub firehose_local_dir: Option<PathBuf>,
    /// Do not run a delivery worker in this process (`firehose.worker = false`).
    #[arg(long, env = "SHOAL_FIREHOSE_NO_WORKER")]
    pub no_firehose_worker: bool,
    /// A table for record format conversion, as `DATABASE.TABLE=id bigint, name string`
    /// (`[firehose.tables]`); repeat for more.
    #[arg(long = "firehose-table")]
    pub firehose_tables: Vec<String>,
    /// A Lambda ARN and the URL of the HTTP function standing in for it, as
    /// `ARN=URL` (`[firehose.functions]`); repeat for more.
    #[arg(long = "firehose-function")]
    pub firehose_functions: Vec<String>,
}

impl FirehoseArgs {
    /// Applies the flags given over `config`.
    pub fn apply(&self, config: &mut shoal_firehose::FirehoseConfig) -> anyhow::Result<()> {
        if let Some(v) = &self.firehose_s3_endpoint {
            config.s3_endpoint = v.clone();
        }
        if let Some(v) = &self.firehose_s3_region {
            config.s3_region = v.clone();
        }
        if let Some(v) = &self.firehose_s3_access_key_id {
            config.s3_access_key_id = v.clone();
        }
        if let Some(v) = &self.firehose_s3_secret_access_key {
            config.s3_secret_access_key = v.clone();
        }
        if let Some(v) = &self.firehose_local_dir {
            config.local_dir = Some(v.clone());
        }
        if self.no_firehose_worker {
            config.worker = false;
        }
        for (flag, map) in
            [(&self.firehose_tables, &mut config.tables), (&self.firehose_functions, &mut config.functions)]
        {
            for entry in flag {
                let (key, value) = entry.split_once('=').ok_or_else(|| {
                    anyhow::anyhow!("expected NAME=VALUE in --firehose-table/--firehose-function, got {entry:?}")
                })?;
                map.insert(key.trim().to_string(), value.trim().to_string());
            }
        }
        Ok(())
    }
}
