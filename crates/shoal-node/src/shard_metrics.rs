//! A shard's own Prometheus series (labelled with its stream and shard id).
//!
//! Every append and every read of a shard bumps them. Built from a name and labels
//! each time, a series costs two string copies, a key hash and a registry lookup per
//! call; these handles are registered once, when the node takes the shard on (the
//! recorder is installed before the node starts), and then cost an atomic add.

use metrics::{Counter, Gauge};

/// Handles to one shard's series.
pub struct ShardMetrics {
    /// `shoal_shard_incoming_records_total`: records this node appended as leader.
    pub incoming_records: Counter,
    /// `shoal_shard_incoming_bytes_total`: their bytes.
    pub incoming_bytes: Counter,
    /// `shoal_shard_outgoing_records_total`: records read from this node.
    pub outgoing_records: Counter,
    /// `shoal_shard_outgoing_bytes_total`: their bytes.
    pub outgoing_bytes: Counter,
    /// `shoal_shard_iterator_age_milliseconds`: how far behind the last read was.
    pub iterator_age_millis: Gauge,
}

impl ShardMetrics {
    pub fn new(stream: &str, shard: &str) -> Self {
        let labels = [("stream", stream.to_string()), ("shard", shard.to_string())];
        ShardMetrics {
            incoming_records: metrics::counter!("shoal_shard_incoming_records_total", &labels),
            incoming_bytes: metrics::counter!("shoal_shard_incoming_bytes_total", &labels),
            outgoing_records: metrics::counter!("shoal_shard_outgoing_records_total", &labels),
            outgoing_bytes: metrics::counter!("shoal_shard_outgoing_bytes_total", &labels),
            iterator_age_millis: metrics::gauge!("shoal_shard_iterator_age_milliseconds", &labels),
        }
    }
}
