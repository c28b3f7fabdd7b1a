//! Input validation with the messages Kinesis users know.

use crate::error::{ErrorCode, ShoalError, ShoalResult};
use crate::limits::*;
use crate::record::Record;

/// Checks a stream name: `[a-zA-Z0-9_.-]{1,128}`, optionally under an
/// `ACCOUNT:REGION/` scope (see [`crate::scope`]).
pub fn validate_stream_name(name: &str) -> ShoalResult<()> {
    let name = match name.split_once('/') {
        Some((scope, plain)) if crate::scope::scope_is_valid(scope) => plain,
        _ => name,
    };
    let valid_chars = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if name.is_empty() || name.len() > MAX_STREAM_NAME_CHARS || !valid_chars {
        return Err(ShoalError::new(
            ErrorCode::Validation,
            format!(
                "1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: Member must have length between 1 and {MAX_STREAM_NAME_CHARS} and match pattern [a-zA-Z0-9_.-]+"
            ),
        ));
    }
    Ok(())
}

pub fn validate_shard_count(count: u32) -> ShoalResult<()> {
    if count == 0 || count > MAX_SHARDS_PER_STREAM {
        return Err(ShoalError::invalid_argument(format!(
            "ShardCount {count} is invalid: it must be between 1 and {MAX_SHARDS_PER_STREAM}."
        )));
    }
    Ok(())
}

pub fn validate_retention_hours(hours: u32) -> ShoalResult<()> {
    if hours < MIN_RETENTION_HOURS {
        return Err(ShoalError::invalid_argument(format!(
            "Minimum allowed retention period is {MIN_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too short."
        )));
    }
    if hours > MAX_RETENTION_HOURS {
        return Err(ShoalError::invalid_argument(format!(
            "Maximum allowed retention period is {MAX_RETENTION_HOURS} hours. Requested retention period ({hours} hours) is too long."
        )));
    }
    Ok(())
}

/// Checks one record; `index` names it in the message as the AWS model does.
pub fn validate_record(record: &Record, index: Option<usize>, max_record_bytes: usize) -> ShoalResult<()> {
    let at = |field: &str| match index {
        Some(i) => format!("records.{}.member.{field}", i + 1),
        None => field.to_string(),
    };
    let key_chars = record.partition_key.chars().count();
    if key_chars == 0 || key_chars > MAX_PARTITION_KEY_CHARS {
        return Err(ShoalError::new(
            ErrorCode::Validation,
            format!(
                "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length between 1 and {MAX_PARTITION_KEY_CHARS}",
                at("partitionKey")
            ),
        ));
    }
    if record.billed_size() > max_record_bytes {
        return Err(ShoalError::new(
            ErrorCode::Validation,
            format!(
                "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max_record_bytes} (partition key plus data is {} bytes)",
                at("data"),
                record.billed_size()
            ),
        ));
    }
    if let Some(explicit) = &record.explicit_hash_key {
        crate::hash_key::HashKey::parse_explicit(explicit)?;
    }
    Ok(())
}

/// Checks a whole PutRecords batch before anything is written.
/// `max_record_bytes` is the stream's record limit; the whole call may carry
/// 5 MiB, or one maximal record if the stream allows larger ones.
pub fn validate_put_records(records: &[Record], max_record_bytes: usize) -> ShoalResult<()> {
    if records.is_empty() {
        return Err(ShoalError::new(
            ErrorCode::Validation,
            "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if records.len() > MAX_RECORDS_PER_PUT {
        return Err(ShoalError::new(
            ErrorCode::Validation,
            format!(
                "1 validation error detected: Value at 'records' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORDS_PER_PUT}"
            ),
        ));
    }
    let total: usize = records.iter().map(Record::billed_size).sum();
    let max_total = MAX_PUT_RECORDS_BYTES.max(max_record_bytes);
    if total > max_total {
        return Err(ShoalError::invalid_argument(format!(
            "Records size exceeds {} MB limit: the request holds {total} bytes of partition keys and data.",
            max_total / (1024 * 1024)
        )));
    }
    for (i, record) in records.iter().enumerate() {
        validate_record(record, Some(i), max_record_bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, size: usize) -> Record {
        Record { partition_key: key.into(), explicit_hash_key: None, data: vec![0; size].into() }
    }

    #[test]
    fn stream_names() {
        assert!(validate_stream_name("orders_2024.v1-a").is_ok());
        assert!(validate_stream_name("210987654321:eu-west-1/orders").is_ok());
        assert!(validate_stream_name("nonsense/orders").is_err());
        for bad in ["", "has space", "slash/name", &"x".repeat(129), "ünïcode"] {
            let err = validate_stream_name(bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::Validation);
        }
    }

    #[test]
    fn record_size_counts_key_and_data() {
        assert!(validate_record(&record("k", MAX_RECORD_BYTES - 1), None, MAX_RECORD_BYTES).is_ok());
        let err = validate_record(&record("kk", MAX_RECORD_BYTES - 1), Some(4), MAX_RECORD_BYTES).unwrap_err();
        assert!(err.message.contains("records.5.member.data"), "{}", err.message);
    }

    #[test]
    fn partition_keys_are_1_to_256_chars() {
        assert!(validate_record(&record("", 1), None, MAX_RECORD_BYTES).is_err());
        assert!(validate_record(&record(&"é".repeat(256), 1), None, MAX_RECORD_BYTES).is_ok());
        assert!(validate_record(&record(&"k".repeat(257), 1), None, MAX_RECORD_BYTES).is_err());
    }

    #[test]
    fn batches_are_bounded() {
        assert!(validate_put_records(&[], MAX_RECORD_BYTES).is_err());
        assert!(validate_put_records(&vec![record("k", 1); 500], MAX_RECORD_BYTES).is_ok());
        assert!(validate_put_records(&vec![record("k", 1); 501], MAX_RECORD_BYTES).is_err());
        let err = validate_put_records(&vec![record("k", 1024 * 1024 - 1); 6], MAX_RECORD_BYTES).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn retention_bounds() {
        assert!(validate_retention_hours(24).is_ok());
        assert!(validate_retention_hours(23).is_err());
        assert!(validate_retention_hours(8761).is_err());
    }
}
