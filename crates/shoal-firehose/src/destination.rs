//! The S3 destination of a delivery stream, read from the AWS JSON shapes
//! (`ExtendedS3DestinationConfiguration` or the older `S3DestinationConfiguration`),
//! checked against Firehose's limits.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Firehose's buffering defaults: 5 MiB or 300 seconds, whichever comes first.
pub const DEFAULT_SIZE_MB: u64 = 5;
pub const DEFAULT_INTERVAL_SECS: u64 = 300;

/// The destination keys the Firehose API knows, and whether Shoal delivers there yet.
pub const DESTINATION_KEYS: [(&str, bool); 10] = [
    ("ExtendedS3DestinationConfiguration", true),
    ("S3DestinationConfiguration", true),
    ("RedshiftDestinationConfiguration", true),
    ("ElasticsearchDestinationConfiguration", true),
    ("AmazonopensearchserviceDestinationConfiguration", true),
    ("AmazonOpenSearchServerlessDestinationConfiguration", false),
    ("SplunkDestinationConfiguration", true),
    ("HttpEndpointDestinationConfiguration", true),
    ("SnowflakeDestinationConfiguration", false),
    ("IcebergDestinationConfiguration", false),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compression {
    #[serde(rename = "UNCOMPRESSED")]
    Uncompressed,
    #[serde(rename = "GZIP")]
    Gzip,
    #[serde(rename = "ZIP")]
    Zip,
    #[serde(rename = "Snappy")]
    Snappy,
    #[serde(rename = "HADOOP_SNAPPY")]
    HadoopSnappy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BufferingHints {
    #[serde(rename = "SizeInMBs")]
    pub size_in_mbs: Option<u64>,
    pub interval_in_seconds: Option<u64>,
}

/// What the worker needs to deliver to S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Destination {
    pub role_arn: String,
    pub bucket_arn: String,
    pub bucket: String,
    pub prefix: String,
    pub error_output_prefix: String,
    pub size_bytes: u64,
    pub interval_secs: u64,
    pub compression: Compression,
    /// Overrides the extension that follows from the compression.
    pub file_extension: Option<String>,
    /// A Lambda-compatible function the records go through first.
    pub transform: Option<crate::transform::Transform>,
    /// JSON → Parquet, with the schema of a declared table.
    pub conversion: Option<crate::conversion::Conversion>,
    /// The jq query that yields each record's partition keys (dynamic partitioning).
    pub partitioning: Option<String>,
    /// `S3BackupMode: Enabled`: the source records, as they arrived (before any
    /// transformation or conversion), also go to this bucket.
    pub backup: Option<Box<S3Destination>>,
}

fn field<'a>(config: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    config.get(name).filter(|v| !v.is_null())
}

fn string_field(config: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match field(config, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{name} must be a string.")),
    }
}

