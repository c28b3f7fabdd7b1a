//! A shard's records as its state machine stores them, and the reads over them.
//!
//! A shard's keys start with its store id ([`shoal_types::Shard::store`]: the
//! group's id for a shard alone in its group, an id of its own for a shard that
//! shares one).
//!
//! **The Raft log is the record store.** A record's bytes are written once per
//! replica, in the Raft log entry that carried them (to the WAL, then to the log's
//! blob files at a flush); the state machine keeps only an index row in
//! [`Cf::Records`] under `store | log index`, which names the group whose log holds
//! the entry and how many of its records are the shard's ([`RecordsInEntry`]). A read
//! loads the entry and takes the shard's records out of it. The group's log keeps
//! an entry until retention has dropped every index row that points into it
//! ([`release_log`]), not merely until openraft has purged it.
//!
//! Versions before this stored each record in [`Cf::Records`] under `store | log
//! index | offset` (a 20-byte key rather than 16). Such rows are still read, and a
//! snapshot sent to a follower carries records in that form, so old and new nodes
//! exchange the same snapshots and a follower that installs one needs no log.
//!
//! A scan of either kind of row returns records in sequence-number order.
//! [`Cf::Arrivals`] maps `store | arrival millis | log index` to the origins of the
//! entry's batches; it answers `AT_TIMESTAMP`, finds retried batches, and lets
//! retention drop whole ranges of expired records at once.

use serde::{Deserialize, Serialize};
use shoal_storage::{Batch, Cf, NodeDb, keys};
use shoal_types::{Record, RecordPosition, StoredRecord};

use crate::command::{BatchOrigin, Command, Landed, RecordBatch};
use crate::log_store::{self, decode, encode};
use crate::logged_command::LoggedCommand;

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

/// Finds where batch `id` landed among the entries before `before_log_index`
/// that arrived since `since_millis`. Only earlier entries count: a follower that
/// installed a snapshot holds the arrival rows of entries after the snapshot too,
/// and must not take the entry it is applying for an earlier landing of itself.
fn find_landed(
    db: &NodeDb,
    store: u64,
    id: u128,
    (since_millis, before_log_index): (u64, u64),
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
        if log_index >= before_log_index {
            return Ok(true);
        }
        found = Some(Landed { log_index, first_offset, count, arrival_millis });
        Ok(false)
    })?;
    Ok(found)
}

/// Adds a batch of records, carried by the entry at `log_index`, to `batch` —
/// unless it is a retry of a batch that already landed, whose place is returned.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stage_append(
    db: &NodeDb,
    batch: &mut Batch<'_>,
    group: u64,
    store: u64,
    log_index: u64,
    records: &RecordBatch,
    progress: &mut ShardProgress,
    staged: &mut StagedOrigins,
) -> std::io::Result<Landed> {
    let parts = [(records.origin, records.records.as_slice())];
    let landed = stage_parts(db, batch, group, store, log_index, records.arrival_millis, &parts, progress, staged)?;
    Ok(landed[0])
}

/// Adds the parts of a coalesced entry at `log_index` of `group`'s log to
/// `batch`, at consecutive offsets; a part that retries a batch which already
/// landed is not stored again and answers with the first landing. Returns where
/// each part landed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stage_parts(
    db: &NodeDb,
    batch: &mut Batch<'_>,
    group: u64,
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
    let mut skipped = Vec::new();
    for (part, (origin, records)) in parts.iter().enumerate() {
        if origin.id != 0
            && origin.retry_since_millis != 0
            && let Some(landed) = find_landed(db, store, origin.id, (origin.retry_since_millis, log_index), staged)?
        {
            landings.push(landed);
            skipped.push(part as u32);
            continue;
        }
        let first_offset = next_offset;
        next_offset += records.len() as u32;
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
        let row = RecordsInEntry { group, count: next_offset, skipped };
        batch.put(Cf::Records, &keys::group_u64(store, log_index), &encode(&row)?)?;
        batch.put(Cf::Arrivals, &keys::group_u64_u64(store, arrival_millis, log_index), &origins)?;
        progress.next_position = RecordPosition { log_index: log_index + 1, offset: 0 };
        progress.last_arrival_millis = progress.last_arrival_millis.max(arrival_millis);
        progress.records_applied += u64::from(next_offset);
    }
    Ok(landings)
}

/// The index row of a shard's records in one Raft log entry, kept in
/// [`Cf::Records`] under `store | log index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RecordsInEntry {
    /// The group whose log holds the entry.
    group: u64,
    /// How many of the entry's records are the shard's (offsets `0..count`).
    count: u32,
    /// The shard's parts in the entry that retried a batch stored before, and so
    /// were not stored again (by position among the shard's parts).
    skipped: Vec<u32>,
}

