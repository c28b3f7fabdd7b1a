//! Scales ON_DEMAND streams by their write load (runs on the metadata leader).
//!
//! Every `interval_secs` the metadata leader gathers, from each node, how many
//! records and bytes it appended as the leader of each shard, and turns the
//! counters into rates. A shard whose rate stays at or above `scale_up_at` of
//! the per-shard capacity for `sustain_intervals` in a row is split in the middle
//! of its hash key range; two adjacent shards that both stay below
//! `scale_down_at` are merged. Each stream reshards at most once per interval and
//! stays within `[min_shards, max_shards]` open shards. Writers are not stopped:
//! splits and merges seal the parent and re-route, as manual resharding does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_proto::v1 as proto;
use shoal_proto::v1::cluster_server::Cluster;
use shoal_types::{GroupId, Shard, Stream, StreamStatus};
use tokio::sync::watch;

use crate::cluster_service::ClusterService;
use crate::node::Node;

/// How ON_DEMAND streams scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoscalerConfig {
    pub enabled: bool,
    /// How often load is measured and decisions are taken.
    pub interval_secs: u64,
    /// Consecutive hot (or cold) measurements before a shard is split (or merged).
    pub sustain_intervals: u32,
    /// A shard is hot at this fraction of its capacity.
    pub scale_up_at: f64,
    /// A shard is cold below this fraction of its capacity.
    pub scale_down_at: f64,
    /// The capacity of one shard the fractions refer to (Kinesis: 1 MiB/s and
    /// 1,000 records/s).
    pub shard_bytes_per_sec: u64,
    pub shard_records_per_sec: u64,
    /// Open shards an ON_DEMAND stream keeps at least and at most.
    pub min_shards: u32,
    pub max_shards: u32,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        AutoscalerConfig {
            enabled: true,
            interval_secs: 30,
            sustain_intervals: 3,
            scale_up_at: 0.8,
            scale_down_at: 0.2,
            shard_bytes_per_sec: 1024 * 1024,
            shard_records_per_sec: 1000,
            min_shards: shoal_types::limits::ON_DEMAND_INITIAL_SHARDS,
            max_shards: 200,
        }
    }
}

/// What one shard did over the last interval, and for how long it has been hot or cold.
#[derive(Debug, Clone, Copy, Default)]
struct ShardHeat {
    records: u64,
    bytes: u64,
    hot_streak: u32,
    cold_streak: u32,
}

/// Per group: the reporting leader, and the records and bytes it appended so far.
/// A shard as the cluster status reports it: its group and shard id.
type ShardKey = (GroupId, String);

type Counters = BTreeMap<ShardKey, (u64, u64, u64)>;

/// A resharding the autoscaler decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Split { stream: String, shard: String, at: String },
    Merge { stream: String, shard: String, adjacent: String },
}

pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let config = node.config.autoscaler.clone();
    if !config.enabled {
        return;
    }
    let every = Duration::from_secs(config.interval_secs.max(1));
    let status = ClusterService::new(node.clone());
    let mut heat: BTreeMap<ShardKey, ShardHeat> = BTreeMap::new();
    let mut previous: Option<(Instant, Counters)> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if !node.meta.is_leader() {
            previous = None;
            continue;
        }
        let Ok(report) = status.status(tonic::Request::new(proto::ClusterStatusRequest {})).await else { continue };
        let now = Instant::now();
        let counters: Counters = report
            .into_inner()
            .groups
            .iter()
            .map(|g| ((g.group_id, g.shard_id.clone()), (g.leader_id, g.appended_records, g.appended_bytes)))
            .collect();
        if let Some((then, before)) = &previous {
            let seconds = now.duration_since(*then).as_secs_f64().max(0.001);
            for (group, (leader, records, bytes)) in &counters {
                let entry = heat.entry(group.clone()).or_default();
                // A new leader counts from zero: skip the interval it took over in.
                let (records, bytes) = match before.get(group) {
                    Some((old_leader, r, b)) if old_leader == leader && records >= r => (records - r, bytes - b),
                    _ => continue,
                };
                entry.records = (records as f64 / seconds) as u64;
                entry.bytes = (bytes as f64 / seconds) as u64;
                let load = utilization(&config, entry);
                entry.hot_streak = if load >= config.scale_up_at { entry.hot_streak + 1 } else { 0 };
                entry.cold_streak = if load < config.scale_down_at { entry.cold_streak + 1 } else { 0 };
            }
        }
        previous = Some((now, counters));
        let meta = node.meta_snapshot();
        for stream in meta.streams.values() {
            let Some(decision) = decide(&config, stream, &heat) else { continue };
            let outcome = match &decision {
                Decision::Split { stream, shard, at } => crate::resharding::split(&node, stream, shard, at).await,
                Decision::Merge { stream, shard, adjacent } => {
                    crate::resharding::merge(&node, stream, shard, adjacent).await
                }
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(?decision, "autoscaler resharded an ON_DEMAND stream");
                    metrics::counter!("shoal_autoscaler_reshards_total").increment(1);
                    // Measure the new layout afresh.
                    for shard in &stream.shards {
                        heat.remove(&key_of(shard));
                    }
                }
                Err(error) => tracing::warn!(?decision, %error, "autoscaler resharding failed"),
            }
        }
    }
}