/// The bucket of `arn:aws:s3:::bucket`.
pub fn bucket_of(arn: &str) -> Result<String, String> {
    let bucket = arn
        .strip_prefix("arn:aws:s3:::")
        .or_else(|| arn.strip_prefix("arn:aws-cn:s3:::"))
        .or_else(|| arn.strip_prefix("arn:aws-us-gov:s3:::"))
        .ok_or_else(|| format!("BucketARN {arn} is not an S3 bucket ARN (arn:aws:s3:::BUCKET)."))?;
    let valid = (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid {
        return Err(format!("Bucket name {bucket:?} is not a valid S3 bucket name."));
    }
    Ok(bucket.to_string())
}

impl S3Destination {
    /// Reads and checks a destination from `{"ExtendedS3DestinationConfiguration": {…}}`
    /// (or `S3DestinationConfiguration`), as stored in the metadata.
    pub fn from_stored(destination: &Value) -> Result<S3Destination, String> {
        let config = ["ExtendedS3DestinationConfiguration", "S3DestinationConfiguration"]
            .iter()
            .find_map(|key| destination.get(key).and_then(Value::as_object))
            .ok_or("The delivery stream has no S3 destination.")?;
        Self::from_config(config)
    }

    pub fn from_config(config: &Map<String, Value>) -> Result<S3Destination, String> {
        let role_arn = string_field(config, "RoleARN")?.ok_or("RoleARN is required.")?;
        let bucket_arn = string_field(config, "BucketARN")?.ok_or("BucketARN is required.")?;
        let bucket = bucket_of(&bucket_arn)?;
        let prefix = string_field(config, "Prefix")?.unwrap_or_default();
        let error_output_prefix = string_field(config, "ErrorOutputPrefix")?.unwrap_or_default();
        for (name, value) in [("Prefix", &prefix), ("ErrorOutputPrefix", &error_output_prefix)] {
            if value.len() > 1024 {
                return Err(format!("{name} is longer than 1024 characters."));
            }
        }
        if prefix.contains("!{") && error_output_prefix.is_empty() {
            return Err("ErrorOutputPrefix is required when Prefix contains expressions.".into());
        }
        crate::naming::check_prefix(&prefix)?;
        let hints: Option<BufferingHints> = field(config, "BufferingHints")
            .map(|v| serde_json::from_value(v.clone()))
            .transpose()
            .map_err(|e| format!("BufferingHints: {e}"))?;
        let (size_mb, interval_secs) = match hints {
            None => (DEFAULT_SIZE_MB, DEFAULT_INTERVAL_SECS),
            Some(BufferingHints { size_in_mbs, interval_in_seconds }) => {
                (size_in_mbs.unwrap_or(DEFAULT_SIZE_MB), interval_in_seconds.unwrap_or(DEFAULT_INTERVAL_SECS))
            }
        };
        if !(1..=128).contains(&size_mb) {
            return Err(format!("BufferingHints.SizeInMBs {size_mb} is outside 1..128."));
        }
        if interval_secs > 900 {
            return Err(format!("BufferingHints.IntervalInSeconds {interval_secs} is outside 0..900."));
        }
        let compression = match field(config, "CompressionFormat") {
            None => Compression::Uncompressed,
            Some(value) => serde_json::from_value(value.clone()).map_err(|_| {
                format!("CompressionFormat {value} is not one of UNCOMPRESSED, GZIP, ZIP, Snappy, HADOOP_SNAPPY.")
            })?,
        };
        let file_extension = string_field(config, "FileExtension")?;
        if let Some(ext) = &file_extension
            && (!ext.starts_with('.') || ext.len() > 128)
        {
            return Err(format!("FileExtension {ext:?} must start with '.' and be at most 128 characters."));
        }
        let transform = crate::transform::Transform::from_config(config)?;
        let conversion = crate::conversion::Conversion::from_config(config)?;
        let partitioning = partitioning_query(config)?;
        if prefix.contains("!{partitionKeyFromQuery:") && partitioning.is_none() {
            return Err(
                "!{partitionKeyFromQuery:…} needs DynamicPartitioningConfiguration and a MetadataExtraction processor."
                    .into(),
            );
        }
        if let Some(query) = &partitioning {
            crate::partitioning::Query::compile(query)?;
            if error_output_prefix.is_empty() {
                return Err("ErrorOutputPrefix is required with dynamic partitioning.".into());
            }
        }
        if conversion.is_some() && compression != Compression::Uncompressed {
            return Err("With DataFormatConversionConfiguration, CompressionFormat must be UNCOMPRESSED (the serializer compresses).".into());
        }
        let backup = match string_field(config, "S3BackupMode")?.as_deref().unwrap_or("Disabled") {
            "Disabled" => None,
            "Enabled" => {
                let backup = field(config, "S3BackupConfiguration")
                    .and_then(Value::as_object)
                    .ok_or("S3BackupMode Enabled needs S3BackupConfiguration.")?;
                Some(Box::new(S3Destination::from_config(backup)?))
            }
            other => return Err(format!("S3BackupMode {other} is not Disabled or Enabled.")),
        };
        Ok(S3Destination {
            backup,
            transform,
            conversion,
            partitioning,
            role_arn,
            bucket_arn,
            bucket,
            prefix,
            error_output_prefix,
            size_bytes: size_mb * 1024 * 1024,
            interval_secs,
            compression,
            file_extension,
        })
    }

    /// The description DescribeDeliveryStream returns for this destination.
    pub fn describe(&self, stored: &Value) -> Value {
        let config = ["ExtendedS3DestinationConfiguration", "S3DestinationConfiguration"]
            .iter()
            .find_map(|key| stored.get(key).and_then(Value::as_object))
            .cloned()
            .unwrap_or_default();
        let mut description = config;
        description.insert(
            "BufferingHints".into(),
            serde_json::json!({
                "SizeInMBs": self.size_bytes / (1024 * 1024),
                "IntervalInSeconds": self.interval_secs,
            }),
        );
        description.insert("CompressionFormat".into(), serde_json::to_value(self.compression).unwrap_or(Value::Null));
        description
            .entry("EncryptionConfiguration")
            .or_insert_with(|| serde_json::json!({ "NoEncryptionConfig": "NoEncryption" }));
        description.entry("S3BackupMode").or_insert_with(|| Value::String("Disabled".into()));
        Value::Object(description)
    }
}

/// The `MetadataExtractionQuery` of an enabled `DynamicPartitioningConfiguration`.
fn partitioning_query(config: &Map<String, Value>) -> Result<Option<String>, String> {
    let enabled =
        config.get("DynamicPartitioningConfiguration").and_then(|d| d.get("Enabled")).and_then(Value::as_bool);
    if enabled != Some(true) {
        return Ok(None);
    }
    let processors = config.get("ProcessingConfiguration").and_then(|p| p.get("Processors")).and_then(Value::as_array);
    let query = processors
        .into_iter()
        .flatten()
        .filter(|p| p.get("Type").and_then(Value::as_str) == Some("MetadataExtraction"))
        .flat_map(|p| p.get("Parameters").and_then(Value::as_array).cloned().unwrap_or_default())
        .find(|p| p.get("ParameterName").and_then(Value::as_str) == Some("MetadataExtractionQuery"))
        .and_then(|p| p.get("ParameterValue").and_then(Value::as_str).map(str::to_string));
    query.map(Some).ok_or_else(|| {
        "Dynamic partitioning needs a MetadataExtraction processor with a MetadataExtractionQuery.".into()
    })
}

/// A delivery stream's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    S3(S3Destination),
    Http(crate::http_endpoint::HttpDestination),
    /// OpenSearch or Elasticsearch `_bulk`.
    Search(crate::search::SearchDestination),
    Splunk(crate::splunk::SplunkDestination),
    /// PostgreSQL, standing in for Redshift.
    Postgres(crate::postgres::PostgresDestination),
}

