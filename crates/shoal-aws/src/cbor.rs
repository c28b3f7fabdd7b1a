//! CBOR bodies (`application/x-amz-cbor-1.1`) as the JSON Shoal's handlers speak.
//!
//! The AWS SDKs for Java (v1, v2, and so the KCL and the KPL's Java side) talk
//! to Kinesis in CBOR by default rather than JSON, to avoid base64-inflating
//! record data. The operations and shapes are the same as in AWS JSON 1.1; only
//! the encoding differs. So rather than a second set of handlers, the server
//! turns a CBOR request body into the `serde_json::Value` the JSON handlers
//! take, and turns their JSON answer back into CBOR.
//!
//! Two kinds of value are encoded differently in the two protocols:
//!
//! * Blobs (`Data`): a CBOR byte string, but a base64 string in JSON. Byte
//!   strings become standard base64 on the way in; on the way out the caller
//!   names the blob fields, since a JSON string does not say it is base64.
//! * Timestamps (`ApproximateArrivalTimestamp`, `StreamCreationTimestamp`,
//!   `Timestamp`, ...): a number of epoch seconds in JSON, CBOR tag 1 in CBOR.
//!   RFC 8949 puts *seconds* in tag 1, but the AWS SDKs for Java write and read
//!   epoch *milliseconds* there (aws/aws-sdk-java-v2#4661, and #979 which made
//!   the SDK read them so). Kinesis does as the SDKs do, and so does this module:
//!   milliseconds in tag 1 become seconds in JSON and back. On the way out the
//!   caller names the timestamp fields, as for blobs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ciborium::Value;
use serde_json::{Map, Number, Value as Json};

/// CBOR tag 1: epoch-based date/time (in milliseconds, as AWS uses it).
const TAG_EPOCH: u64 = 1;

/// The Kinesis Data Streams members that are blobs.
pub const KINESIS_BLOB_FIELDS: &[&str] = &["Data"];

/// The Kinesis Data Streams members that are timestamps, in requests
/// (`GetShardIterator`, `ListShards`, `SubscribeToShard`'s starting position,
/// `ShardFilter`) and responses (records, stream and consumer descriptions).
pub const KINESIS_TIMESTAMP_FIELDS: &[&str] =
    &["ApproximateArrivalTimestamp", "ConsumerCreationTimestamp", "StreamCreationTimestamp", "Timestamp"];

/// Decodes one CBOR data item into JSON.
///
/// Maps need text keys. Byte strings become standard base64 strings, tag 1
/// (epoch milliseconds, integer or float) a number of epoch seconds (an
/// integer when the milliseconds are whole seconds), other tags their content.
/// NaN and infinities, which JSON cannot hold, are errors, as are integers
/// beyond `i64`/`u64` and bytes after the item.
pub fn cbor_to_json(bytes: &[u8]) -> Result<Json, String> {
    let mut rest = bytes;
    // ciborium limits nesting (256 levels), so neither it nor the conversion
    // below can be driven into a stack overflow.
    let value: Value = ciborium::de::from_reader(&mut rest).map_err(|error| format!("invalid CBOR: {error}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes of trailing data after the CBOR item", rest.len()));
    }
    value_to_json(value)
}

fn value_to_json(value: Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(b),
        Value::Integer(int) => Json::Number(integer_number(i128::from(int))?),
        Value::Float(f) => Json::Number(float_number(f)?),
        Value::Text(text) => Json::String(text),
        Value::Bytes(bytes) => Json::String(STANDARD.encode(bytes)),
        Value::Array(items) => Json::Array(items.into_iter().map(value_to_json).collect::<Result<_, _>>()?),
        Value::Map(entries) => {
            let mut object = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let Value::Text(key) = key else {
                    return Err(format!("map key is not text: {key:?}"));
                };
                object.insert(key, value_to_json(value)?);
            }
            Json::Object(object)
        }
        Value::Tag(TAG_EPOCH, inner) => Json::Number(match *inner {
            Value::Integer(millis) => {
                let millis = i128::from(millis);
                if millis % 1000 == 0 { integer_number(millis / 1000)? } else { float_number(millis as f64 / 1000.0)? }
            }
            Value::Float(millis) => float_number(millis / 1000.0)?,
            other => return Err(format!("tag 1 (epoch time) holds {other:?}, not a number")),
        }),
        // Bignums up to 128 bits arrive as `Integer`; a tag 2 or 3 still here is wider.
        Value::Tag(2 | 3, _) => return Err("CBOR bignum out of range".to_string()),
        Value::Tag(_, inner) => value_to_json(*inner)?,
        other => return Err(format!("unsupported CBOR value {other:?}")),
    })
}

