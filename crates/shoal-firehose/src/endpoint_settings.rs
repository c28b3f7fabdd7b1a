//! What the destinations that deliver to an endpoint and back up to S3 (HTTP
//! endpoint, OpenSearch, Splunk) configure alike: buffering hints, how long to
//! retry, the S3 backup mode and the backup bucket — parsed, checked against each
//! destination's limits, and described back the same way.

use serde_json::{Map, Value, json};

use crate::destination::S3Destination;

/// A destination's buffering and retry defaults and limits.
pub struct Limits {
    /// Named in errors ("an HTTP endpoint").
    pub destination: &'static str,
    pub default_size_mb: u64,
    pub max_size_mb: u64,
    pub default_interval_secs: u64,
    pub max_interval_secs: u64,
    pub default_retry_secs: u64,
}

/// The destination's two `S3BackupMode` values: failed records only (the default)
/// or every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupModes {
    pub failed_only: &'static str,
    pub all: &'static str,
}

/// The most `RetryOptions.DurationInSeconds` Firehose accepts.
const MAX_RETRY_SECS: u64 = 7200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSettings {
    pub size_bytes: u64,
    pub interval_secs: u64,
    pub retry_secs: u64,
    /// Every record is also written to the backup bucket (not only failed ones).
    pub backup_all: bool,
    /// Where failed (and with `backup_all`, all) records go.
    pub backup: S3Destination,
    modes: BackupModes,
}

/// `RetryOptions.DurationInSeconds`, or `default`; at most two hours.
pub fn retry_secs(config: &Value, default: u64) -> Result<u64, String> {
    let secs = config.pointer("/RetryOptions/DurationInSeconds").and_then(Value::as_u64).unwrap_or(default);
    if secs > MAX_RETRY_SECS {
        return Err(format!("RetryOptions.DurationInSeconds {secs} is outside 0..{MAX_RETRY_SECS}."));
    }
    Ok(secs)
}

/// The required `S3Configuration` (backup or intermediate bucket).
pub fn s3_configuration(config: &Value) -> Result<S3Destination, String> {
    let s3 = config.get("S3Configuration").and_then(Value::as_object).ok_or("S3Configuration is required.")?;
    S3Destination::from_config(s3)
}

/// Turns a stored `S3Configuration` into the `S3DestinationDescription` that
/// DescribeDeliveryStream shows.
pub fn describe_s3_configuration(description: &mut Map<String, Value>, s3: &S3Destination) {
    if let Some(stored) = description.remove("S3Configuration") {
        description
            .insert("S3DestinationDescription".into(), s3.describe(&json!({ "S3DestinationConfiguration": stored })));
    }
}

impl EndpointSettings {
    pub fn from_config(config: &Value, limits: &Limits, modes: BackupModes) -> Result<EndpointSettings, String> {
        let hint = |name: &str| config.pointer(&format!("/BufferingHints/{name}")).and_then(Value::as_u64);
        let size_mb = hint("SizeInMBs").unwrap_or(limits.default_size_mb);
        if !(1..=limits.max_size_mb).contains(&size_mb) {
            return Err(format!(
                "BufferingHints.SizeInMBs {size_mb} is outside 1..{} for {}.",
                limits.max_size_mb, limits.destination
            ));
        }
        let interval_secs = hint("IntervalInSeconds").unwrap_or(limits.default_interval_secs);
        if interval_secs > limits.max_interval_secs {
            return Err(format!(
                "BufferingHints.IntervalInSeconds {interval_secs} is outside 0..{} for {}.",
                limits.max_interval_secs, limits.destination
            ));
        }
        let retry_secs = retry_secs(config, limits.default_retry_secs)?;
        let backup_all = match config.get("S3BackupMode").and_then(Value::as_str) {
            None => false,
            Some(mode) if mode == modes.failed_only => false,
            Some(mode) if mode == modes.all => true,
            Some(other) => {
                return Err(format!("S3BackupMode {other} is not {} or {}.", modes.failed_only, modes.all));
            }
        };
        Ok(EndpointSettings {
            size_bytes: size_mb << 20,
            interval_secs,
            retry_secs,
            backup_all,
            backup: s3_configuration(config)?,
            modes,
        })
    }

    /// Adds these settings to a stored configuration being described.
    pub fn describe_into(&self, description: &mut Map<String, Value>) {
        describe_s3_configuration(description, &self.backup);
        description.insert(
            "BufferingHints".into(),
            json!({ "SizeInMBs": self.size_bytes >> 20, "IntervalInSeconds": self.interval_secs }),
        );
        description.insert("RetryOptions".into(), json!({ "DurationInSeconds": self.retry_secs }));
        let mode = if self.backup_all { self.modes.all } else { self.modes.failed_only };
        description.insert("S3BackupMode".into(), json!(mode));
    }
}
