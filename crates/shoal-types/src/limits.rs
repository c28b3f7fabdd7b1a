//! The limits of the Kinesis Data Streams API, as Shoal enforces them.

/// Largest record: partition key plus data, 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Largest record any stream can be configured to take (UpdateMaxRecordSize), 10 MiB.
pub const MAX_RECORD_BYTES_CEILING: usize = 10 * 1024 * 1024;
/// Most records in one PutRecords call.
pub const MAX_RECORDS_PER_PUT: usize = 500;
/// Largest PutRecords request: 5 MiB of keys and data.
pub const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;
/// Partition keys are 1 to 256 Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;
/// Most records one GetRecords call returns.
pub const MAX_GET_RECORDS_LIMIT: u32 = 10_000;
/// Most bytes one GetRecords call returns.
pub const MAX_GET_RECORDS_BYTES: usize = 10 * 1024 * 1024;
/// Shard iterators expire five minutes after they were issued.
pub const SHARD_ITERATOR_TTL_MILLIS: u64 = 5 * 60 * 1000;
/// Retention bounds, in hours.
pub const DEFAULT_RETENTION_HOURS: u32 = 24;
pub const MIN_RETENTION_HOURS: u32 = 24;
pub const MAX_RETENTION_HOURS: u32 = 8760;
/// Most shards one stream may be created with.
pub const MAX_SHARDS_PER_STREAM: u32 = 10_000;
/// Stream names are 1 to 128 characters of `[a-zA-Z0-9_.-]`.
pub const MAX_STREAM_NAME_CHARS: usize = 128;
/// ListStreams / DescribeStream page sizes.
pub const MAX_LIST_STREAMS_LIMIT: u32 = 10_000;
pub const DEFAULT_LIST_STREAMS_LIMIT: u32 = 100;
pub const MAX_LIST_SHARDS_RESULTS: u32 = 10_000;
pub const DEFAULT_LIST_SHARDS_RESULTS: u32 = 1000;
pub const MAX_DESCRIBE_STREAM_LIMIT: u32 = 100;
/// The account Shoal reports when no credentials name one.
pub const DEFAULT_ACCOUNT_ID: &str = "123456789012";
/// The region Shoal reports when no credentials name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Shards an ON_DEMAND stream starts with, as in Kinesis.
pub const ON_DEMAND_INITIAL_SHARDS: u32 = 4;
