//! The properties checked once the cluster has healed and converged.
//!
//! * Log matching: entries at the same index up to the commit point are identical
//!   on every replica.
//! * State machine safety: every replica applied the same records and the same
//!   metadata state.
//! * Client-visible: every acknowledged record is present exactly once, at the
//!   position its acknowledgement gave; one producer's acknowledged batches
//!   appear in the order they were acknowledged; no batch is stored twice (its
//!   retries included); every acknowledged stream exists.

use std::collections::BTreeMap;

use openraft::RaftLogReader;
use shoal_raft::GroupLogStore;
use shoal_types::stream::META_GROUP_ID;
use shoal_types::{GroupId, RecordPosition};

use super::node::SimNode;
use super::workload::{Ledger, parse_payload};

/// Log matching: the entries every replica holds up to `committed` are identical.
/// (Above each replica's purge point: a shard group keeps purged entries for their
/// records, and a replica that installed a snapshot may keep stale ones there.)
pub async fn logs_match(nodes: &[SimNode], group: GroupId, committed: u64) -> Result<(), String> {
    let mut reference: Option<(u64, BTreeMap<u64, String>)> = None;
    for node in nodes {
        // The log store itself hides entries below its purge point.
        let mut log = GroupLogStore::new(node.db().clone(), group);
        let entries = log
            .try_get_log_entries(0..=committed)
            .await
            .map_err(|e| format!("node {}: reading the log of group {group}: {e}", node.id))?;
        let entries: BTreeMap<u64, String> = entries.iter().map(|e| (e.log_id.index, format!("{e:?}"))).collect();
        match &reference {
            None => reference = Some((node.id, entries)),
            Some((first, expected)) => {
                for (index, entry) in &entries {
                    if let Some(other) = expected.get(index)
                        && other != entry
                    {
                        return Err(format!(
                            "log matching: group {group} index {index} differs: node {first} has {other}, node {} has {entry}",
                            node.id
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// State machine safety for a shard: every replica holds the same records.
pub fn replicas_agree_on_records(nodes: &[SimNode], store: u64) -> Result<(), String> {
    let first = nodes[0].records(store)?;
    for node in &nodes[1..] {
        let records = node.records(store)?;
        if records != first {
            let at = first.iter().zip(&records).position(|(a, b)| a != b).unwrap_or(first.len().min(records.len()));
            return Err(format!(
                "state machine safety: shard {store}: node {} has {} records, node {} has {}; first difference at #{at}: {:?} vs {:?}",
                nodes[0].id,
                first.len(),
                node.id,
                records.len(),
                first.get(at),
                records.get(at)
            ));
        }
    }
    Ok(())
}

/// State machine safety for the metadata group: every replica has the same state.
pub fn replicas_agree_on_metadata(nodes: &[SimNode]) -> Result<(), String> {
    let first = nodes[0].meta_state().ok_or("node is down at the end")?;
    for node in &nodes[1..] {
        let state = node.meta_state().ok_or("node is down at the end")?;
        if state != first {
            return Err(format!(
                "state machine safety: metadata of node {} ({} streams) differs from node {} ({} streams)",
                nodes[0].id,
                first.streams.len(),
                node.id,
                state.streams.len()
            ));
        }
    }
    Ok(())
}

/// The client-visible properties of the records of the shard stored under `store`.
pub fn acknowledged_records_survive(nodes: &[SimNode], store: u64, ledger: &Ledger) -> Result<(), String> {
    let mut found: BTreeMap<(u32, u64, u32), Vec<RecordPosition>> = BTreeMap::new();
    for read in nodes[0].records(store)? {
        if read.record.partition_key == "probe" {
            continue;
        }
        let key = parse_payload(&read.record.data)
            .ok_or_else(|| format!("shard {store}: unreadable record at {:?}", read.position))?;
        found.entry(key).or_default().push(read.position);
    }
    if let Some((key, positions)) = found.iter().find(|(_, positions)| positions.len() > 1) {
        return Err(format!(
            "exactly once: shard {store}: record (producer, batch, index) {key:?} is stored {} times, at {positions:?}",
            positions.len()
        ));
    }
    let mut last_of_producer: BTreeMap<u32, (u64, RecordPosition)> = BTreeMap::new();
    for batch in ledger.acked_batches().into_iter().filter(|b| b.store == store) {
        for index in 0..batch.count {
            let expected = RecordPosition { log_index: batch.log_index, offset: batch.first_offset + index };
            let position = match found.get(&(batch.producer, batch.seq, index)).map(Vec::as_slice) {
                Some([position]) => *position,
                _ => {
                    return Err(format!(
                        "durability: shard {store}: record {index} of producer {} batch {} was acknowledged at {expected:?} but is missing",
                        batch.producer, batch.seq
                    ));
                }
            };
            if position != expected {
                return Err(format!(
                    "durability: shard {store}: record {index} of producer {} batch {} was acknowledged at {expected:?} but sits at {position:?}",
                    batch.producer, batch.seq
                ));
            }
        }
        let first = RecordPosition { log_index: batch.log_index, offset: batch.first_offset };
        if let Some((seq, previous)) = last_of_producer.get(&batch.producer)
            && *previous >= first
        {
            return Err(format!(
                "order: shard {store}: producer {} batch {} (at {first:?}) was acknowledged after batch {seq} (at {previous:?}) but sits before it",
                batch.producer, batch.seq
            ));
        }
        last_of_producer.insert(batch.producer, (batch.seq, first));
    }
    Ok(())
}

/// Every stream whose creation was acknowledged exists.
pub fn acknowledged_streams_exist(nodes: &[SimNode], ledger: &Ledger) -> Result<(), String> {
    let state = nodes[0].meta_state().ok_or("node is down at the end")?;
    for name in ledger.acked_streams() {
        if !state.streams.contains_key(&name) {
            return Err(format!(
                "durability: group {META_GROUP_ID}: creating stream {name} was acknowledged but it does not exist"
            ));
        }
    }
    Ok(())
}
