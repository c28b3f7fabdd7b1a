//! Sequence numbers: 56-digit decimal strings, as long as Kinesis's.
//!
//! A sequence number is derived from the replicated log, so every replica assigns
//! the same one to the same record:
//!
//! ```text
//!  4 | stream epoch (10) | shard index (12) | log index (20) | offset in entry (13)
//! ```
//!
//! The stream epoch (creation time in seconds) keeps numbers of a re-created stream
//! distinct from the old one; the log index and the record's offset inside its log
//! entry make numbers strictly increasing within a shard. Clients that parse them as
//! big integers (KCL, Flink) compare them correctly.

use serde::{Deserialize, Serialize};

use crate::error::{ShoalError, ShoalResult};
use crate::record::RecordPosition;

pub const SEQUENCE_NUMBER_DIGITS: usize = 56;
const VERSION_DIGIT: u8 = b'4';

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SequenceNumber {
    pub stream_epoch_secs: u64,
    pub shard_index: u32,
    pub position: RecordPosition,
}

impl SequenceNumber {
    pub fn parse(text: &str) -> ShoalResult<SequenceNumber> {
        let invalid = || {
            ShoalError::invalid_argument(format!(
                "Invalid SequenceNumber {text:?}: not a sequence number issued by this stream."
            ))
        };
        let bytes = text.as_bytes();
        if bytes.len() != SEQUENCE_NUMBER_DIGITS || bytes[0] != VERSION_DIGIT || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        let field = |from: usize, to: usize| text[from..to].parse::<u64>().map_err(|_| invalid());
        let stream_epoch_secs = field(1, 11)?;
        let shard_index = u32::try_from(field(11, 23)?).map_err(|_| invalid())?;
        let log_index = text[23..43].parse::<u64>().map_err(|_| invalid())?;
        let offset = u32::try_from(field(43, 56)?).map_err(|_| invalid())?;
        Ok(SequenceNumber { stream_epoch_secs, shard_index, position: RecordPosition { log_index, offset } })
    }
}

impl SequenceNumber {
    /// The 56 ASCII digits. Written by hand: every record served is numbered, and
    /// `write!` with four padded fields took 3% of a busy leader's CPU.
    pub fn digits(&self) -> [u8; SEQUENCE_NUMBER_DIGITS] {
        // Each field fits its width: the epoch is taken modulo 10^10, a u32 has at
        // most 10 digits and a u64 at most 20.
        fn put(slot: &mut [u8], mut value: u64) {
            for digit in slot.iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        let mut out = [b'0'; SEQUENCE_NUMBER_DIGITS];
        out[0] = VERSION_DIGIT;
        put(&mut out[1..11], self.stream_epoch_secs % 10_000_000_000);
        put(&mut out[11..23], u64::from(self.shard_index));
        put(&mut out[23..43], self.position.log_index);
        put(&mut out[43..56], u64::from(self.position.offset));
        out
    }
}

impl std::fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.digits();
        // ASCII digits only, so always UTF-8.
        f.write_str(std::str::from_utf8(&digits).map_err(|_| std::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(log_index: u64, offset: u32) -> SequenceNumber {
        SequenceNumber {
            stream_epoch_secs: 1_764_000_000,
            shard_index: 3,
            position: RecordPosition { log_index, offset },
        }
    }

    #[test]
    fn the_digits_are_the_padded_fields() {
        let s = SequenceNumber {
            stream_epoch_secs: 21_764_000_123,
            shard_index: u32::MAX,
            position: RecordPosition { log_index: u64::MAX, offset: u32::MAX },
        };
        let expected = format!("4{:010}{:012}{:020}{:013}", 1_764_000_123u64, u32::MAX, u64::MAX, u32::MAX);
        assert_eq!(s.to_string(), expected);
        assert_eq!(SequenceNumber::parse(&expected).unwrap(), SequenceNumber { stream_epoch_secs: 1_764_000_123, ..s });
        assert_eq!(seq(0, 0).to_string(), format!("4{:010}{:012}{:020}{:013}", 1_764_000_000u64, 3, 0, 0));
    }

    #[test]
    fn is_56_digits_and_round_trips() {
        let s = seq(12345, 7);
        let text = s.to_string();
        assert_eq!(text.len(), SEQUENCE_NUMBER_DIGITS);
        assert_eq!(SequenceNumber::parse(&text).unwrap(), s);
        let max = SequenceNumber {
            stream_epoch_secs: 9_999_999_999,
            shard_index: u32::MAX,
            position: RecordPosition { log_index: u64::MAX, offset: u32::MAX },
        };
        assert_eq!(SequenceNumber::parse(&max.to_string()).unwrap(), max);
    }

    #[test]
    fn orders_numerically_like_the_log() {
        let ordered = [seq(1, 0), seq(1, 1), seq(1, 499), seq(2, 0), seq(10, 0), seq(1_000_000, 3)];
        for pair in ordered.windows(2) {
            let (a, b) = (pair[0].to_string(), pair[1].to_string());
            assert!(a < b, "{a} < {b}");
            assert!(a.parse::<f64>().unwrap() <= b.parse::<f64>().unwrap());
        }
    }

    #[test]
    fn rejects_malformed_numbers() {
        let good = seq(5, 5).to_string();
        let wrong_version = format!("3{}", &good[1..]);
        for bad in ["", "1", "abc", &good[1..], &wrong_version, &format!("{good}0")] {
            assert!(SequenceNumber::parse(bad).is_err(), "{bad}");
        }
    }
}
