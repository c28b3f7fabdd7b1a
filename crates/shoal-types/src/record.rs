//! Records as producers send them and as shards store them.

use serde::{Deserialize, Serialize};

/// A record as a producer hands it to PutRecord(s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    /// Raw bytes, shared rather than copied when a record is cloned (openraft
    /// clones each entry to apply it and once per follower; readers clone their
    /// slice of a cached entry). Serialized as one byte string, as a `Vec<u8>`
    /// with `serde_bytes` was: the encoding on disk and on the wire is the same.
    pub data: bytes::Bytes,
}

impl Record {
    /// Bytes that count against the record size limit: key plus data.
    pub fn billed_size(&self) -> usize {
        self.partition_key.len() + self.data.len()
    }
}

/// Where a record sits in its shard's replicated log: the Raft log index of the
/// entry that carried it and its offset inside that entry. Positions order records
/// exactly as the shard does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordPosition {
    pub log_index: u64,
    pub offset: u32,
}

impl RecordPosition {
    pub const START: RecordPosition = RecordPosition { log_index: 0, offset: 0 };

    /// The position just after this one.
    pub fn next(self) -> RecordPosition {
        match self.offset.checked_add(1) {
            Some(offset) => RecordPosition { log_index: self.log_index, offset },
            None => RecordPosition { log_index: self.log_index + 1, offset: 0 },
        }
    }
}

/// A record as a shard keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub partition_key: String,
    /// Shared with the log entry the record was read from (see [`Record::data`]);
    /// serialized as a `Vec<u8>` with `serde_bytes` was.
    pub data: bytes::Bytes,
    /// When the shard leader accepted the record; never decreases within a shard.
    pub arrival_millis: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a stored record looked like before `data` was a byte string.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct SequenceEncoded {
        partition_key: String,
        data: Vec<u8>,
        arrival_millis: u64,
    }

    #[test]
    fn byte_string_data_keeps_the_bincode_layout_already_on_disk() {
        let stored = StoredRecord { partition_key: "k".into(), data: vec![0, 1, 2, 255].into(), arrival_millis: 7 };
        let old = SequenceEncoded { partition_key: "k".into(), data: vec![0, 1, 2, 255], arrival_millis: 7 };
        let old_bytes = bincode::serialize(&old).unwrap();
        assert_eq!(bincode::serialize(&stored).unwrap(), old_bytes);
        assert_eq!(bincode::deserialize::<StoredRecord>(&old_bytes).unwrap(), stored);
    }

    /// A record as Raft log entries and the wire carried it while `data` was a
    /// `Vec<u8>` serialized as one byte string.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct VecRecord {
        partition_key: String,
        explicit_hash_key: Option<String>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    }

    #[test]
    fn shared_bytes_data_keeps_the_bincode_layout_of_entries_already_logged() {
        let record =
            Record { partition_key: "k".into(), explicit_hash_key: Some("9".into()), data: vec![0, 1, 255].into() };
        let old = VecRecord { partition_key: "k".into(), explicit_hash_key: Some("9".into()), data: vec![0, 1, 255] };
        let old_bytes = bincode::serialize(&old).unwrap();
        assert_eq!(bincode::serialize(&record).unwrap(), old_bytes);
        assert_eq!(bincode::deserialize::<Record>(&old_bytes).unwrap(), record);
        assert_eq!(bincode::deserialize::<VecRecord>(&bincode::serialize(&record).unwrap()).unwrap(), old);
    }
}
