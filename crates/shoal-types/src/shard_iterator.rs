//! Shard iterators: opaque, self-contained read cursors that expire.
//!
//! An iterator names the stream (and its incarnation), the shard and the position
//! of the next record to read, plus when it was issued. It is encoded with bincode,
//! sealed with a checksum so a mangled iterator is refused rather than misread,
//! and wrapped in URL-safe base64. The server keeps no per-iterator state.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ShoalError, ShoalResult};
use crate::limits::SHARD_ITERATOR_TTL_MILLIS;
use crate::record::RecordPosition;
use crate::sequence_number::SequenceNumber;

/// Where GetShardIterator asks to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IteratorStart {
    TrimHorizon,
    Latest,
    AtSequenceNumber(SequenceNumber),
    AfterSequenceNumber(SequenceNumber),
    AtTimestamp { millis: u64 },
}

impl IteratorStart {
    /// Builds the start from the Kinesis request fields, validating them together.
    pub fn from_request(
        iterator_type: &str,
        starting_sequence_number: Option<&str>,
        timestamp_millis: Option<u64>,
    ) -> ShoalResult<IteratorStart> {
        let need_sequence = |name: &str| -> ShoalResult<SequenceNumber> {
            let text = starting_sequence_number.filter(|s| !s.is_empty()).ok_or_else(|| {
                ShoalError::invalid_argument(format!(
                    "StartingSequenceNumber must be given for ShardIteratorType {name}."
                ))
            })?;
            SequenceNumber::parse(text)
        };
        match iterator_type {
            "TRIM_HORIZON" => Ok(IteratorStart::TrimHorizon),
            "LATEST" => Ok(IteratorStart::Latest),
            "AT_SEQUENCE_NUMBER" => Ok(IteratorStart::AtSequenceNumber(need_sequence(iterator_type)?)),
            "AFTER_SEQUENCE_NUMBER" => Ok(IteratorStart::AfterSequenceNumber(need_sequence(iterator_type)?)),
            "AT_TIMESTAMP" => match timestamp_millis {
                Some(millis) => Ok(IteratorStart::AtTimestamp { millis }),
                None => {
                    Err(ShoalError::invalid_argument("Timestamp must be given for ShardIteratorType AT_TIMESTAMP."))
                }
            },
            other => Err(ShoalError::invalid_argument(format!(
                "Invalid ShardIteratorType {other:?}: must be one of AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP."
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardIterator {
    pub stream_name: String,
    /// Creation time of the stream, so an iterator of a deleted and re-created
    /// stream of the same name is not honoured.
    pub stream_created_millis: u64,
    pub shard_index: u32,
    /// The next record to return is the first at or after this position.
    pub position: RecordPosition,
    pub issued_at_millis: u64,
}

const CHECKSUM_BYTES: usize = 4;

impl ShardIterator {
    pub fn encode(&self) -> String {
        let mut bytes = bincode::serialize(self).unwrap_or_default();
        let checksum = Md5::digest(&bytes);
        bytes.extend_from_slice(&checksum[..CHECKSUM_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes an iterator and checks it has not expired at `now_millis`.
    pub fn decode(text: &str, now_millis: u64) -> ShoalResult<ShardIterator> {
        Self::decode_with_ttl(text, now_millis, SHARD_ITERATOR_TTL_MILLIS)
    }

    /// Like [`ShardIterator::decode`] with a lifetime other than Kinesis's five minutes.
    pub fn decode_with_ttl(text: &str, now_millis: u64, ttl_millis: u64) -> ShoalResult<ShardIterator> {
        let invalid = || ShoalError::invalid_argument("Invalid ShardIterator.");
        if text.is_empty() || text.len() > 512 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        if bytes.len() <= CHECKSUM_BYTES {
            return Err(invalid());
        }
        let (payload, checksum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
        if Md5::digest(payload)[..CHECKSUM_BYTES] != *checksum {
            return Err(invalid());
        }
        let iterator: ShardIterator = bincode::deserialize(payload).map_err(|_| invalid())?;
        let age = now_millis.saturating_sub(iterator.issued_at_millis);
        if age > ttl_millis {
            return Err(ShoalError::new(
                ErrorCode::ExpiredIterator,
                format!(
                    "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {} milliseconds.",
                    iterator.issued_at_millis, now_millis, ttl_millis
                ),
            ));
        }
        Ok(iterator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iterator() -> ShardIterator {
        ShardIterator {
            stream_name: "orders".into(),
            stream_created_millis: 1_764_000_000_000,
            shard_index: 2,
            position: RecordPosition { log_index: 42, offset: 3 },
            issued_at_millis: 1_764_000_100_000,
        }
    }

    #[test]
    fn round_trips_while_fresh() {
        let it = iterator();
        let text = it.encode();
        assert!(text.len() <= 512);
        assert_eq!(ShardIterator::decode(&text, it.issued_at_millis + 1000).unwrap(), it);
    }

    #[test]
    fn expires_after_five_minutes() {
        let it = iterator();
        let err = ShardIterator::decode(&it.encode(), it.issued_at_millis + SHARD_ITERATOR_TTL_MILLIS + 1).unwrap_err();
        assert_eq!(err.code, ErrorCode::ExpiredIterator);
    }

    #[test]
    fn refuses_tampered_or_junk_iterators() {
        let text = iterator().encode();
        let mut tampered = text.clone().into_bytes();
        tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        for bad in ["", "not-an-iterator", "AAAA", tampered.as_str()] {
            let err = ShardIterator::decode(bad, 0).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn iterator_start_validates_its_arguments() {
        assert_eq!(IteratorStart::from_request("LATEST", None, None).unwrap(), IteratorStart::Latest);
        assert!(IteratorStart::from_request("AT_SEQUENCE_NUMBER", None, None).is_err());
        assert!(IteratorStart::from_request("AT_TIMESTAMP", None, None).is_err());
        assert!(IteratorStart::from_request("SIDEWAYS", None, None).is_err());
        let seq = SequenceNumber { stream_epoch_secs: 1, shard_index: 0, position: RecordPosition::START }.to_string();
        assert!(matches!(
            IteratorStart::from_request("AFTER_SEQUENCE_NUMBER", Some(&seq), None).unwrap(),
            IteratorStart::AfterSequenceNumber(_)
        ));
    }
}
