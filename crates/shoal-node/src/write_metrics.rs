//! The write path's node-wide Prometheus series, registered once.
//!
//! A `metrics::histogram!` or `counter!` call looks its series up in the
//! recorder's registry every time (a key hash and a lock); a PutRecords call
//! records several per shard it touches. These handles are registered on first
//! use, which in every binary comes after the recorder is installed (it is
//! installed before the node starts), and then cost an atomic update.

use std::sync::LazyLock;

use metrics::{Counter, Histogram};

/// Handles to the write path's series.
pub struct WriteMetrics {
    /// `shoal_put_records_seconds`: a PutRecords call in the node's handler.
    pub put_records_seconds: Histogram,
    /// `shoal_put_records_failed_total`: records a PutRecords call could not store.
    pub put_records_failed: Counter,
    /// `shoal_append_seconds`: one shard's append on its leader, queue to applied.
    pub append_seconds: Histogram,
    /// `shoal_append_queued_seconds`: an append's wait in its group's queue.
    pub append_queued_seconds: Histogram,
    /// `shoal_append_raft_write_seconds`: one entry, from proposal to applied.
    pub append_raft_write_seconds: Histogram,
    /// `shoal_append_coalesced_parts`: appends per proposed entry.
    pub append_coalesced_parts: Histogram,
    /// `shoal_records_appended_total`: records appended as leader.
    pub records_appended: Counter,
}

/// The write path's series.
pub fn write_metrics() -> &'static WriteMetrics {
    static METRICS: LazyLock<WriteMetrics> = LazyLock::new(|| WriteMetrics {
        put_records_seconds: metrics::histogram!("shoal_put_records_seconds"),
        put_records_failed: metrics::counter!("shoal_put_records_failed_total"),
        append_seconds: metrics::histogram!("shoal_append_seconds"),
        append_queued_seconds: metrics::histogram!("shoal_append_queued_seconds"),
        append_raft_write_seconds: metrics::histogram!("shoal_append_raft_write_seconds"),
        append_coalesced_parts: metrics::histogram!("shoal_append_coalesced_parts"),
        records_appended: metrics::counter!("shoal_records_appended_total"),
    });
    &METRICS
}
