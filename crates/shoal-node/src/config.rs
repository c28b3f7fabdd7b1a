//! Node configuration: a TOML file, every key overridable by the environment and
//! by flags (the `shoal` CLI does the overriding).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shoal_types::{NodeId, NodeInfo};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id, unique in the cluster.
    pub id: NodeId,
    /// This node's availability zone. Replicas of a shard go to distinct zones.
    pub zone: String,
    /// Where the gRPC listener binds.
    pub listen: String,
    /// The address other nodes and forwarded calls use; defaults to `listen`.
    pub advertise: Option<String>,
    /// Where the node keeps its RocksDB.
    pub data_dir: PathBuf,
    /// Write RocksDB's flushes and compactions with `O_DIRECT` (around the page
    /// cache): `true`, `false`, or `"auto"` (the default: on where the data
    /// directory's disk takes a 1 MiB direct write at 640 MiB/s or more, probed at
    /// start; see docs/performance.md).
    pub direct_io: DirectIo,
    /// How many shards of a new stream may share one Raft group: a stream gets
    /// as few groups as that allows. Shards in one group share a log: one entry
    /// carries appends to all of them, which is what makes many shards cheap
    /// and a call to many shards one part for one leader (docs/architecture.md,
    /// "Shards and groups"). 1 gives each shard a group.
    pub shards_per_group: u32,
    /// Every voting node of the cluster, this one included. Empty means a cluster
    /// of just this node.
    pub peers: Vec<PeerConfig>,
    pub raft: RaftTiming,
    /// Where the AWS-compatible API (Kinesis JSON 1.1) listens; empty disables it.
    pub aws_listen: String,
    /// Access keys the AWS API accepts. Empty: any credentials are accepted;
    /// otherwise every request's SigV4 signature is verified against these.
    pub aws_credentials: Vec<AwsCredential>,
    /// How long shard iterators stay valid (Kinesis: five minutes).
    pub shard_iterator_ttl_millis: u64,
    /// Per-shard throughput limits (Kinesis's provisioned limits by default).
    pub limits: crate::throughput::ThroughputLimits,
    /// How often expired records are looked for, in seconds.
    pub retention_check_secs: u64,
    /// How long a retention "hour" is, in milliseconds: 3,600,000. Only tests shorten
    /// it, to watch retention act without waiting a day.
    pub retention_hour_millis: u64,
    /// How ON_DEMAND streams scale with their load.
    pub autoscaler: crate::autoscaler::AutoscalerConfig,
    /// TLS for the gRPC and AWS endpoints and mutual TLS between nodes (off by default).
    pub tls: shoal_tls::TlsConfig,
    /// Firehose delivery: the worker in this node and where buckets are.
    pub firehose: shoal_firehose::FirehoseConfig,
}

/// Whether flushes and compactions bypass the page cache ([`NodeConfig::direct_io`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DirectIo {
    /// Always (`true`) or never (`false`).
    Set(bool),
    /// Where a probe of the data directory's disk at start finds it fast enough.
    Auto(Auto),
}

/// The word `"auto"` in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auto {
    #[serde(rename = "auto")]
    Auto,
}

impl Default for DirectIo {
    fn default() -> Self {
        DirectIo::Auto(Auto::Auto)
    }
}

impl std::str::FromStr for DirectIo {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(DirectIo::default()),
            "true" | "on" | "1" => Ok(DirectIo::Set(true)),
            "false" | "off" | "0" => Ok(DirectIo::Set(false)),
            other => Err(format!("direct_io is true, false or auto, not {other:?}")),
        }
    }
}

/// How fast (MiB/s) the data directory's disk must take a 1 MiB `O_DIRECT` write
/// (the fastest of the probe's 32) for `direct_io = "auto"` to turn it on.
/// Measured on two machines: one whose disk took 1 MiB direct writes at 1.0–1.5
/// GB/s (`dd`; the probe's fastest write: 790–2,170 MiB/s with three nodes
/// probing at once), where `O_DIRECT` made 1 KiB max throughput 30% higher and
/// 64 KiB 1.8×; and one at 450 MB/s (`dd`), where it halved 64 KiB throughput
/// (docs/performance.md). The threshold lies between.
pub const AUTO_DIRECT_IO_MIN_MIBPS: f64 = 640.0;

impl DirectIo {
    /// Whether to use `O_DIRECT` in `dir`: as set, or, for `auto`, as a probe of
    /// the disk at the directory's first start found (remembered in the directory,
    /// so that every later start decides the same; logged, so an operator sees what
    /// was chosen and why).
    pub fn resolve(self, dir: &std::path::Path) -> bool {
        match self {
            DirectIo::Set(on) => on,
            DirectIo::Auto(_) => match shoal_storage::direct_io::remembered_mibps(dir) {
                Ok((Some(mibps), remembered)) => {
                    let on = mibps >= AUTO_DIRECT_IO_MIN_MIBPS;
                    let probed = if remembered { "at the data directory's first start" } else { "now" };
                    tracing::info!(
                        dir = %dir.display(), mibps = mibps.round(), threshold = AUTO_DIRECT_IO_MIN_MIBPS, on, probed,
                        file = shoal_storage::direct_io::REMEMBERED_PROBE_FILE,
                        "direct_io = auto: the disk's O_DIRECT write speed"
                    );
                    on
                }
                Ok((None, _)) => false,
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "direct_io = auto: probe failed; using the page cache");
                    false
                }
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub id: NodeId,
    pub zone: String,
    pub addr: String,
}

/// An access key the AWS-compatible API accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTiming {
    /// Leader heartbeat interval.
    pub heartbeat_millis: u64,
    /// Minimum election timeout; the maximum is twice this.
    pub election_timeout_millis: u64,
    /// A shard group whose log has not moved for this long stops its heartbeats
    /// and election timers until it is used again (0: never rest).
    pub quiesce_after_millis: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming { heartbeat_millis: 100, election_timeout_millis: 500, quiesce_after_millis: 2_000 }
    }
}

