//! What a benchmark run does: the OpenMessaging-Benchmark knobs, from a TOML
//! file or flags.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    /// Shards of the stream (NATS: one stream, subjects per key).
    pub shards: u32,
    pub record_bytes: usize,
    /// Distinct partition keys, picked uniformly at random.
    pub keys: u32,
    pub producers: u32,
    /// Records per second over all producers; 0 runs closed-loop at maximum
    /// throughput with `in_flight` calls per producer.
    pub rate: u64,
    pub in_flight: u32,
    /// Records per PutRecords call (NATS: messages per pipelined burst).
    pub batch: u32,
    /// Push consumers measuring end-to-end latency (0: none).
    pub consumers: u32,
    pub duration_secs: u64,
    pub warmup_secs: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            name: "1KiB-max".into(),
            shards: 16,
            record_bytes: 1024,
            keys: 1024,
            producers: 4,
            rate: 0,
            in_flight: 8,
            batch: 100,
            consumers: 1,
            duration_secs: 20,
            warmup_secs: 5,
        }
    }
}

impl Workload {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.shards >= 1, "shards must be at least 1");
        anyhow::ensure!(self.record_bytes >= 16, "record_bytes must be at least 16 (the send timestamp)");
        anyhow::ensure!((1..=500).contains(&self.batch), "batch must be 1 to 500");
        anyhow::ensure!(self.producers >= 1 && self.keys >= 1, "producers and keys must be at least 1");
        anyhow::ensure!(self.in_flight >= 1, "in_flight must be at least 1");
        anyhow::ensure!(self.duration_secs >= 1, "duration_secs must be at least 1");
        Ok(())
    }
}
