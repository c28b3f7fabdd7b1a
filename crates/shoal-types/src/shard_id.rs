//! Shard ids: `shardId-` and a 12-digit zero-padded index that is never reused
//! within a stream.

use serde::{Deserialize, Serialize};

use crate::error::{ShoalError, ShoalResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId(pub u32);

const PREFIX: &str = "shardId-";

impl ShardId {
    pub fn index(self) -> u32 {
        self.0
    }

    /// Parses `shardId-000000000001`. Like Kinesis, a bare number (`1`) is accepted too.
    pub fn parse(text: &str) -> ShoalResult<ShardId> {
        let digits = text.strip_prefix(PREFIX).unwrap_or(text);
        let valid = !digits.is_empty() && digits.len() <= 12 && digits.bytes().all(|b| b.is_ascii_digit());
        match valid.then(|| digits.parse::<u32>().ok()).flatten() {
            Some(index) => Ok(ShardId(index)),
            None => Err(ShoalError::invalid_argument(format!(
                "Invalid ShardId {text:?}: expected shardId- followed by up to 12 digits."
            ))),
        }
    }
}

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}{:012}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_kinesis() {
        assert_eq!(ShardId(0).to_string(), "shardId-000000000000");
        assert_eq!(ShardId(17).to_string(), "shardId-000000000017");
    }

    #[test]
    fn parses_its_own_format_and_rejects_junk() {
        assert_eq!(ShardId::parse("shardId-000000000017").unwrap(), ShardId(17));
        assert_eq!(ShardId::parse("3").unwrap(), ShardId(3));
        for bad in ["", "shardId-", "shardId-abc", "shard-1", "shardId-0000000000001"] {
            assert!(ShardId::parse(bad).is_err(), "{bad}");
        }
    }
}
