//! The 128-bit hash-key space and how records are routed through it.
//!
//! A record's hash key is the MD5 of its partition key read as a big-endian
//! unsigned 128-bit integer, or the explicit hash key it was given. Each open shard
//! owns an inclusive range of that space; together the ranges cover it exactly.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::error::{ShoalError, ShoalResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HashKey(pub u128);

impl HashKey {
    /// MD5 of the partition key's UTF-8 bytes, as Kinesis computes it.
    pub fn from_partition_key(partition_key: &str) -> HashKey {
        let digest = Md5::digest(partition_key.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest);
        HashKey(u128::from_be_bytes(bytes))
    }

    /// Parses an `ExplicitHashKey`: a decimal integer in `[0, 2^128 - 1]`.
    pub fn parse_explicit(text: &str) -> ShoalResult<HashKey> {
        let well_formed = !text.is_empty()
            && text.len() <= 39
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        let parsed = if well_formed { text.parse::<u128>().ok() } else { None };
        parsed.map(HashKey).ok_or_else(|| {
            ShoalError::invalid_argument(format!(
                "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {text}"
            ))
        })
    }

    /// The hash key a record routes by: the explicit one if given, else MD5 of the partition key.
    pub fn for_record(partition_key: &str, explicit_hash_key: Option<&str>) -> ShoalResult<HashKey> {
        match explicit_hash_key {
            Some(explicit) => HashKey::parse_explicit(explicit),
            None => Ok(HashKey::from_partition_key(partition_key)),
        }
    }
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An inclusive range `[start, end]` of hash keys owned by one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HashKeyRange {
    pub start: HashKey,
    pub end: HashKey,
}

impl HashKeyRange {
    pub const FULL: HashKeyRange = HashKeyRange { start: HashKey(0), end: HashKey(u128::MAX) };

    pub fn contains(&self, key: HashKey) -> bool {
        self.start <= key && key <= self.end
    }

    /// Splits the whole key space into `count` ranges the way Kinesis does: every
    /// range is `floor(2^128 / count)` wide and the last one runs to `2^128 - 1`.
    pub fn split_evenly(count: u32) -> Vec<HashKeyRange> {
        assert!(count > 0, "a stream has at least one shard");
        let count = count as u128;
        // floor(2^128 / n) computed without overflowing u128.
        let step = if count == 1 { 0 } else { (u128::MAX / count) + u128::from(u128::MAX % count == count - 1) };
        (0..count)
            .map(|i| {
                if count == 1 {
                    return HashKeyRange::FULL;
                }
                let start = i * step;
                let end = if i == count - 1 { u128::MAX } else { (i + 1) * step - 1 };
                HashKeyRange { start: HashKey(start), end: HashKey(end) }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_routing_matches_kinesis() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        let key = HashKey::from_partition_key("a");
        assert_eq!(key.0, 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn explicit_hash_keys_are_validated() {
        assert_eq!(HashKey::parse_explicit("0").unwrap(), HashKey(0));
        assert_eq!(HashKey::parse_explicit("340282366920938463463374607431768211455").unwrap(), HashKey(u128::MAX));
        for bad in ["", "-1", "01", "abc", "340282366920938463463374607431768211456", "1.5"] {
            let err = HashKey::parse_explicit(bad).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::InvalidArgument, "{bad}");
            assert!(err.message.contains("ExplicitHashKey"));
        }
    }

    #[test]
    fn even_split_covers_the_space_without_gaps() {
        for count in [1u32, 2, 3, 4, 7, 10, 1000] {
            let ranges = HashKeyRange::split_evenly(count);
            assert_eq!(ranges.len(), count as usize);
            assert_eq!(ranges[0].start, HashKey(0));
            assert_eq!(ranges.last().unwrap().end, HashKey(u128::MAX));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end.0 + 1, pair[1].start.0);
            }
        }
    }

    #[test]
    fn even_split_uses_kinesis_boundaries() {
        // Two shards: the first ends at 2^127 - 1, as Kinesis shows.
        let ranges = HashKeyRange::split_evenly(2);
        assert_eq!(ranges[0].end.0.to_string(), "170141183460469231731687303715884105727");
        assert_eq!(ranges[1].start.0.to_string(), "170141183460469231731687303715884105728");
        // Three shards: step = floor(2^128 / 3).
        let ranges = HashKeyRange::split_evenly(3);
        assert_eq!(ranges[1].start.0.to_string(), "113427455640312821154458202477256070485");
    }
}
