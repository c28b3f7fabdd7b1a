//! A shard's records as its state machine stores them, and the reads over them.
//!
//! A shard's keys start with its store id ([`shoal_types::Shard::store`]: the
//! group's id for a shard alone in its group, an id of its own for a shard that
//! shares one). Records live in [`Cf::Records`] under `store | log index |
//! offset`, so a scan returns them in sequence-number order. [`Cf::Arrivals`] maps
//! `store | arrival millis | log index` to the origins of the entry's batches; it
//! answers `AT_TIMESTAMP`, finds retried batches, and lets retention drop whole
//! ranges of expired records at once.

use serde::{Deserialize, Serialize};
use shoal_storage::{Batch, Cf, NodeDb, keys};
use shoal_types::{Record, RecordPosition, StoredRecord};

use crate::command::{BatchOrigin, Landed, RecordBatch};
use crate::log_store::{decode, encode};

/// How far a shard's state machine has got; published to readers on every apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardProgress {
    /// The position the next record will get; everything before it is applied.
    pub next_position: RecordPosition,
    pub last_arrival_millis: u64,
    /// Records ever applied (including ones since removed by retention).
    pub records_applied: u64,
    /// Set once the shard is sealed for resharding: every record sits before it.
    pub sealed_at: Option<RecordPosition>,
}

/// Batches with an origin id staged by the apply call in progress (not yet in the
/// database), so a retry applied in the same call is recognised too.
pub(crate) type StagedOrigins = Vec<(u128, Landed)>;

/// Bytes per origin in an arrival index value: id, first offset, count.
const ORIGIN_BYTES: usize = 24;
/// What versions before coalescing wrote: id and count, first offset 0.
const LEGACY_ORIGIN_BYTES: usize = 20;

/// The origins an arrival index value lists: `(id, first_offset, count)`.
fn origins_in(value: &[u8]) -> impl Iterator<Item = (u128, u32, u32)> + '_ {
    let u32_at = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let id_of = |b: &[u8]| {
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[..16]);
        u128::from_be_bytes(id)
    };
    let (size, legacy) = match value.len() {
        LEGACY_ORIGIN_BYTES => (LEGACY_ORIGIN_BYTES, true),
        _ => (ORIGIN_BYTES, false),
    };
    value.chunks_exact(size).map(move |chunk| match legacy {
        true => (id_of(chunk), 0, u32_at(chunk, 16)),
        false => (id_of(chunk), u32_at(chunk, 16), u32_at(chunk, 20)),
    })
}

/// Finds where batch `id` landed among the entries that arrived since `since_millis`.
fn find_landed(
    db: &NodeDb,
    store: u64,
    id: u128,
    since_millis: u64,
    staged: &StagedOrigins,
) -> std::io::Result<Option<Landed>> {
    if let Some((_, landed)) = staged.iter().find(|(staged_id, _)| *staged_id == id) {
        return Ok(Some(*landed));
    }
    let mut found = None;
    db.scan(Cf::Arrivals, &keys::group_u64_u64(store, since_millis, 0), &keys::group_end(store), |key, value| {
        let Some((_, first_offset, count)) = origins_in(value).find(|(origin, _, _)| *origin == id) else {
            return Ok(true);
        };
        let (Some(arrival_millis), Some(log_index)) = (keys::read_u64(key, 8), keys::read_u64(key, 16)) else {
            return Ok(true);
        };
        found = Some(Landed { log_index, first_offset, count, arrival_millis });
        Ok(false)
    })?;
    Ok(found)
}

/// Adds a batch of records, carried by the entry at `log_index`, to `batch` —
/// unless it is a retry of a batch that already landed, whose place is returned.
pub(crate) fn stage_append(
    db: &NodeDb,
    batch: &mut Batch<'_>,
    store: u64,
    log_index: u64,
    records: &RecordBatch,
    progress: &mut ShardProgress,
    staged: &mut StagedOrigins,
) -> std::io::Result<Landed> {
    let parts = [(records.origin, records.records.as_slice())];
    let landed = stage_parts(db, batch, store, log_index, records.arrival_millis, &parts, progress, staged)?;
    Ok(landed[0])
}