/// The update shape that goes with each stored configuration key.
const UPDATE_KEYS: [(&str, &str); 7] = [
    ("RedshiftDestinationConfiguration", "RedshiftDestinationUpdate"),
    ("ExtendedS3DestinationConfiguration", "ExtendedS3DestinationUpdate"),
    ("S3DestinationConfiguration", "S3DestinationUpdate"),
    ("HttpEndpointDestinationConfiguration", "HttpEndpointDestinationUpdate"),
    ("AmazonopensearchserviceDestinationConfiguration", "AmazonopensearchserviceDestinationUpdate"),
    ("ElasticsearchDestinationConfiguration", "ElasticsearchDestinationUpdate"),
    ("SplunkDestinationConfiguration", "SplunkDestinationUpdate"),
];

impl Destination {
    /// Reads and checks the configuration given under `key` (a `…DestinationConfiguration`).
    pub fn from_config(key: &str, config: &Map<String, Value>) -> Result<Destination, String> {
        match key {
            "ExtendedS3DestinationConfiguration" | "S3DestinationConfiguration" => {
                Ok(Destination::S3(S3Destination::from_config(config)?))
            }
            "HttpEndpointDestinationConfiguration" => {
                Ok(Destination::Http(crate::http_endpoint::HttpDestination::from_config(config)?))
            }
            "AmazonopensearchserviceDestinationConfiguration" | "ElasticsearchDestinationConfiguration" => {
                Ok(Destination::Search(crate::search::SearchDestination::from_config(config)?))
            }
            "SplunkDestinationConfiguration" => {
                Ok(Destination::Splunk(crate::splunk::SplunkDestination::from_config(config)?))
            }
            "RedshiftDestinationConfiguration" => {
                Ok(Destination::Postgres(crate::postgres::PostgresDestination::from_config(config)?))
            }
            other => Err(format!("{other} is not supported by Shoal yet.")),
        }
    }

