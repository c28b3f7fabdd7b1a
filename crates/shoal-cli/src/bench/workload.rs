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
    /// Run at a fixed rate of `rate_fraction` of the throughput that this earlier
    /// workload (by name) reached on the same system in the same run; overrides
    /// `rate`. Each system is then measured at the same share of its own maximum.
    pub rate_of: Option<String>,
    pub rate_fraction: f64,
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
            rate_of: None,
            rate_fraction: 0.5,
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
        anyhow::ensure!(
            self.rate_fraction > 0.0 && self.rate_fraction <= 1.0,
            "rate_fraction must be above 0 and at most 1"
        );
        Ok(())
    }

    /// This workload with its rate set from `rate_of`: `rate_fraction` of what
    /// that workload reached in `earlier` (results of the same system, this run).
    pub fn with_rate_from(&self, earlier: &[(String, f64)]) -> anyhow::Result<Workload> {
        let Some(base) = &self.rate_of else { return Ok(self.clone()) };
        let Some((_, records_per_sec)) = earlier.iter().find(|(name, _)| name == base) else {
            anyhow::bail!("workload {} takes its rate from {base}, which must run before it", self.name);
        };
        let rate = (records_per_sec * self.rate_fraction).round() as u64;
        anyhow::ensure!(rate >= 1, "workload {base} reached no throughput to take a share of");
        Ok(Workload { rate, rate_of: None, ..self.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_takes_its_rate_as_a_share_of_an_earlier_ones_throughput() {
        let half = Workload { name: "half".into(), rate: 5_000, rate_of: Some("max".into()), ..Workload::default() };
        let earlier = vec![("other".to_string(), 1.0), ("max".to_string(), 41_811.0)];
        let resolved = half.with_rate_from(&earlier).unwrap();
        assert_eq!(resolved.rate, 20_906);
        assert_eq!(resolved.rate_of, None);
        let quarter = Workload { rate_fraction: 0.25, ..half.clone() };
        assert_eq!(quarter.with_rate_from(&earlier).unwrap().rate, 10_453);
        let missing = half.with_rate_from(&[]).unwrap_err().to_string();
        assert!(missing.contains("must run before it"), "{missing}");
        let fixed = Workload { rate: 7, ..Workload::default() };
        assert_eq!(fixed.with_rate_from(&[]).unwrap().rate, 7);
        assert!(Workload { rate_fraction: 1.5, ..Workload::default() }.validate().is_err());
    }
}