fn utilization(config: &AutoscalerConfig, heat: &ShardHeat) -> f64 {
    let by_records = heat.records as f64 / config.shard_records_per_sec.max(1) as f64;
    let by_bytes = heat.bytes as f64 / config.shard_bytes_per_sec.max(1) as f64;
    by_records.max(by_bytes)
}

/// The one resharding `stream` needs now, if any: the hottest sustained-hot
/// shard is split; otherwise the coldest pair of sustained-cold neighbours merges.
fn key_of(shard: &Shard) -> ShardKey {
    (shard.group_id, shard.id.to_string())
}

fn decide(config: &AutoscalerConfig, stream: &Stream, heat: &BTreeMap<ShardKey, ShardHeat>) -> Option<Decision> {
    if stream.settings.mode != "ON_DEMAND" || stream.status != StreamStatus::Active {
        return None;
    }
    let mut open: Vec<&Shard> = stream.open_shards().collect();
    open.sort_by_key(|s| s.hash_key_range.start);
    let heat_of = |shard: &Shard| heat.get(&key_of(shard)).copied().unwrap_or_default();
    let sustained = config.sustain_intervals.max(1);
    if (open.len() as u32) < config.max_shards {
        let hottest = open
            .iter()
            .filter(|s| heat_of(s).hot_streak >= sustained && s.hash_key_range.end.0 - s.hash_key_range.start.0 > 2)
            .max_by(|a, b| utilization(config, &heat_of(a)).total_cmp(&utilization(config, &heat_of(b))));
        if let Some(shard) = hottest {
            let range = &shard.hash_key_range;
            let at = range.start.0 + (range.end.0 - range.start.0) / 2 + 1;
            return Some(Decision::Split {
                stream: stream.name.clone(),
                shard: shard.id.to_string(),
                at: at.to_string(),
            });
        }
    }
    if (open.len() as u32) > config.min_shards {
        let coldest =
            open.windows(2).filter(|pair| pair.iter().all(|s| heat_of(s).cold_streak >= sustained)).min_by(|a, b| {
                let load = |pair: &[&Shard]| pair.iter().map(|s| utilization(config, &heat_of(s))).sum::<f64>();
                load(a).total_cmp(&load(b))
            });
        if let Some(pair) = coldest {
            return Some(Decision::Merge {
                stream: stream.name.clone(),
                shard: pair[0].id.to_string(),
                adjacent: pair[1].id.to_string(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_types::{HashKeyRange, ShardId};

    fn stream(shards: u32) -> Stream {
        let shards = HashKeyRange::split_evenly(shards)
            .into_iter()
            .enumerate()
            .map(|(i, range)| Shard {
                ready: true,
                ..Shard::new(ShardId(i as u32), i as u64 + 1, range, vec![1, 2, 3])
            })
            .collect();
        let mut stream = Stream { status: StreamStatus::Active, ..Stream::new("s", 1, 24, shards) };
        stream.settings.mode = "ON_DEMAND".into();
        stream
    }

    /// Heat by group, in `stream`'s layout (shard `g - 1` alone in group `g`).
    fn heat(entries: &[(GroupId, u64, u32, u32)]) -> BTreeMap<ShardKey, ShardHeat> {
        entries
            .iter()
            .map(|(g, records, hot, cold)| {
                let key = (*g, ShardId(*g as u32 - 1).to_string());
                (key, ShardHeat { records: *records, bytes: 0, hot_streak: *hot, cold_streak: *cold })
            })
            .collect()
    }

    #[test]
    fn a_sustained_hot_shard_splits_in_the_middle() {
        let config = AutoscalerConfig::default();
        let decision = decide(&config, &stream(4), &heat(&[(2, 900, 3, 0), (3, 950, 2, 0)]));
        assert!(
            matches!(&decision, Some(Decision::Split { shard, .. }) if shard == "shardId-000000000001"),
            "{decision:?}"
        );
    }

    #[test]
    fn cold_neighbours_merge_above_the_minimum_only() {
        let config = AutoscalerConfig { min_shards: 4, ..Default::default() };
        let cold = heat(&[(1, 1, 0, 3), (2, 1, 0, 3), (3, 1, 0, 3), (4, 1, 0, 3), (5, 1, 0, 3)]);
        assert!(matches!(decide(&config, &stream(5), &cold), Some(Decision::Merge { .. })));
        assert_eq!(decide(&config, &stream(4), &cold), None);
    }

    #[test]
    fn provisioned_streams_are_left_alone() {
        let mut provisioned = stream(4);
        provisioned.settings.mode = "PROVISIONED".into();
        assert_eq!(decide(&AutoscalerConfig::default(), &provisioned, &heat(&[(1, 5000, 9, 0)])), None);
    }
}