    /// The stored `{"…DestinationConfiguration": {…}}` as key and configuration.
    pub fn stored_parts(stored: &Value) -> Result<(&'static str, Map<String, Value>), String> {
        UPDATE_KEYS
            .iter()
            .find_map(|(key, _)| stored.get(*key).and_then(Value::as_object).map(|c| (*key, c.clone())))
            .ok_or_else(|| "The delivery stream has no supported destination.".to_string())
    }

    pub fn from_stored(stored: &Value) -> Result<Destination, String> {
        let (key, config) = Self::stored_parts(stored)?;
        Self::from_config(key, &config)
    }

    /// The bucket the worker writes to: the destination's, or the backup bucket
    /// of an HTTP endpoint.
    pub fn bucket(&self) -> &str {
        match self {
            Destination::S3(s3) => &s3.bucket,
            Destination::Http(http) => &http.settings.backup.bucket,
            Destination::Search(search) => &search.settings.backup.bucket,
            Destination::Splunk(splunk) => &splunk.settings.backup.bucket,
            Destination::Postgres(pg) => &pg.intermediate.bucket,
        }
    }

    pub fn size_bytes(&self) -> u64 {
        match self {
            Destination::S3(s3) => s3.size_bytes,
            Destination::Http(http) => http.settings.size_bytes,
            Destination::Search(search) => search.settings.size_bytes,
            Destination::Splunk(splunk) => splunk.settings.size_bytes,
            Destination::Postgres(pg) => pg.intermediate.size_bytes,
        }
    }

    pub fn interval_secs(&self) -> u64 {
        match self {
            Destination::S3(s3) => s3.interval_secs,
            Destination::Http(http) => http.settings.interval_secs,
            Destination::Search(search) => search.settings.interval_secs,
            Destination::Splunk(splunk) => splunk.settings.interval_secs,
            Destination::Postgres(pg) => pg.intermediate.interval_secs,
        }
    }

    /// The `(key, description)` pairs of DescribeDeliveryStream's destination entry.
    pub fn describe(&self, stored: &Value) -> Vec<(&'static str, Value)> {
        match self {
            Destination::S3(s3) => {
                let described = s3.describe(stored);
                vec![("ExtendedS3DestinationDescription", described.clone()), ("S3DestinationDescription", described)]
            }
            Destination::Http(http) => {
                let config = Self::stored_parts(stored).map(|(_, c)| c).unwrap_or_default();
                vec![("HttpEndpointDestinationDescription", http.describe(&config))]
            }
            Destination::Search(search) => {
                let (key, config) = Self::stored_parts(stored).unwrap_or(("", Map::new()));
                let name = if key.starts_with("Elasticsearch") {
                    "ElasticsearchDestinationDescription"
                } else {
                    "AmazonopensearchserviceDestinationDescription"
                };
                vec![(name, search.describe(&config))]
            }
            Destination::Splunk(splunk) => {
                let config = Self::stored_parts(stored).map(|(_, c)| c).unwrap_or_default();
                vec![("SplunkDestinationDescription", splunk.describe(&config))]
            }
            Destination::Postgres(pg) => {
                let config = Self::stored_parts(stored).map(|(_, c)| c).unwrap_or_default();
                vec![("RedshiftDestinationDescription", pg.describe(&config))]
            }
        }
    }
}

