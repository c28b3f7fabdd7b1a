//! Firehose delivery streams, as the metadata group keeps them.
//!
//! The metadata holds what must be linearizable: names, the version id that
//! `UpdateDestination` checks, status, tags and encryption. The destination's
//! configuration is kept as the AWS JSON it arrived in (checked by the Firehose
//! API before it is proposed) and interpreted by the delivery worker.
//! A DirectPut delivery stream writes into its own Shoal stream, created in the
//! same metadata entry, so records survive node and worker crashes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_types::ShoalError;

/// Most delivery streams per cluster (Firehose's default quota per region).
pub const MAX_DELIVERY_STREAMS: usize = 50;
/// Most tags a delivery stream may carry.
pub const MAX_DELIVERY_STREAM_TAGS: usize = 50;
/// Shards of the internal stream behind a DirectPut delivery stream.
pub const DIRECT_PUT_SHARDS: u32 = 2;
/// Retention of that stream: Firehose keeps undeliverable data for 24 hours; a
/// week here, so an outage of the destination costs nothing for longer.
pub const DIRECT_PUT_RETENTION_HOURS: u32 = 168;

/// The stream that holds a DirectPut delivery stream's records.
pub fn direct_put_stream(delivery_stream: &str) -> String {
    format!("__firehose-{delivery_stream}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryStream {
    pub name: String,
    /// `DirectPut` or `KinesisStreamAsSource`.
    pub kind: String,
    /// The Shoal stream the worker reads: the internal one for DirectPut.
    pub source_stream: String,
    pub status: String,
    /// Goes up by one with every destination change (`UpdateDestination`).
    pub version_id: u64,
    pub created_millis: u64,
    pub updated_millis: u64,
    /// The destination, as AWS JSON (e.g. an `ExtendedS3DestinationConfiguration`
    /// under its own key: `{"ExtendedS3DestinationConfiguration": {…}}`).
    pub destination: String,
    pub tags: BTreeMap<String, String>,
    /// `(key type, key ARN)` while server-side encryption is on.
    pub encryption: Option<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStreamCommand {
    Create {
        kind: String,
        source_stream: Option<String>,
        destination: String,
        tags: Vec<(String, String)>,
    },
    Delete,
    /// Replaces the destination if `expected_version` is still current.
    UpdateDestination {
        expected_version: u64,
        destination: String,
    },
    Tag {
        tags: Vec<(String, String)>,
    },
    Untag {
        keys: Vec<String>,
    },
    StartEncryption {
        key_type: String,
        key_arn: Option<String>,
    },
    StopEncryption,
}

pub(crate) fn not_found(name: &str) -> ShoalError {
    ShoalError::not_found(format!(
        "Firehose {name} under account {} not found.",
        shoal_types::limits::DEFAULT_ACCOUNT_ID
    ))
}

/// Applies `command` to `streams`; creating a DirectPut stream is completed by
/// the caller, which creates its internal stream in the same entry.
pub(crate) fn apply(
    streams: &mut BTreeMap<String, DeliveryStream>,
    name: &str,
    command: DeliveryStreamCommand,
    now_millis: u64,
) -> Result<Option<DeliveryStream>, ShoalError> {
    match command {
        DeliveryStreamCommand::Create { kind, source_stream, destination, tags } => {
            if streams.contains_key(name) {
                return Err(ShoalError::in_use(format!("Firehose {name} already exists.")));
            }
            if streams.len() >= MAX_DELIVERY_STREAMS {
                return Err(ShoalError::limit_exceeded(format!(
                    "You have already consumed your firehose quota of {MAX_DELIVERY_STREAMS} hoses."
                )));
            }
            check_tag_count(tags.len())?;
            let source_stream = match (kind.as_str(), source_stream) {
                ("DirectPut", _) => direct_put_stream(name),
                ("KinesisStreamAsSource", Some(stream)) => stream,
                (other, _) => {
                    return Err(ShoalError::invalid_argument(format!(
                        "DeliveryStreamType {other} needs a source stream."
                    )));
                }
            };
            let stream = DeliveryStream {
                name: name.to_string(),
                kind,
                source_stream,
                status: "ACTIVE".into(),
                version_id: 1,
                created_millis: now_millis,
                updated_millis: now_millis,
                destination,
                tags: tags.into_iter().collect(),
                encryption: None,
            };
            streams.insert(name.to_string(), stream.clone());
            Ok(Some(stream))
        }
        DeliveryStreamCommand::Delete => {
            streams.remove(name).ok_or_else(|| not_found(name))?;
            Ok(None)
        }
        DeliveryStreamCommand::UpdateDestination { expected_version, destination } => {
            let stream = streams.get_mut(name).ok_or_else(|| not_found(name))?;
            if stream.version_id != expected_version {
                return Err(ShoalError::new(
                    shoal_types::ErrorCode::ConcurrentModification,
                    format!(
                        "Cannot update firehose: {name} since the current version id: {} and specified version id: {expected_version} do not match",
                        stream.version_id
                    ),
                ));
            }
            stream.destination = destination;
            stream.version_id += 1;
            stream.updated_millis = now_millis;
            Ok(Some(stream.clone()))
        }
        DeliveryStreamCommand::Tag { tags } => {
            let stream = streams.get_mut(name).ok_or_else(|| not_found(name))?;
            let mut merged = stream.tags.clone();
            merged.extend(tags);
            check_tag_count(merged.len())?;
            stream.tags = merged;
            Ok(Some(stream.clone()))
        }
        DeliveryStreamCommand::Untag { keys } => {
            let stream = streams.get_mut(name).ok_or_else(|| not_found(name))?;
            for key in keys {
                stream.tags.remove(&key);
            }
            Ok(Some(stream.clone()))
        }
        DeliveryStreamCommand::StartEncryption { key_type, key_arn } => {
            let stream = streams.get_mut(name).ok_or_else(|| not_found(name))?;
            stream.encryption = Some((key_type, key_arn));
            Ok(Some(stream.clone()))
        }
        DeliveryStreamCommand::StopEncryption => {
            let stream = streams.get_mut(name).ok_or_else(|| not_found(name))?;
            stream.encryption = None;
            Ok(Some(stream.clone()))
        }
    }
}

fn check_tag_count(count: usize) -> Result<(), ShoalError> {
    if count > MAX_DELIVERY_STREAM_TAGS {
        return Err(ShoalError::limit_exceeded(format!(
            "A delivery stream can have at most {MAX_DELIVERY_STREAM_TAGS} tags."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(
        streams: &mut BTreeMap<String, DeliveryStream>,
        name: &str,
    ) -> Result<Option<DeliveryStream>, ShoalError> {
        let command = DeliveryStreamCommand::Create {
            kind: "DirectPut".into(),
            source_stream: None,
            destination: "{}".into(),
            tags: vec![],
        };
        apply(streams, name, command, 1)
    }

    #[test]
    fn versions_guard_destination_updates() {
        let mut streams = BTreeMap::new();
        let created = create(&mut streams, "hose").unwrap().unwrap();
        assert_eq!((created.version_id, created.source_stream.as_str()), (1, "__firehose-hose"));
        assert!(create(&mut streams, "hose").is_err(), "names are unique");
        let update =
            |v| DeliveryStreamCommand::UpdateDestination { expected_version: v, destination: "{\"x\":1}".into() };
        assert_eq!(apply(&mut streams, "hose", update(1), 2).unwrap().unwrap().version_id, 2);
        let stale = apply(&mut streams, "hose", update(1), 3).unwrap_err();
        assert_eq!(stale.code, shoal_types::ErrorCode::ConcurrentModification);
        assert!(apply(&mut streams, "nope", DeliveryStreamCommand::Delete, 4).is_err());
    }

    #[test]
    fn tags_are_capped_at_fifty() {
        let mut streams = BTreeMap::new();
        create(&mut streams, "hose").unwrap();
        let tags = (0..51).map(|i| (format!("k{i}"), "v".to_string())).collect();
        assert!(apply(&mut streams, "hose", DeliveryStreamCommand::Tag { tags }, 2).is_err());
    }
}