fn integer_number(int: i128) -> Result<Number, String> {
    if let Ok(int) = i64::try_from(int) {
        Ok(Number::from(int))
    } else if let Ok(int) = u64::try_from(int) {
        Ok(Number::from(int))
    } else {
        Err(format!("integer {int} is out of range"))
    }
}

fn float_number(float: f64) -> Result<Number, String> {
    Number::from_f64(float).ok_or_else(|| format!("{float} cannot be represented in JSON"))
}

/// Encodes JSON as one CBOR data item.
///
/// Object members named in `blob_fields` that hold a string are decoded from
/// standard base64 and written as byte strings (a string that is not base64 is
/// an error); members named in `timestamp_fields` that hold a number of epoch
/// seconds are written as tag 1 holding integer epoch milliseconds (rounded to
/// the nearest). Other members, and these names holding other kinds of value,
/// are written as they are: integers as CBOR integers, other numbers as floats.
pub fn json_to_cbor(value: &Json, blob_fields: &[&str], timestamp_fields: &[&str]) -> Result<Vec<u8>, String> {
    let fields = Fields { blob: blob_fields, timestamp: timestamp_fields };
    let value = fields.convert(value)?;
    let mut out = Vec::new();
    ciborium::ser::into_writer(&value, &mut out).map_err(|error| format!("cannot encode CBOR: {error}"))?;
    Ok(out)
}

struct Fields<'f> {
    blob: &'f [&'f str],
    timestamp: &'f [&'f str],
}

impl Fields<'_> {
    fn convert(&self, value: &Json) -> Result<Value, String> {
        Ok(match value {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(number) => number_value(number)?,
            Json::String(text) => Value::Text(text.clone()),
            Json::Array(items) => Value::Array(items.iter().map(|item| self.convert(item)).collect::<Result<_, _>>()?),
            Json::Object(object) => {
                let mut entries = Vec::with_capacity(object.len());
                for (key, value) in object {
                    entries.push((Value::Text(key.clone()), self.member(key, value)?));
                }
                Value::Map(entries)
            }
        })
    }

    fn member(&self, key: &str, value: &Json) -> Result<Value, String> {
        match value {
            Json::String(text) if self.blob.contains(&key) => STANDARD
                .decode(text)
                .map(Value::Bytes)
                .map_err(|error| format!("blob member {key} is not base64: {error}")),
            Json::Number(seconds) if self.timestamp.contains(&key) => {
                Ok(Value::Tag(TAG_EPOCH, Box::new(Value::Integer(epoch_millis(key, seconds)?.into()))))
            }
            _ => self.convert(value),
        }
    }
}

fn number_value(number: &Number) -> Result<Value, String> {
    if let Some(int) = number.as_i64() {
        Ok(Value::Integer(int.into()))
    } else if let Some(int) = number.as_u64() {
        Ok(Value::Integer(int.into()))
    } else {
        number.as_f64().map(Value::Float).ok_or_else(|| format!("number {number} is not representable"))
    }
}