/// Adds the parts of a coalesced entry at `log_index` to `batch`, at consecutive
/// offsets; a part that retries a batch which already landed is not stored again
/// and answers with the first landing. Returns where each part landed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stage_parts(
    db: &NodeDb,
    batch: &mut Batch<'_>,
    store: u64,
    log_index: u64,
    arrival_millis: u64,
    parts: &[(BatchOrigin, &[Record])],
    progress: &mut ShardProgress,
    staged: &mut StagedOrigins,
) -> std::io::Result<Vec<Landed>> {
    let mut landings = Vec::with_capacity(parts.len());
    let mut next_offset = 0u32;
    // The arrival index entry also remembers each part's origin id and place.
    let mut origins = Vec::new();
    for (origin, records) in parts {
        if origin.id != 0
            && origin.retry_since_millis != 0
            && let Some(landed) = find_landed(db, store, origin.id, origin.retry_since_millis, staged)?
        {
            landings.push(landed);
            continue;
        }
        let first_offset = next_offset;
        for record in records.iter() {
            let stored =
                StoredRecord { partition_key: record.partition_key.clone(), data: record.data.clone(), arrival_millis };
            batch.put(Cf::Records, &keys::record(store, log_index, next_offset), &encode(&stored)?)?;
            next_offset += 1;
        }
        let landed = Landed { log_index, first_offset, count: next_offset - first_offset, arrival_millis };
        if origin.id != 0 && landed.count > 0 {
            origins.extend_from_slice(&origin.id.to_be_bytes());
            origins.extend_from_slice(&first_offset.to_be_bytes());
            origins.extend_from_slice(&landed.count.to_be_bytes());
            staged.push((origin.id, landed));
        }
        landings.push(landed);
    }
    if next_offset > 0 {
        batch.put(Cf::Arrivals, &keys::group_u64_u64(store, arrival_millis, log_index), &origins)?;
        progress.next_position = RecordPosition { log_index: log_index + 1, offset: 0 };
        progress.last_arrival_millis = progress.last_arrival_millis.max(arrival_millis);
        progress.records_applied += u64::from(next_offset);
    }
    Ok(landings)
}

/// A record read back from a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub position: RecordPosition,
    pub record: StoredRecord,
}

