//! KPL-compatible record aggregation: many user records in one Kinesis record.
//!
//! The format is the Kinesis Producer Library's: the magic bytes `F3 89 9A C2`,
//! a protobuf `AggregatedRecord` (partition-key table, explicit-hash-key table,
//! records pointing into them), then the MD5 of the protobuf bytes. Records made
//! here are read by the KCL and `aws-kinesis-agg`, and records those make are
//! read here. A Kinesis record without the magic prefix (or whose digest does
//! not match) is a single user record, as the KCL treats it.

use md5::{Digest, Md5};
use prost::Message;
use shoal_proto::kpl;

use crate::client::{Record, StoredRecord};

pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// One record as the application wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// A user record as a consumer reads it: the Kinesis record's sequence number,
/// and its place inside an aggregate (0 for a record that was not aggregated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadUserRecord {
    pub sequence_number: String,
    pub sub_sequence_number: u64,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub approximate_arrival_timestamp_millis: u64,
}

/// Packs user records into one Kinesis record. Its partition key is the first
/// user record's (so the aggregate goes to that key's shard, as the KPL does).
pub fn aggregate(records: &[UserRecord]) -> Option<Record> {
    let first = records.first()?;
    let mut message = kpl::AggregatedRecord::default();
    for record in records {
        let key_index = index_of(&mut message.partition_key_table, &record.partition_key);
        let hash_index = record.explicit_hash_key.as_ref().map(|h| index_of(&mut message.explicit_hash_key_table, h));
        message.records.push(kpl::Record {
            partition_key_index: key_index,
            explicit_hash_key_index: hash_index,
            data: record.data.clone(),
            tags: Vec::new(),
        });
    }
    let body = message.encode_to_vec();
    let mut data = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
    data.extend_from_slice(&MAGIC);
    data.extend_from_slice(&body);
    data.extend_from_slice(&Md5::digest(&body));
    Some(Record {
        data: data.into(),
        partition_key: first.partition_key.clone(),
        explicit_hash_key: first.explicit_hash_key.clone(),
    })
}

/// The bytes an aggregate of these records takes (for batching decisions).
pub fn aggregated_size(records: &[UserRecord]) -> usize {
    MAGIC.len()
        + DIGEST_LEN
        + records
            .iter()
            .map(|r| r.data.len() + r.partition_key.len() + 8 + r.explicit_hash_key.as_ref().map_or(0, |h| h.len()))
            .sum::<usize>()
}

fn index_of(table: &mut Vec<String>, value: &str) -> u64 {
    match table.iter().position(|v| v == value) {
        Some(at) => at as u64,
        None => {
            table.push(value.to_string());
            (table.len() - 1) as u64
        }
    }
}

/// The user records inside a Kinesis record: several for an aggregate, else the
/// record itself.
pub fn deaggregate(record: &StoredRecord) -> Vec<ReadUserRecord> {
    let single = || {
        vec![ReadUserRecord {
            sequence_number: record.sequence_number.clone(),
            sub_sequence_number: 0,
            partition_key: record.partition_key.clone(),
            data: record.data.to_vec(),
            approximate_arrival_timestamp_millis: record.approximate_arrival_timestamp_millis,
        }]
    };
    let data = &record.data;
    if data.len() < MAGIC.len() + DIGEST_LEN || data[..MAGIC.len()] != MAGIC {
        return single();
    }
    let body = &data[MAGIC.len()..data.len() - DIGEST_LEN];
    if Md5::digest(body).as_slice() != &data[data.len() - DIGEST_LEN..] {
        return single();
    }
    let Ok(message) = kpl::AggregatedRecord::decode(body) else { return single() };
    message
        .records
        .into_iter()
        .enumerate()
        .map(|(i, user)| ReadUserRecord {
            sequence_number: record.sequence_number.clone(),
            sub_sequence_number: i as u64,
            partition_key: message
                .partition_key_table
                .get(user.partition_key_index as usize)
                .cloned()
                .unwrap_or_else(|| record.partition_key.clone()),
            data: user.data,
            approximate_arrival_timestamp_millis: record.approximate_arrival_timestamp_millis,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(key: &str, data: &str) -> UserRecord {
        UserRecord { partition_key: key.into(), explicit_hash_key: None, data: data.as_bytes().to_vec() }
    }

    fn stored(record: Record) -> StoredRecord {
        StoredRecord {
            sequence_number: "49".into(),
            approximate_arrival_timestamp_millis: 7,
            data: record.data,
            partition_key: record.partition_key,
        }
    }

    #[test]
    fn aggregates_round_trip_with_their_keys() {
        let users = vec![user("a", "one"), user("b", "two"), user("a", "three")];
        let record = aggregate(&users).unwrap();
        assert_eq!(record.partition_key, "a");
        assert_eq!(record.data[..4], MAGIC);
        let read = deaggregate(&stored(record));
        let got: Vec<(u64, &str, &[u8])> =
            read.iter().map(|r| (r.sub_sequence_number, r.partition_key.as_str(), r.data.as_slice())).collect();
        assert_eq!(got, [(0, "a", &b"one"[..]), (1, "b", &b"two"[..]), (2, "a", &b"three"[..])]);
    }

    #[test]
    fn plain_and_corrupt_records_are_single_records() {
        let plain =
            stored(Record { data: b"hello".to_vec().into(), partition_key: "k".into(), explicit_hash_key: None });
        assert_eq!(deaggregate(&plain).len(), 1);
        let mut corrupt = aggregate(&[user("a", "x"), user("b", "y")]).unwrap();
        let mut data = corrupt.data.to_vec();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        corrupt.data = data.into();
        let read = deaggregate(&stored(corrupt.clone()));
        assert_eq!(read.len(), 1, "a digest mismatch means not an aggregate");
        assert_eq!(read[0].data, corrupt.data);
    }

    #[test]
    fn zero_indexes_are_on_the_wire() {
        // proto2 `required` fields are written even when 0, which the KCL's parser needs.
        let record = aggregate(&[user("a", "")]).unwrap();
        let body = &record.data[4..record.data.len() - 16];
        // records[0] = { partition_key_index: 0 (tag 0x08, value 0), data: "" (tag 0x1a, len 0) }
        assert!(body.windows(4).any(|w| w == [0x08, 0x00, 0x1a, 0x00]), "{body:02x?}");
    }
}
