//! Reading a CreateDeliveryStream input (the AWS JSON shape), shared by the
//! Firehose API on the AWS port and the gRPC `Firehose` service.

use serde_json::{Map, Value, json};
use shoal_raft::delivery_stream::DeliveryStreamCommand;

use crate::destination::{DESTINATION_KEYS, Destination};

/// Why an input was refused: a `Validation` problem (shape, name) or an
/// `InvalidArgument` one (a value the API cannot use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    Validation(String),
    InvalidArgument(String),
}

/// Delivery stream names: 1–64 of `[a-zA-Z0-9_.-]`.
pub fn check_name(name: &str) -> Result<(), InputError> {
    let valid = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(InputError::Validation(format!(
            "1 validation error detected: Value '{name}' at 'deliveryStreamName' failed to satisfy constraint: Member must have length between 1 and 64 and match pattern [a-zA-Z0-9_.-]+"
        )));
    }
    Ok(())
}

/// The delivery stream's name and the metadata command that creates it.
/// `stream_of_arn` turns a `KinesisStreamARN` into a Shoal stream name.
pub fn create_command(
    input: &Map<String, Value>,
    stream_of_arn: impl Fn(&str) -> Result<String, String>,
) -> Result<(String, DeliveryStreamCommand), InputError> {
    let invalid = |m: String| InputError::InvalidArgument(m);
    let name = input
        .get("DeliveryStreamName")
        .and_then(Value::as_str)
        .ok_or_else(|| InputError::Validation("DeliveryStreamName is required.".into()))?;
    check_name(name)?;
    let kind = input.get("DeliveryStreamType").and_then(Value::as_str).unwrap_or("DirectPut").to_string();
    let source_stream = match kind.as_str() {
        "DirectPut" => None,
        "KinesisStreamAsSource" => {
            let arn = input
                .get("KinesisStreamSourceConfiguration")
                .and_then(|c| c.get("KinesisStreamARN"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("KinesisStreamSourceConfiguration.KinesisStreamARN is required.".into()))?;
            Some(stream_of_arn(arn).map_err(invalid)?)
        }
        other => {
            return Err(invalid(format!(
                "DeliveryStreamType {other} is not supported (DirectPut, KinesisStreamAsSource)."
            )));
        }
    };
    let given: Vec<&str> = DESTINATION_KEYS.iter().map(|(k, _)| *k).filter(|k| input.contains_key(*k)).collect();
    let key = match given.as_slice() {
        [one] => *one,
        [] => return Err(invalid("A destination configuration is required.".into())),
        _ => return Err(invalid("Only one destination configuration may be given.".into())),
    };
    if !DESTINATION_KEYS.iter().any(|(k, supported)| *k == key && *supported) {
        return Err(invalid(format!("{key} is not supported by Shoal yet.")));
    }
    let config = input.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
    Destination::from_config(key, &config).map_err(invalid)?;
    let destination = json!({ key: config }).to_string();
    let mut tags = Vec::new();
    for tag in input.get("Tags").and_then(Value::as_array).into_iter().flatten() {
        let key = tag.get("Key").and_then(Value::as_str).unwrap_or_default();
        let value = tag.get("Value").and_then(Value::as_str).unwrap_or_default();
        if key.is_empty() || key.len() > 128 || value.len() > 256 {
            return Err(invalid("Tag keys are 1–128 and values 0–256 characters.".into()));
        }
        tags.push((key.to_string(), value.to_string()));
    }
    Ok((name.to_string(), DeliveryStreamCommand::Create { kind, source_stream, destination, tags }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn inputs_need_a_name_and_exactly_one_supported_destination() {
        let s3 = json!({"RoleARN": "arn:aws:iam::1:role/r", "BucketARN": "arn:aws:s3:::b-1"});
        let ok = input(
            json!({"DeliveryStreamName": "d", "ExtendedS3DestinationConfiguration": s3, "Tags": [{"Key": "k", "Value": "v"}]}),
        );
        let (name, command) = create_command(&ok, |_| Err("no".into())).unwrap();
        assert_eq!(name, "d");
        assert!(
            matches!(command, DeliveryStreamCommand::Create { ref kind, ref tags, .. } if kind == "DirectPut" && tags.len() == 1)
        );
        let bad_name = input(json!({"DeliveryStreamName": "a b", "ExtendedS3DestinationConfiguration": s3}));
        assert!(matches!(create_command(&bad_name, |_| Err("no".into())), Err(InputError::Validation(_))));
        let two = input(
            json!({"DeliveryStreamName": "d", "ExtendedS3DestinationConfiguration": s3, "S3DestinationConfiguration": s3}),
        );
        assert!(matches!(create_command(&two, |_| Err("no".into())), Err(InputError::InvalidArgument(_))));
        let snowflake = input(json!({"DeliveryStreamName": "d", "SnowflakeDestinationConfiguration": {}}));
        assert!(create_command(&snowflake, |_| Err("no".into())).is_err());
    }
}