/// Reads up to `limit` records (and about `max_bytes`) starting at `from`.
pub fn read_records(
    db: &NodeDb,
    store: u64,
    from: RecordPosition,
    limit: usize,
    max_bytes: usize,
) -> std::io::Result<Vec<ReadRecord>> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let start = keys::record(store, from.log_index, from.offset);
    db.scan(Cf::Records, &start, &keys::group_end(store), |key, value| {
        let (Some(log_index), Some(offset)) = (keys::read_u64(key, 8), keys::read_u32(key, 16)) else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed record key"));
        };
        let record: StoredRecord = decode(value)?;
        bytes += record.data.len() + record.partition_key.len();
        if !out.is_empty() && bytes > max_bytes {
            return Ok(false);
        }
        out.push(ReadRecord { position: RecordPosition { log_index, offset }, record });
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// The position of the oldest record still kept (the trim horizon), if any.
pub fn first_position(db: &NodeDb, store: u64) -> std::io::Result<Option<RecordPosition>> {
    let found = db.first(Cf::Records, &keys::group_prefix(store), &keys::group_end(store))?;
    Ok(found.and_then(|(key, _)| {
        Some(RecordPosition { log_index: keys::read_u64(&key, 8)?, offset: keys::read_u32(&key, 16)? })
    }))
}

/// The first position whose records arrived at or after `millis`.
pub fn position_at_timestamp(db: &NodeDb, store: u64, millis: u64) -> std::io::Result<Option<RecordPosition>> {
    let from = keys::group_u64_u64(store, millis, 0);
    let found = db.first(Cf::Arrivals, &from, &keys::group_end(store))?;
    Ok(found.and_then(|(key, _)| Some(RecordPosition { log_index: keys::read_u64(&key, 16)?, offset: 0 })))
}

/// Removes every record that arrived before `cutoff_millis`, with two range
/// deletions rather than one delete per record. Returns whether anything expired.
pub fn expire_before(db: &NodeDb, store: u64, cutoff_millis: u64) -> std::io::Result<bool> {
    let oldest = db.first(Cf::Arrivals, &keys::group_prefix(store), &keys::group_end(store))?;
    let Some((oldest_key, _)) = oldest else { return Ok(false) };
    if keys::read_u64(&oldest_key, 8).is_none_or(|arrival| arrival >= cutoff_millis) {
        return Ok(false);
    }
    // Records up to (excluding) the first entry that is still within retention.
    let keep_from = position_at_timestamp(db, store, cutoff_millis)?;
    let mut batch = db.batch();
    let records_end = match keep_from {
        Some(position) => keys::record(store, position.log_index, 0).to_vec(),
        None => keys::group_end(store).to_vec(),
    };
    batch.delete_range(Cf::Records, &keys::group_prefix(store), &records_end)?;
    batch.delete_range(Cf::Arrivals, &keys::group_prefix(store), &keys::group_u64_u64(store, cutoff_millis, 0))?;
    batch.commit()?;
    Ok(true)
}

/// Everything a shard holds, for a snapshot sent to a follower that fell behind
/// the Raft log's purge point.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ShardDump {
    pub progress: ShardProgress,
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    pub arrivals: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(crate) fn dump(db: &NodeDb, store: u64, progress: ShardProgress) -> std::io::Result<ShardDump> {
    let mut dump = ShardDump { progress, ..Default::default() };
    for (cf, into) in [(Cf::Records, &mut dump.records), (Cf::Arrivals, &mut dump.arrivals)] {
        db.scan(cf, &keys::group_prefix(store), &keys::group_end(store), |k, v| {
            into.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })?;
    }
    Ok(dump)
}

pub(crate) fn stage_restore(batch: &mut Batch<'_>, store: u64, dump: &ShardDump) -> std::io::Result<()> {
    for (cf, rows) in [(Cf::Records, &dump.records), (Cf::Arrivals, &dump.arrivals)] {
        batch.delete_range(cf, &keys::group_prefix(store), &keys::group_end(store))?;
        for (k, v) in rows {
            if !k.starts_with(&keys::group_prefix(store)) {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "snapshot row of another store"));
            }
            batch.put(cf, k, v)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(n: usize, arrival_millis: u64) -> RecordBatch {
        let records = (0..n)
            .map(|i| Record { partition_key: format!("k{i}"), explicit_hash_key: None, data: vec![i as u8; 10] })
            .collect();
        RecordBatch { records, arrival_millis, origin: Default::default() }
    }

    #[test]
    fn appends_read_back_in_order_and_expire_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        for (log_index, arrival) in [(3u64, 100u64), (4, 200), (7, 300)] {
            let mut batch = db.batch();
            stage_append(&db, &mut batch, 5, log_index, &batch_of(3, arrival), &mut progress, &mut Vec::new()).unwrap();
            batch.commit().unwrap();
        }
        assert_eq!(progress.next_position, RecordPosition { log_index: 8, offset: 0 });
        let all = read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap();
        assert_eq!(all.len(), 9);
        assert!(all.windows(2).all(|w| w[0].position < w[1].position));
        let page = read_records(&db, 5, RecordPosition { log_index: 4, offset: 1 }, 2, usize::MAX).unwrap();
        assert_eq!(page.iter().map(|r| r.position.offset).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(position_at_timestamp(&db, 5, 150).unwrap(), Some(RecordPosition { log_index: 4, offset: 0 }));
        assert_eq!(position_at_timestamp(&db, 5, 301).unwrap(), None);

        assert!(expire_before(&db, 5, 250).unwrap());
        let left = read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap();
        assert_eq!(left.len(), 3);
        assert_eq!(left[0].position.log_index, 7);
        assert_eq!(first_position(&db, 5).unwrap(), Some(RecordPosition { log_index: 7, offset: 0 }));
        assert!(!expire_before(&db, 5, 250).unwrap());
    }

    #[test]
    fn reads_stop_at_the_byte_budget_but_return_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        let mut batch = db.batch();
        stage_append(&db, &mut batch, 1, 1, &batch_of(10, 1), &mut progress, &mut Vec::new()).unwrap();
        batch.commit().unwrap();
        assert_eq!(read_records(&db, 1, RecordPosition::START, 100, 25).unwrap().len(), 2);
        assert_eq!(read_records(&db, 1, RecordPosition::START, 100, 1).unwrap().len(), 1);
    }

    #[test]
    fn coalesced_parts_take_consecutive_offsets_and_a_retried_part_lands_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        let (a, b, c) = (batch_of(2, 1_000), batch_of(3, 1_000), batch_of(1, 1_000));
        let first = BatchOrigin { id: 7, retry_since_millis: 0 };
        let parts = [(first, a.records.as_slice()), (BatchOrigin::default(), b.records.as_slice())];
        let mut batch = db.batch();
        let landed = stage_parts(&db, &mut batch, 4, 10, 1_000, &parts, &mut progress, &mut Vec::new()).unwrap();
        batch.commit().unwrap();
        assert_eq!((landed[0].first_offset, landed[0].count), (0, 2));
        assert_eq!((landed[1].first_offset, landed[1].count), (2, 3));

        // A retry of part 7 coalesced with a new part: the retry is not stored again.
        let retry = BatchOrigin { id: 7, retry_since_millis: 500 };
        let parts =
            [(retry, a.records.as_slice()), (BatchOrigin { id: 8, retry_since_millis: 0 }, c.records.as_slice())];
        let mut batch = db.batch();
        let again = stage_parts(&db, &mut batch, 4, 11, 1_100, &parts, &mut progress, &mut Vec::new()).unwrap();
        batch.commit().unwrap();
        assert_eq!(again[0], landed[0]);
        assert_eq!((again[1].log_index, again[1].first_offset, again[1].count), (11, 0, 1));
        assert_eq!(read_records(&db, 4, RecordPosition::START, 100, usize::MAX).unwrap().len(), 6);
        assert_eq!(progress.records_applied, 6);
    }

    #[test]
    fn arrival_values_written_before_coalescing_still_name_their_batch() {
        let mut legacy = 42u128.to_be_bytes().to_vec();
        legacy.extend_from_slice(&5u32.to_be_bytes());
        assert_eq!(origins_in(&legacy).collect::<Vec<_>>(), vec![(42, 0, 5)]);
        assert_eq!(origins_in(&[]).count(), 0);
    }

    #[test]
    fn a_retried_batch_lands_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        let mut first = batch_of(4, 1_000);
        first.origin = BatchOrigin { id: 42, retry_since_millis: 0 };
        let mut retry = batch_of(4, 1_500);
        retry.origin = BatchOrigin { id: 42, retry_since_millis: 900 };
        let mut other = batch_of(2, 1_600);
        other.origin = BatchOrigin { id: 43, retry_since_millis: 900 };

        // In separate apply calls: the retry finds the first landing in the database.
        let mut batch = db.batch();
        let landed = stage_append(&db, &mut batch, 9, 5, &first, &mut progress, &mut Vec::new()).unwrap();
        batch.commit().unwrap();
        let mut batch = db.batch();
        let again = stage_append(&db, &mut batch, 9, 6, &retry, &mut progress, &mut Vec::new()).unwrap();
        batch.commit().unwrap();
        assert_eq!(again, landed);
        // A retry whose first attempt never landed is stored.
        let mut batch = db.batch();
        let stored = stage_append(&db, &mut batch, 9, 7, &other, &mut progress, &mut Vec::new()).unwrap();
        batch.commit().unwrap();
        assert_eq!(stored.log_index, 7);
        assert_eq!(read_records(&db, 9, RecordPosition::START, 100, usize::MAX).unwrap().len(), 6);

        // In one apply call: the retry finds the first among the staged batches.
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut staged = Vec::new();
        let mut batch = db.batch();
        let landed = stage_append(&db, &mut batch, 9, 5, &first, &mut progress, &mut staged).unwrap();
        let again = stage_append(&db, &mut batch, 9, 6, &retry, &mut progress, &mut staged).unwrap();
        batch.commit().unwrap();
        assert_eq!(again, landed);
        assert_eq!(read_records(&db, 9, RecordPosition::START, 100, usize::MAX).unwrap().len(), 4);
    }
}
