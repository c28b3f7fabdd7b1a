//! What the node's RocksDB is doing, for Prometheus and for people: memtables,
//! level-0 files, pending compaction and write stalls. Read at scrape time, so a
//! node that is never scraped pays nothing.

use shoal_storage::Cf;

use crate::node::Node;

/// Integer properties summed over the column families, as gauges.
const SUMMED: [(&str, &str); 5] = [
    ("rocksdb.cur-size-all-mem-tables", "shoal_rocksdb_memtable_bytes"),
    ("rocksdb.num-immutable-mem-table", "shoal_rocksdb_immutable_memtables"),
    ("rocksdb.num-files-at-level0", "shoal_rocksdb_level0_files"),
    ("rocksdb.estimate-pending-compaction-bytes", "shoal_rocksdb_pending_compaction_bytes"),
    ("rocksdb.live-sst-files-size", "shoal_rocksdb_live_sst_bytes"),
];

/// Properties of the whole database, as gauges.
const WHOLE: [(&str, &str); 5] = [
    ("rocksdb.background-errors", "shoal_rocksdb_background_errors"),
    ("rocksdb.is-write-stopped", "shoal_rocksdb_write_stopped"),
    ("rocksdb.actual-delayed-write-rate", "shoal_rocksdb_delayed_write_rate_bytes"),
    ("rocksdb.num-running-flushes", "shoal_rocksdb_running_flushes"),
    ("rocksdb.num-running-compactions", "shoal_rocksdb_running_compactions"),
];

/// Sets the `shoal_rocksdb_*` gauges of `node` (label `node`) to their current values.
pub fn record(node: &Node) {
    let label = node.id.to_string();
    let read = |value: std::io::Result<Option<u64>>| match value {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!(node = node.id, %error, "reading a RocksDB property failed");
            None
        }
    };
    // Groups whose Raft stopped because a write to this storage failed.
    let stopped = node.groups.all().iter().filter(|handle| handle.stopped().is_some()).count();
    metrics::gauge!("shoal_raft_groups_stopped", "node" => label.clone()).set(stopped as f64);
    // Decoded log entries the node keeps for its readers (records live in the log).
    let cached = node.db.decoded_entries().bytes();
    metrics::gauge!("shoal_decoded_entries_bytes", "node" => label.clone()).set(cached as f64);
    for (property, gauge) in SUMMED {
        if let Some(value) = read(node.db.property_total(property)) {
            metrics::gauge!(gauge, "node" => label.clone()).set(value as f64);
        }
    }
    for (property, gauge) in WHOLE {
        if let Some(value) = read(node.db.property_int(property)) {
            metrics::gauge!(gauge, "node" => label.clone()).set(value as f64);
        }
    }
}

/// RocksDB's own report: the database's (`rocksdb.dbstats`: writes, WAL syncs,
/// cumulative stalls), then per column family its levels, the bytes flushes and
/// compactions wrote and read, and its stalls (`rocksdb.cfstats-no-file-histogram`).
pub fn report(node: &Node) -> String {
    let mut out = format!("node {}\n", node.id);
    match node.db.property("rocksdb.dbstats") {
        Ok(Some(stats)) => out.push_str(&stats),
        Ok(None) => {
            out.push_str("an in-memory database keeps no RocksDB statistics\n");
            return out;
        }
        Err(error) => out.push_str(&format!("{error}\n")),
    }
    for cf in Cf::ALL {
        out.push_str(&format!("\ncolumn family {}\n", cf.name()));
        match node.db.cf_property(cf, "rocksdb.cfstats-no-file-histogram") {
            Ok(stats) => out.push_str(&stats.unwrap_or_default()),
            Err(error) => out.push_str(&format!("{error}\n")),
        }
    }
    out.push('\n');
    out
}
