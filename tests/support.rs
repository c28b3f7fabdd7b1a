//! Helpers shared by the integration tests.

use shoal_client::Record;

/// A record whose data says who wrote it, so tests can recognise it later.
pub fn record(key: impl Into<String>, data: impl Into<String>) -> Record {
    Record { data: data.into().into_bytes(), partition_key: key.into(), explicit_hash_key: None }
}