fn epoch_millis(key: &str, seconds: &Number) -> Result<i64, String> {
    let millis = if let Some(int) = seconds.as_i64() {
        int.checked_mul(1000)
    } else {
        seconds
            .as_f64()
            .map(|secs| (secs * 1000.0).round())
            // An f64 at or beyond ±2^63 does not fit; the casts below are exact inside.
            .filter(|millis| millis.is_finite() && millis.abs() < 9.223_372_036_854_775e18)
            .map(|millis| millis as i64)
    };
    millis.ok_or_else(|| format!("timestamp member {key} = {seconds} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode(value: &Json) -> Vec<u8> {
        json_to_cbor(value, KINESIS_BLOB_FIELDS, KINESIS_TIMESTAMP_FIELDS).expect("encodes")
    }

    fn decode_value(bytes: &[u8]) -> Value {
        ciborium::de::from_reader(bytes).expect("valid CBOR")
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
    }

    #[test]
    fn plain_values_round_trip() {
        let value = json!({
            "StreamName": "orders",
            "Limit": 25,
            "Big": 18_446_744_073_709_551_615u64,
            "Negative": -7,
            "Ratio": 0.25,
            "Flag": true,
            "Nothing": null,
            "Shards": [{"ShardId": "shardId-000000000000"}, [], {}],
            "Unicode": "ñ✓",
        });
        assert_eq!(cbor_to_json(&encode(&value)).expect("decodes"), value);
    }

    /// The value of `key` in a decoded CBOR map (whatever the order of its entries).
    fn member<'v>(map: &'v Value, key: &str) -> &'v Value {
        let Value::Map(entries) = map else { panic!("not a map: {map:?}") };
        entries.iter().find(|(k, _)| *k == Value::Text(key.into())).map(|(_, v)| v).expect("member present")
    }

    #[test]
    fn blob_fields_are_byte_strings_and_come_back_as_base64() {
        let value = json!({"Records": [{"Data": "AAEC/w==", "PartitionKey": "pk"}], "Data": ""});
        let bytes = encode(&value);
        let decoded = decode_value(&bytes);
        let Value::Array(records) = member(&decoded, "Records") else { panic!("not an array") };
        assert_eq!(member(&records[0], "Data"), &Value::Bytes(vec![0, 1, 2, 255]));
        assert_eq!(member(&records[0], "PartitionKey"), &Value::Text("pk".into()));
        assert_eq!(member(&decoded, "Data"), &Value::Bytes(vec![]));
        assert_eq!(cbor_to_json(&bytes).expect("decodes"), value);
    }

    #[test]
    fn a_blob_field_that_is_not_base64_is_an_error() {
        let error = json_to_cbor(&json!({"Data": "not base64!"}), &["Data"], &[]).expect_err("refused");
        assert!(error.contains("Data"), "{error}");
        // Not listed as a blob: just text.
        assert_eq!(
            cbor_to_json(&json_to_cbor(&json!({"Data": "x!"}), &[], &[]).expect("encodes")),
            Ok(json!({"Data": "x!"}))
        );
    }

    #[test]
    fn timestamps_go_out_as_tag_1_milliseconds() {
        let value = json!({"StreamCreationTimestamp": 1_506_440_188, "ApproximateArrivalTimestamp": 1_506_440_188.749});
        let decoded = decode_value(&encode(&value));
        let millis = |key: &str| match member(&decoded, key) {
            Value::Tag(1, inner) => match inner.as_ref() {
                Value::Integer(int) => i128::from(*int),
                other => panic!("tag 1 holds {other:?}"),
            },
            other => panic!("not tag 1: {other:?}"),
        };
        assert_eq!(millis("StreamCreationTimestamp"), 1_506_440_188_000);
        assert_eq!(millis("ApproximateArrivalTimestamp"), 1_506_440_188_749);
    }

    #[test]
    fn timestamps_come_in_as_seconds() {
        let value = json!({"StreamCreationTimestamp": 1_506_440_188, "ApproximateArrivalTimestamp": 1_506_440_188.749});
        assert_eq!(cbor_to_json(&encode(&value)).expect("decodes"), value);
        // A float in tag 1 is milliseconds too (the Java SDK v2 has sent doubles).
        let float_millis = Value::Map(vec![(
            Value::Text("Timestamp".into()),
            Value::Tag(1, Box::new(Value::Float(1_506_440_188_749.5))),
        )]);
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&float_millis, &mut bytes).expect("encodes");
        assert_eq!(cbor_to_json(&bytes), Ok(json!({"Timestamp": 1_506_440_188.749_5})));
    }

    #[test]
    fn timestamp_names_holding_other_values_are_left_alone() {
        let value = json!({"Timestamp": "2017-09-26T15:36:28Z", "StreamCreationTimestamp": null});
        assert_eq!(cbor_to_json(&encode(&value)).expect("decodes"), value);
        assert!(json_to_cbor(&json!({"Timestamp": 1e300}), &[], &["Timestamp"]).is_err());
        assert!(json_to_cbor(&json!({"Timestamp": i64::MAX}), &[], &["Timestamp"]).is_err());
    }

    /// What the AWS SDK for Java v2 sends for `GetShardIterator` with
    /// `AT_TIMESTAMP`, as captured off the wire in the floci-io/floci#2368
    /// report: `"Timestamp"` as tag 1 (`c1`) over the 8-byte integer
    /// 1787036486712 (`1b 000001a013accc38`), epoch milliseconds.
    #[test]
    fn decodes_the_java_sdk_get_shard_iterator_timestamp() {
        let bytes = unhex("a16954696d657374616d70c11b000001a013accc38");
        assert_eq!(cbor_to_json(&bytes), Ok(json!({"Timestamp": 1_787_036_486.712})));
    }

    /// Bytes produced by Python's cbor2 6.3:
    /// `cbor2.dumps({"ApproximateArrivalTimestamp": cbor2.CBORTag(1, 1506440188749),
    /// "Data": b"hello", "PartitionKey": "pk", "Records": [1, -2, None, True], "StreamName": "s"})`.
    /// The keys are in sorted order so the test holds whether or not serde_json's
    /// `preserve_order` feature is on.
    const CBOR2_RECORD_HEX: &str = concat!(
        "a5",                                                         // map of 5
        "781b417070726f78696d6174654172726976616c54696d657374616d70", // "ApproximateArrivalTimestamp"
        "c11b0000015ebed5134d",                                       // tag 1, 1506440188749
        "6444617461",                                                 // "Data"
        "4568656c6c6f",                                               // bytes "hello"
        "6c506172746974696f6e4b6579",                                 // "PartitionKey"
        "62706b",                                                     // "pk"
        "675265636f726473",                                           // "Records"
        "840121f6f5",                                                 // [1, -2, null, true]
        "6a53747265616d4e616d65",                                     // "StreamName"
        "6173",                                                       // "s"
    );

    #[test]
    fn matches_python_cbor2_byte_for_byte() {
        let value = json!({
            "ApproximateArrivalTimestamp": 1_506_440_188.749,
            "Data": "aGVsbG8=",
            "PartitionKey": "pk",
            "Records": [1, -2, null, true],
            "StreamName": "s",
        });
        assert_eq!(hex(&encode(&value)), CBOR2_RECORD_HEX);
        assert_eq!(cbor_to_json(&unhex(CBOR2_RECORD_HEX)), Ok(value));
    }

    #[test]
    fn floats_that_json_cannot_hold_are_errors() {
        for float in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut bytes = Vec::new();
            ciborium::ser::into_writer(&Value::Float(float), &mut bytes).expect("encodes");
            assert!(cbor_to_json(&bytes).is_err(), "{float}");
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = encode(&json!({"StreamName": "s", "Data": "aGVsbG8=", "Records": [1, 2.5]}));
        for len in 0..good.len() {
            assert!(cbor_to_json(&good[..len]).is_err(), "accepted a prefix of {len} bytes");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(cbor_to_json(&trailing).expect_err("trailing").contains("trailing"));
        // A map with an integer key.
        assert!(cbor_to_json(&unhex("a10102")).expect_err("key").contains("not text"));
        // Tag 1 over text.
        assert!(cbor_to_json(&unhex("c16161")).is_err());
        // A 17-byte bignum.
        assert!(cbor_to_json(&unhex("c2510100000000000000000000000000000000")).is_err());
        // Nesting deeper than ciborium's recursion limit.
        let deep: Vec<u8> = std::iter::repeat_n(0x81, 100_000).chain([0x00]).collect();
        assert!(cbor_to_json(&deep).is_err());
    }

    #[test]
    fn integers_and_other_tags() {
        // 2^64 - 1, -2^63, a 9-byte bignum that fits u64, and tag 32 (URI) over text.
        assert_eq!(cbor_to_json(&unhex("1bffffffffffffffff")), Ok(json!(u64::MAX)));
        assert_eq!(cbor_to_json(&unhex("3b7fffffffffffffff")), Ok(json!(i64::MIN)));
        assert_eq!(cbor_to_json(&unhex("c249000000000000000001")), Ok(json!(1)));
        assert!(cbor_to_json(&unhex("3bffffffffffffffff")).is_err());
        assert_eq!(cbor_to_json(&unhex("d8206161")), Ok(json!("a")));
        // Indefinite-length text and map, as some encoders stream them.
        assert_eq!(cbor_to_json(&unhex("bf7f616161626163ff01ff")), Ok(json!({"abc": 1})));
    }
}