/// Merges an update (`ExtendedS3DestinationUpdate`, `S3DestinationUpdate`,
/// `HttpEndpointDestinationUpdate`) from `body` into the stored destination:
/// fields given replace, fields left out stay. The update must match the
/// destination's kind.
pub fn apply_update(stored: &Value, body: &Map<String, Value>) -> Result<Value, String> {
    let (key, mut config) = Destination::stored_parts(stored)?;
    let update_key = UPDATE_KEYS.iter().find(|(k, _)| *k == key).map(|(_, u)| *u).unwrap_or_default();
    let update = body
        .get(update_key)
        .or_else(|| {
            if key.contains("S3") {
                body.get("S3DestinationUpdate").or(body.get("ExtendedS3DestinationUpdate"))
            } else {
                None
            }
        })
        .and_then(Value::as_object)
        .ok_or_else(|| format!("This delivery stream's destination is updated with {update_key}."))?;
    for (name, value) in update {
        // An HTTP endpoint's S3 settings arrive as S3Update and are kept as S3Configuration.
        let name = if name == "S3Update" { "S3Configuration".to_string() } else { name.clone() };
        match (config.get_mut(&name), value) {
            (Some(Value::Object(current)), Value::Object(changes)) => {
                for (k, v) in changes {
                    current.insert(k.clone(), v.clone());
                }
            }
            _ => {
                config.insert(name, value.clone());
            }
        }
    }
    Destination::from_config(key, &config)?;
    Ok(serde_json::json!({ key: config }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn defaults_and_limits_follow_firehose() {
        let base = json!({"RoleARN": "arn:aws:iam::1:role/r", "BucketARN": "arn:aws:s3:::logs"});
        let parsed = S3Destination::from_config(&config(base.clone())).unwrap();
        assert_eq!((parsed.bucket.as_str(), parsed.size_bytes, parsed.interval_secs), ("logs", 5 << 20, 300));
        let mut big = base.clone();
        big["BufferingHints"] = json!({"SizeInMBs": 129, "IntervalInSeconds": 60});
        assert!(S3Destination::from_config(&config(big)).unwrap_err().contains("SizeInMBs"));
        let mut slow = base.clone();
        slow["BufferingHints"] = json!({"SizeInMBs": 1, "IntervalInSeconds": 901});
        assert!(S3Destination::from_config(&config(slow)).is_err());
        let mut odd = base.clone();
        odd["CompressionFormat"] = json!("BROTLI");
        assert!(S3Destination::from_config(&config(odd)).is_err());
        let mut expressions = base;
        expressions["Prefix"] = json!("data/!{timestamp:yyyy}/");
        assert!(S3Destination::from_config(&config(expressions)).unwrap_err().contains("ErrorOutputPrefix"));
    }

    #[test]
    fn bucket_arns_are_checked() {
        assert_eq!(bucket_of("arn:aws:s3:::my-bucket").unwrap(), "my-bucket");
        assert!(bucket_of("arn:aws:s3:::UPPER").is_err());
        assert!(bucket_of("my-bucket").is_err());
    }

    #[test]
    fn updates_merge_into_the_stored_destination() {
        let stored = json!({"ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::1:role/r", "BucketARN": "arn:aws:s3:::logs", "Prefix": "a/"}});
        let updated = apply_update(&stored, &config(json!({"ExtendedS3DestinationUpdate": {"Prefix": "b/"}}))).unwrap();
        let parsed = S3Destination::from_stored(&updated).unwrap();
        assert_eq!((parsed.prefix.as_str(), parsed.bucket.as_str()), ("b/", "logs"));
        assert!(apply_update(&stored, &config(json!({"ExtendedS3DestinationUpdate": {"BucketARN": "nope"}}))).is_err());
        assert!(apply_update(&stored, &config(json!({"HttpEndpointDestinationUpdate": {}}))).is_err());
    }
}