/// A record read back from a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub position: RecordPosition,
    pub record: StoredRecord,
}

/// One row of [`Cf::Records`], by the length of its key.
enum RecordsRow {
    /// `store | log index`: an index into a Raft log entry.
    InLog { log_index: u64 },
    /// `store | log index | offset`: a record stored whole (older versions, and
    /// records a follower received in a snapshot).
    Whole { position: RecordPosition },
}

fn row_of(key: &[u8]) -> std::io::Result<RecordsRow> {
    let malformed = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed record key");
    let log_index = keys::read_u64(key, 8).ok_or_else(malformed)?;
    match key.len() {
        16 => Ok(RecordsRow::InLog { log_index }),
        20 => Ok(RecordsRow::Whole {
            position: RecordPosition { log_index, offset: keys::read_u32(key, 16).ok_or_else(malformed)? },
        }),
        _ => Err(malformed()),
    }
}

/// The shard's records in the log entry an index row points to, in offset order,
/// with their arrival time; `None` if the entry is gone (retention removed it
/// after the row was read). The entry comes from the node's cache of decoded
/// entries if it is there, and goes into it if not, for the group's other shards.
fn records_in_log(
    db: &NodeDb,
    store: u64,
    log_index: u64,
    row: &RecordsInEntry,
) -> std::io::Result<Option<(u64, Vec<Record>)>> {
    let corrupt = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("log entry {log_index} of group {} {what} for store {store}", row.group),
        )
    };
    let cache = db.decoded_entries();
    let cached = cache.get(row.group, log_index).and_then(|entry| entry.downcast::<LoggedCommand>().ok());
    let command = match cached {
        Some(command) => command,
        None => {
            let Some(bytes) = db.get(Cf::RaftLog, &keys::group_u64(row.group, log_index))? else {
                // Retention removed it after its row was read; anything else would
                // be a bug, so it is counted rather than passed over in silence.
                metrics::counter!("shoal_records_entry_missing_total").increment(1);
                tracing::debug!(group = row.group, log_index, store, "records' log entry missing");
                return Ok(None);
            };
            let entry = crate::entry_codec::decode_entry(&bytes::Bytes::from(bytes))?;
            let openraft::EntryPayload::Normal(command) = entry.payload else {
                return Err(corrupt("holds no records"));
            };
            if let Some(size) = command.record_bytes() {
                cache.insert(row.group, log_index, command.clone(), size);
            }
            command
        }
    };
    let (arrival_millis, parts): (u64, Vec<&[Record]>) = match &**command {
        Command::Append(batch) => (batch.arrival_millis, vec![&batch.records]),
        Command::AppendMany(batch) => (batch.arrival_millis, batch.parts.iter().map(|p| &p.records[..]).collect()),
        Command::AppendShards(appends) => {
            // The first mention counts: the state machine refuses a second one.
            let append = appends.iter().find(|a| a.shard == store).ok_or_else(|| corrupt("holds no records"))?;
            (append.batch.arrival_millis, append.batch.parts.iter().map(|p| &p.records[..]).collect())
        }
        _ => return Err(corrupt("holds no records")),
    };
    let records: Vec<Record> = parts
        .into_iter()
        .enumerate()
        .filter(|(part, _)| !row.skipped.contains(&(*part as u32)))
        .flat_map(|(_, records)| records.iter().cloned())
        .collect();
    if records.len() != row.count as usize {
        return Err(corrupt(&format!("holds {} records, not {}", records.len(), row.count)));
    }
    Ok(Some((arrival_millis, records)))
}

/// Reads up to `limit` records (and about `max_bytes`) starting at `from`.
pub fn read_records(
    db: &NodeDb,
    store: u64,
    from: RecordPosition,
    limit: usize,
    max_bytes: usize,
) -> std::io::Result<Vec<ReadRecord>> {
    read_page(db, store, from, limit, max_bytes).map(|page| page.records)
}

/// A page of a shard's records, and whether the shard held more after it when
/// it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsPage {
    pub records: Vec<ReadRecord>,
    pub more_follow: bool,
}

/// What taking one more record into a page did.
enum Took {
    /// Taken; the page has room for more.
    Room,
    /// Taken; the page is full.
    Full,
    /// Not taken: it would have gone over the page's bytes.
    Over,
}