/// See [`NodeConfig::shards_per_group`].
pub const DEFAULT_SHARDS_PER_GROUP: u32 = 16;

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: 1,
            zone: "az-a".into(),
            listen: "0.0.0.0:50051".into(),
            advertise: None,
            data_dir: PathBuf::from("./shoal-data"),
            direct_io: DirectIo::default(),
            shards_per_group: DEFAULT_SHARDS_PER_GROUP,
            peers: Vec::new(),
            raft: RaftTiming::default(),
            aws_listen: "0.0.0.0:4567".into(),
            aws_credentials: Vec::new(),
            shard_iterator_ttl_millis: shoal_types::limits::SHARD_ITERATOR_TTL_MILLIS,
            limits: Default::default(),
            retention_check_secs: 30,
            retention_hour_millis: 3_600_000,
            autoscaler: Default::default(),
            tls: Default::default(),
            firehose: Default::default(),
        }
    }
}

impl NodeConfig {
    pub fn from_toml(text: &str) -> anyhow::Result<NodeConfig> {
        Ok(toml::from_str(text)?)
    }

    pub fn advertise_addr(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| self.listen.clone())
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo { addr: self.advertise_addr(), zone: self.zone.clone() }
    }

    /// Every voter of the cluster, this node included.
    pub fn voters(&self) -> std::collections::BTreeMap<NodeId, NodeInfo> {
        let mut voters: std::collections::BTreeMap<NodeId, NodeInfo> =
            self.peers.iter().map(|p| (p.id, NodeInfo { addr: p.addr.clone(), zone: p.zone.clone() })).collect();
        voters.insert(self.id, self.info());
        voters
    }

    /// Records of `stream` that arrived before this time (epoch millis) have expired.
    pub fn retention_cutoff(&self, retention_hours: u32, now_millis: u64) -> u64 {
        now_millis.saturating_sub(u64::from(retention_hours).saturating_mul(self.retention_hour_millis))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.zone.is_empty(), "zone must not be empty");
        anyhow::ensure!(self.raft.heartbeat_millis > 0, "raft.heartbeat_millis must be positive");
        anyhow::ensure!(
            self.raft.election_timeout_millis > self.raft.heartbeat_millis,
            "raft.election_timeout_millis must exceed raft.heartbeat_millis"
        );
        self.tls.validate()?;
        let scaler = &self.autoscaler;
        anyhow::ensure!(
            scaler.scale_down_at < scaler.scale_up_at,
            "autoscaler.scale_down_at must be below autoscaler.scale_up_at"
        );
        anyhow::ensure!(
            scaler.min_shards >= 1 && scaler.min_shards <= scaler.max_shards,
            "autoscaler.min_shards must be at least 1 and at most autoscaler.max_shards"
        );
        if let Some(me) = self.peers.iter().find(|p| p.id == self.id) {
            anyhow::ensure!(
                me.zone == self.zone,
                "peer entry for this node says zone {} but the node is in {}",
                me.zone,
                self.zone
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_three_node_config() {
        let config = NodeConfig::from_toml(
            r#"
            id = 2
            zone = "az-b"
            listen = "0.0.0.0:50052"
            advertise = "node-2:50052"
            data_dir = "/var/lib/shoal"
            peers = [
              { id = 1, zone = "az-a", addr = "node-1:50051" },
              { id = 2, zone = "az-b", addr = "node-2:50052" },
              { id = 3, zone = "az-c", addr = "node-3:50053" },
            ]
            [raft]
            heartbeat_millis = 50
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.voters().len(), 3);
        assert_eq!(config.voters()[&2].addr, "node-2:50052");
        assert_eq!(config.raft.election_timeout_millis, 500);
    }

    #[test]
    fn direct_io_is_true_false_or_auto_in_files_and_flags() {
        let parse = |text: &str| NodeConfig::from_toml(text).map(|c| c.direct_io);
        assert_eq!(parse("").unwrap(), DirectIo::default());
        assert_eq!(parse("direct_io = true").unwrap(), DirectIo::Set(true));
        assert_eq!(parse("direct_io = false").unwrap(), DirectIo::Set(false));
        assert_eq!(parse("direct_io = \"auto\"").unwrap(), DirectIo::default());
        assert!(parse("direct_io = \"sometimes\"").is_err());
        assert_eq!("on".parse::<DirectIo>(), Ok(DirectIo::Set(true)));
        assert_eq!("FALSE".parse::<DirectIo>(), Ok(DirectIo::Set(false)));
        assert!("maybe".parse::<DirectIo>().is_err());
        assert!(!DirectIo::Set(false).resolve(std::path::Path::new("/nonexistent")));
    }

    #[test]
    fn auto_decides_by_the_speed_remembered_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let remembered = dir.path().join(shoal_storage::direct_io::REMEMBERED_PROBE_FILE);
        std::fs::write(&remembered, "mibps = 5000\n").unwrap();
        assert!(DirectIo::default().resolve(dir.path()));
        std::fs::write(&remembered, format!("mibps = {}\n", AUTO_DIRECT_IO_MIN_MIBPS - 1.0)).unwrap();
        assert!(!DirectIo::default().resolve(dir.path()));
        // A setting still overrides whatever was probed.
        assert!(DirectIo::Set(true).resolve(dir.path()));
    }

    #[test]
    fn rejects_unknown_keys() {
        assert!(NodeConfig::from_toml("idd = 1").is_err());
    }
}