/// Reads up to `limit` records (and about `max_bytes`) starting at `from`, and
/// whether more follow them, with one pass over the shard's rows: a tailing
/// reader (GetRecords, a push subscription) reads a page many times a second,
/// and opening a second RocksDB iterator to ask what follows the page cost a
/// fifth of its read.
pub fn read_page(
    db: &NodeDb,
    store: u64,
    from: RecordPosition,
    limit: usize,
    max_bytes: usize,
) -> std::io::Result<RecordsPage> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    let mut take = |position: RecordPosition, record: StoredRecord, out: &mut Vec<ReadRecord>| {
        bytes += record.data.len() + record.partition_key.len();
        if !out.is_empty() && bytes > max_bytes {
            return Took::Over;
        }
        out.push(ReadRecord { position, record });
        if out.len() < limit { Took::Room } else { Took::Full }
    };
    // From the index row of `from`'s entry, which sorts before its whole records.
    let start = keys::group_u64(store, from.log_index);
    // An entry can have both: a follower that installed a snapshot got records
    // newer than the snapshot whole, then applied their entries after it. The
    // index row comes first and counts; the whole copies are the same records.
    let mut indexed = None;
    // Once the page is full, the scan goes on only to see whether a record follows.
    let mut full = false;
    let mut more_follow = false;
    db.scan(Cf::Records, &start, &keys::group_end(store), |key, value| {
        let row = row_of(key)?;
        if full {
            if let RecordsRow::Whole { position } = row
                && indexed == Some(position.log_index)
            {
                return Ok(true);
            }
            // Any later row holds a record: an index row is written only for an
            // entry that added records to the shard.
            more_follow = true;
            return Ok(false);
        }
        match row {
            RecordsRow::Whole { position } if position < from || indexed == Some(position.log_index) => Ok(true),
            RecordsRow::Whole { position } => match take(position, decode(value)?, &mut out) {
                Took::Room => Ok(true),
                Took::Full => {
                    full = true;
                    Ok(true)
                }
                Took::Over => {
                    more_follow = true;
                    Ok(false)
                }
            },
            RecordsRow::InLog { log_index } => {
                indexed = Some(log_index);
                let row: RecordsInEntry = decode(value)?;
                let Some((arrival_millis, records)) = records_in_log(db, store, log_index, &row)? else {
                    return Ok(true);
                };
                let in_entry = records.len();
                for (offset, record) in records.into_iter().enumerate() {
                    let position = RecordPosition { log_index, offset: offset as u32 };
                    if position < from {
                        continue;
                    }
                    let stored =
                        StoredRecord { partition_key: record.partition_key, data: record.data, arrival_millis };
                    match take(position, stored, &mut out) {
                        Took::Room => {}
                        Took::Full if offset + 1 == in_entry => {
                            full = true;
                            return Ok(true);
                        }
                        Took::Full | Took::Over => {
                            more_follow = true;
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            }
        }
    })?;
    Ok(RecordsPage { records: out, more_follow })
}

/// The position of the oldest record still kept (the trim horizon), if any.
pub fn first_position(db: &NodeDb, store: u64) -> std::io::Result<Option<RecordPosition>> {
    let found = db.first(Cf::Records, &keys::group_prefix(store), &keys::group_end(store))?;
    match found {
        None => Ok(None),
        Some((key, _)) => Ok(Some(match row_of(&key)? {
            RecordsRow::InLog { log_index } => RecordPosition { log_index, offset: 0 },
            RecordsRow::Whole { position } => position,
        })),
    }
}

/// The first position whose records arrived at or after `millis`.
pub fn position_at_timestamp(db: &NodeDb, store: u64, millis: u64) -> std::io::Result<Option<RecordPosition>> {
    let from = keys::group_u64_u64(store, millis, 0);
    let found = db.first(Cf::Arrivals, &from, &keys::group_end(store))?;
    Ok(found.and_then(|(key, _)| Some(RecordPosition { log_index: keys::read_u64(&key, 16)?, offset: 0 })))
}

/// Removes every record that arrived before `cutoff_millis`, with two range
/// deletions rather than one delete per record. Returns whether anything expired.
/// The log entries that held them go later, with [`release_log`].
pub fn expire_before(db: &NodeDb, store: u64, cutoff_millis: u64) -> std::io::Result<bool> {
    let oldest = db.first(Cf::Arrivals, &keys::group_prefix(store), &keys::group_end(store))?;
    let Some((oldest_key, _)) = oldest else { return Ok(false) };
    if keys::read_u64(&oldest_key, 8).is_none_or(|arrival| arrival >= cutoff_millis) {
        return Ok(false);
    }
    // Records up to (excluding) the first entry that is still within retention:
    // its index row and whole records all sort at or after `store | log index`.
    let keep_from = position_at_timestamp(db, store, cutoff_millis)?;
    let mut batch = db.batch();
    let records_end = match keep_from {
        Some(position) => keys::group_u64(store, position.log_index).to_vec(),
        None => keys::group_end(store).to_vec(),
    };
    batch.delete_range(Cf::Records, &keys::group_prefix(store), &records_end)?;
    batch.delete_range(Cf::Arrivals, &keys::group_prefix(store), &keys::group_u64_u64(store, cutoff_millis, 0))?;
    batch.commit()?;
    Ok(true)
}

/// What [`release_log`] did and left.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogRelease {
    /// Entries removed: the log now starts at this index or later.
    pub released_below: Option<u64>,
    /// Entries that no shard reads any more but openraft has not purged yet
    /// (counted by index): they go once openraft purges up to `needed_from - 1`.
    pub awaiting_purge: u64,
    /// The first entry a shard of the group still reads (the log's end if none).
    pub needed_from: u64,
}

/// Removes the entries at the start of `group`'s Raft log that no shard of the
/// group (`stores`: all of them) reads any more and that openraft has purged. A
/// shard's records live in the log entries that carried them, so a shard group's
/// log is kept past openraft's purges ([`crate::GroupLogStore::for_shards`]) and
/// shrinks only here, after retention has dropped the index rows that pointed
/// into it.
pub fn release_log(db: &NodeDb, group: u64, stores: &[u64]) -> std::io::Result<LogRelease> {
    let first_entry = db.first(Cf::RaftLog, &keys::group_prefix(group), &keys::group_end(group))?;
    let Some(first_entry) = first_entry.and_then(|(key, _)| keys::read_u64(&key, 8)) else {
        return Ok(LogRelease::default());
    };
    let Some(last_entry) = log_store::last_index(db, group)? else { return Ok(LogRelease::default()) };
    // With no record left, every entry is unneeded: those not yet applied lie
    // above openraft's purge point, which bounds the release anyway.
    let mut needed_from = last_entry.saturating_add(1);
    for store in stores {
        if let Some(first) = first_position(db, *store)? {
            needed_from = needed_from.min(first.log_index);
        }
    }
    let bound = match log_store::purged_index(db, group)? {
        Some(purged) => needed_from.min(purged.saturating_add(1)),
        None => 0,
    };
    let awaiting_purge = needed_from.saturating_sub(bound.max(first_entry));
    if bound <= first_entry {
        return Ok(LogRelease { released_below: None, awaiting_purge, needed_from });
    }
    let mut batch = db.batch();
    batch.delete_range(Cf::RaftLog, &keys::group_u64(group, 0), &keys::group_u64(group, bound))?;
    batch.commit()?;
    Ok(LogRelease { released_below: Some(bound), awaiting_purge, needed_from })
}

/// Everything a shard holds, for a snapshot sent to a follower that fell behind
/// the Raft log's purge point. Records are carried whole (`store | log index |
/// offset` rows), whether this node keeps them whole or in its log.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ShardDump {
    pub progress: ShardProgress,
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
    pub arrivals: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(crate) fn dump(db: &NodeDb, store: u64, progress: ShardProgress) -> std::io::Result<ShardDump> {
    let mut dump = ShardDump { progress, ..Default::default() };
    for read in read_records(db, store, RecordPosition::START, usize::MAX, usize::MAX)? {
        let key = keys::record(store, read.position.log_index, read.position.offset);
        dump.records.push((key.to_vec(), encode(&read.record)?));
    }
    db.scan(Cf::Arrivals, &keys::group_prefix(store), &keys::group_end(store), |k, v| {
        dump.arrivals.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })?;
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
    use crate::command::{AppendPart, CoalescedBatch, ShardAppend};
    use crate::type_config::{Entry, TypeConfig};

    fn batch_of(n: usize, arrival_millis: u64) -> RecordBatch {
        let records = (0..n)
            .map(|i| Record { partition_key: format!("k{i}"), explicit_hash_key: None, data: vec![i as u8; 10].into() })
            .collect();
        RecordBatch { records: std::sync::Arc::new(records), arrival_millis, origin: Default::default() }
    }

    /// Stores `command` as the entry at `log_index` of `group`'s Raft log.
    fn log(db: &NodeDb, group: u64, log_index: u64, command: Command) {
        let entry = Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(1, 1, log_index),
            payload: openraft::EntryPayload::Normal(std::sync::Arc::new(command.into())),
        };
        db.put_synced(Cf::RaftLog, &keys::group_u64(group, log_index), &encode(&entry).unwrap()).unwrap();
    }

    /// Logs and applies `records` as the entry at `log_index` of a shard alone in
    /// its group (stored under the group's id).
    fn append(db: &NodeDb, store: u64, log_index: u64, records: &RecordBatch, progress: &mut ShardProgress) -> Landed {
        log(db, store, log_index, Command::Append(records.clone()));
        let mut batch = db.batch();
        let landed = stage_append(db, &mut batch, store, store, log_index, records, progress, &mut Vec::new()).unwrap();
        batch.commit().unwrap();
        landed
    }

    fn coalesced(arrival_millis: u64, parts: &[(BatchOrigin, &RecordBatch)]) -> CoalescedBatch {
        let parts =
            parts.iter().map(|(origin, b)| AppendPart { origin: *origin, records: b.records.clone() }).collect();
        CoalescedBatch { arrival_millis, parts }
    }

    fn stage_coalesced(
        db: &NodeDb,
        group: u64,
        store: u64,
        log_index: u64,
        batch: &CoalescedBatch,
        progress: &mut ShardProgress,
    ) -> Vec<Landed> {
        let parts: Vec<_> = batch.parts.iter().map(|p| (p.origin, p.records.as_slice())).collect();
        let mut write = db.batch();
        let landed = stage_parts(
            db,
            &mut write,
            group,
            store,
            log_index,
            batch.arrival_millis,
            &parts,
            progress,
            &mut Vec::new(),
        )
        .unwrap();
        write.commit().unwrap();
        landed
    }

    /// A fresh database holding only `dump`, restored as a follower installs a snapshot.
    fn restored(store: u64, dump: &ShardDump) -> (tempfile::TempDir, NodeDb) {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut batch = db.batch();
        stage_restore(&mut batch, store, dump).unwrap();
        batch.commit_synced().unwrap();
        (dir, db)
    }

    /// Whether the shard holds a record at `from` or after it, asked on its own:
    /// the second pass [`read_page`] saves, kept as the answer it must agree with.
    fn has_records_from(db: &NodeDb, store: u64, from: RecordPosition) -> std::io::Result<bool> {
        let mut found = false;
        db.scan(Cf::Records, &keys::group_u64(store, from.log_index), &keys::group_end(store), |key, value| {
            found = match row_of(key)? {
                RecordsRow::Whole { position } => position >= from,
                RecordsRow::InLog { log_index } => {
                    log_index > from.log_index || decode::<RecordsInEntry>(value)?.count > from.offset
                }
            };
            Ok(!found)
        })?;
        Ok(found)
    }

    fn all(db: &NodeDb, store: u64) -> Vec<ReadRecord> {
        read_records(db, store, RecordPosition::START, 100, usize::MAX).unwrap()
    }

    fn rows(db: &NodeDb, store: u64) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        db.scan(Cf::Records, &keys::group_prefix(store), &keys::group_end(store), |k, _| {
            keys.push(k.to_vec());
            Ok(true)
        })
        .unwrap();
        keys
    }

    #[test]
    fn appends_read_back_in_order_and_expire_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        for (log_index, arrival) in [(3u64, 100u64), (4, 200), (7, 300)] {
            append(&db, 5, log_index, &batch_of(3, arrival), &mut progress);
        }
        assert_eq!(progress.next_position, RecordPosition { log_index: 8, offset: 0 });
        let all = read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap();
        assert_eq!(all.len(), 9);
        assert!(all.windows(2).all(|w| w[0].position < w[1].position));
        assert_eq!(
            all[4].record,
            StoredRecord { partition_key: "k1".into(), data: vec![1; 10].into(), arrival_millis: 200 }
        );
        let page = read_records(&db, 5, RecordPosition { log_index: 4, offset: 1 }, 2, usize::MAX).unwrap();
        assert_eq!(page.iter().map(|r| r.position.offset).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(position_at_timestamp(&db, 5, 150).unwrap(), Some(RecordPosition { log_index: 4, offset: 0 }));
        assert_eq!(position_at_timestamp(&db, 5, 301).unwrap(), None);
        assert!(has_records_from(&db, 5, RecordPosition { log_index: 7, offset: 2 }).unwrap());
        assert!(!has_records_from(&db, 5, RecordPosition { log_index: 7, offset: 3 }).unwrap());
        assert!(has_records_from(&db, 5, RecordPosition { log_index: 5, offset: 0 }).unwrap());

        assert!(expire_before(&db, 5, 250).unwrap());
        let left = read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap();
        assert_eq!(left.len(), 3);
        assert_eq!(left[0].position.log_index, 7);
        assert_eq!(first_position(&db, 5).unwrap(), Some(RecordPosition { log_index: 7, offset: 0 }));
        assert!(!expire_before(&db, 5, 250).unwrap());
    }

    #[test]
    fn a_record_is_stored_once_in_its_log_entry_and_the_state_machine_keeps_an_index_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        append(&db, 5, 3, &batch_of(3, 100), &mut progress);
        assert_eq!(rows(&db, 5), vec![keys::group_u64(5, 3).to_vec()]);
        let (_, row) = db.first(Cf::Records, &keys::group_prefix(5), &keys::group_end(5)).unwrap().unwrap();
        assert!(row.len() < 32, "an index row, not the records: {} bytes", row.len());

        // An entry removed (as retention does) after its row was read: skipped.
        append(&db, 5, 4, &batch_of(2, 200), &mut progress);
        let mut batch = db.batch();
        batch.delete(Cf::RaftLog, &keys::group_u64(5, 4)).unwrap();
        batch.commit_synced().unwrap();
        assert_eq!(read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap().len(), 3);
        // An index row whose entry holds other records is refused, not misread.
        append(&db, 5, 6, &batch_of(3, 300), &mut progress);
        log(&db, 5, 6, Command::Append(batch_of(2, 300)));
        let error = read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn records_stored_whole_by_older_versions_read_back_before_those_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        for offset in 0..2u32 {
            let stored =
                StoredRecord { partition_key: format!("old{offset}"), data: vec![7].into(), arrival_millis: 50 };
            db.put_synced(Cf::Records, &keys::record(5, 2, offset), &encode(&stored).unwrap()).unwrap();
        }
        let mut progress =
            ShardProgress { next_position: RecordPosition { log_index: 3, offset: 0 }, ..Default::default() };
        append(&db, 5, 3, &batch_of(2, 100), &mut progress);
        let all = read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap();
        let keys: Vec<_> = all.iter().map(|r| r.record.partition_key.as_str()).collect();
        assert_eq!(keys, ["old0", "old1", "k0", "k1"]);
        let from = read_records(&db, 5, RecordPosition { log_index: 2, offset: 1 }, 100, usize::MAX).unwrap();
        assert_eq!(from.len(), 3);
        assert_eq!(first_position(&db, 5).unwrap(), Some(RecordPosition { log_index: 2, offset: 0 }));
        assert!(has_records_from(&db, 5, RecordPosition { log_index: 2, offset: 1 }).unwrap());
    }

    #[test]
    fn an_entry_restored_whole_and_then_applied_reads_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        let records = batch_of(3, 100);
        for offset in 0..3u32 {
            let stored = StoredRecord {
                partition_key: format!("k{offset}"),
                data: vec![offset as u8; 10].into(),
                arrival_millis: 100,
            };
            db.put_synced(Cf::Records, &keys::record(5, 4, offset), &encode(&stored).unwrap()).unwrap();
        }
        append(&db, 5, 4, &records, &mut progress);
        append(&db, 5, 5, &batch_of(1, 200), &mut progress);
        let all = read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap();
        let positions: Vec<_> = all.iter().map(|r| (r.position.log_index, r.position.offset)).collect();
        assert_eq!(positions, vec![(4, 0), (4, 1), (4, 2), (5, 0)]);
        assert_eq!(dump(&db, 5, progress).unwrap().records.len(), 4);
    }

    #[test]
    fn a_page_knows_whether_records_follow_it_wherever_it_ends() {
        // Whole records of an older version (entry 2), an entry restored whole and
        // then applied (4), and entries only in the log (5, 7).
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        for (log_index, count) in [(2u64, 2u32), (4, 3)] {
            for offset in 0..count {
                let stored =
                    StoredRecord { partition_key: format!("k{offset}"), data: vec![1; 10].into(), arrival_millis: 50 };
                db.put_synced(Cf::Records, &keys::record(5, log_index, offset), &encode(&stored).unwrap()).unwrap();
            }
        }
        let mut progress =
            ShardProgress { next_position: RecordPosition { log_index: 4, offset: 0 }, ..Default::default() };
        for (log_index, count) in [(4u64, 3usize), (5, 1), (7, 3)] {
            append(&db, 5, log_index, &batch_of(count, 100), &mut progress);
        }
        let all = read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap();
        assert_eq!(all.len(), 9);
        let mut starts: Vec<_> = all.iter().map(|r| r.position).collect();
        starts.push(RecordPosition { log_index: 8, offset: 0 });
        for from in starts {
            for limit in 1..=10 {
                for max_bytes in [usize::MAX, 25] {
                    let page = read_page(&db, 5, from, limit, max_bytes).unwrap();
                    assert_eq!(page.records, read_records(&db, 5, from, limit, max_bytes).unwrap());
                    let follows =
                        page.records.last().is_some_and(|last| has_records_from(&db, 5, last.position.next()).unwrap());
                    assert_eq!(page.more_follow, follows, "from {from:?}, limit {limit}, max bytes {max_bytes}");
                }
            }
        }
        let rest = read_page(&db, 5, RecordPosition { log_index: 7, offset: 1 }, 10, usize::MAX).unwrap();
        assert_eq!((rest.records.len(), rest.more_follow), (2, false));
        let head = read_page(&db, 5, RecordPosition::START, 2, usize::MAX).unwrap();
        assert_eq!((head.records.len(), head.more_follow), (2, true));
    }

    #[test]
    fn a_retry_is_not_taken_for_its_own_landing_restored_from_a_snapshot() {
        // The leader: entry 7 carries a retry (id 42) whose first attempt never landed.
        let dir = tempfile::tempdir().unwrap();
        let leader = NodeDb::open(dir.path()).unwrap();
        let mut retry = batch_of(4, 1_000);
        retry.origin = BatchOrigin { id: 42, retry_since_millis: 500 };
        let mut progress = ShardProgress::default();
        append(&leader, 5, 7, &retry, &mut progress);
        // A follower installs a snapshot taken at 6 whose dump, read later,
        // already holds entry 7; then it applies entry 7 from the log.
        let (_dir, follower) = restored(5, &dump(&leader, 5, progress).unwrap());
        let landed = append(&follower, 5, 7, &retry, &mut ShardProgress::default());
        assert_eq!((landed.log_index, landed.count), (7, 4), "stored, not skipped as a duplicate of itself");
        assert_eq!(all(&follower, 5), all(&leader, 5));
    }

    #[test]
    fn a_snapshot_carries_records_whole_and_restores_without_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        append(&db, 5, 3, &batch_of(3, 100), &mut progress);
        append(&db, 5, 4, &batch_of(2, 200), &mut progress);
        let dump = dump(&db, 5, progress).unwrap();
        assert_eq!(dump.records.len(), 5);

        let (_dir, follower) = restored(5, &dump);
        assert!(follower.first(Cf::RaftLog, &keys::group_prefix(5), &keys::group_end(5)).unwrap().is_none());
        assert_eq!(all(&follower, 5), all(&db, 5));
    }

    #[test]
    fn shards_sharing_a_group_read_their_own_records_from_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let (group, left, right) = (1002, 2001, 2002);
        let (a, b, c) = (batch_of(2, 1_000), batch_of(3, 1_000), batch_of(1, 1_000));
        let first = BatchOrigin { id: 7, retry_since_millis: 0 };
        let mut left_progress = ShardProgress::default();
        let mut right_progress = ShardProgress::default();
        let left_batch = coalesced(1_000, &[(first, &a)]);
        let right_batch = coalesced(1_000, &[(BatchOrigin::default(), &b)]);
        let appends = vec![
            ShardAppend { shard: left, batch: left_batch.clone() },
            ShardAppend { shard: right, batch: right_batch.clone() },
        ];
        log(&db, group, 10, Command::AppendShards(appends));
        stage_coalesced(&db, group, left, 10, &left_batch, &mut left_progress);
        stage_coalesced(&db, group, right, 10, &right_batch, &mut right_progress);

        // The next entry retries the left shard's part 7 ahead of a new part.
        let retry = BatchOrigin { id: 7, retry_since_millis: 500 };
        let left_batch = coalesced(1_100, &[(retry, &a), (BatchOrigin::default(), &c)]);
        log(&db, group, 11, Command::AppendShards(vec![ShardAppend { shard: left, batch: left_batch.clone() }]));
        let landed = stage_coalesced(&db, group, left, 11, &left_batch, &mut left_progress);
        assert_eq!((landed[0].log_index, landed[1].log_index, landed[1].first_offset), (10, 11, 0));

        let read = |store| read_records(&db, store, RecordPosition::START, 100, usize::MAX).unwrap();
        let positions = |records: Vec<ReadRecord>| {
            records.iter().map(|r| (r.position.log_index, r.position.offset, r.record.data.len())).collect::<Vec<_>>()
        };
        assert_eq!(positions(read(left)), vec![(10, 0, 10), (10, 1, 10), (11, 0, 10)]);
        assert_eq!(read(left)[2].record.arrival_millis, 1_100);
        assert_eq!(positions(read(right)), vec![(10, 0, 10), (10, 1, 10), (10, 2, 10)]);
    }

    #[test]
    fn the_log_is_released_once_retention_and_openraft_are_both_past_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        for (log_index, arrival) in [(1u64, 100u64), (2, 200), (3, 300), (4, 400)] {
            append(&db, 5, log_index, &batch_of(2, arrival), &mut progress);
        }
        let first_entry = || {
            let first = db.first(Cf::RaftLog, &keys::group_prefix(5), &keys::group_end(5)).unwrap();
            first.and_then(|(key, _)| keys::read_u64(&key, 8))
        };
        // Not purged by openraft yet: nothing goes, whatever retention did.
        assert!(expire_before(&db, 5, 250).unwrap());
        assert_eq!(
            release_log(&db, 5, &[5]).unwrap(),
            LogRelease { released_below: None, awaiting_purge: 2, needed_from: 3 }
        );
        assert_eq!(first_entry(), Some(1));
        // Purged through 3 (the store keeps entries past purges): entries 1 and 2
        // go, 3 stays for the records it still holds.
        let purged = openraft::testing::log_id::<TypeConfig>(1, 1, 3);
        let mut store = crate::GroupLogStore::for_shards(db.clone(), 5);
        futures::executor::block_on(openraft::storage::RaftLogStorage::purge(&mut store, purged)).unwrap();
        assert_eq!(first_entry(), Some(1));
        assert_eq!(
            release_log(&db, 5, &[5]).unwrap(),
            LogRelease { released_below: Some(3), awaiting_purge: 0, needed_from: 3 }
        );
        assert_eq!(first_entry(), Some(3));
        assert_eq!(read_records(&db, 5, RecordPosition::START, 100, usize::MAX).unwrap().len(), 4);
        // Everything expired: released up to the purge point only.
        assert!(expire_before(&db, 5, 1_000).unwrap());
        assert_eq!(
            release_log(&db, 5, &[5]).unwrap(),
            LogRelease { released_below: Some(4), awaiting_purge: 1, needed_from: 5 }
        );
        assert_eq!(first_entry(), Some(4));
    }

    #[test]
    fn reads_stop_at_the_byte_budget_but_return_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut progress = ShardProgress::default();
        append(&db, 1, 1, &batch_of(10, 1), &mut progress);
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
        let entry = coalesced(1_000, &[(first, &a), (BatchOrigin::default(), &b)]);
        log(&db, 4, 10, Command::AppendMany(entry.clone()));
        let landed = stage_coalesced(&db, 4, 4, 10, &entry, &mut progress);
        assert_eq!((landed[0].first_offset, landed[0].count), (0, 2));
        assert_eq!((landed[1].first_offset, landed[1].count), (2, 3));

        // A retry of part 7 coalesced with a new part: the retry is not stored again.
        let retry = BatchOrigin { id: 7, retry_since_millis: 500 };
        let entry = coalesced(1_100, &[(retry, &a), (BatchOrigin { id: 8, retry_since_millis: 0 }, &c)]);
        log(&db, 4, 11, Command::AppendMany(entry.clone()));
        let again = stage_coalesced(&db, 4, 4, 11, &entry, &mut progress);
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
        let landed = append(&db, 9, 5, &first, &mut progress);
        let again = append(&db, 9, 6, &retry, &mut progress);
        assert_eq!(again, landed);
        // A retry whose first attempt never landed is stored.
        let stored = append(&db, 9, 7, &other, &mut progress);
        assert_eq!(stored.log_index, 7);
        assert_eq!(read_records(&db, 9, RecordPosition::START, 100, usize::MAX).unwrap().len(), 6);

        // In one apply call: the retry finds the first among the staged batches.
        let dir = tempfile::tempdir().unwrap();
        let db = NodeDb::open(dir.path()).unwrap();
        let mut staged = Vec::new();
        log(&db, 9, 5, Command::Append(first.clone()));
        log(&db, 9, 6, Command::Append(retry.clone()));
        let mut batch = db.batch();
        let landed = stage_append(&db, &mut batch, 9, 9, 5, &first, &mut progress, &mut staged).unwrap();
        let again = stage_append(&db, &mut batch, 9, 9, 6, &retry, &mut progress, &mut staged).unwrap();
        batch.commit().unwrap();
        assert_eq!(again, landed);
        assert_eq!(read_records(&db, 9, RecordPosition::START, 100, usize::MAX).unwrap().len(), 4);
    }
}
