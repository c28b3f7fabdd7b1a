//! Data transformation through a Lambda-compatible HTTP function
//! (`ProcessingConfiguration` with a `Lambda` processor).
//!
//! Firehose's Lambda record contract, over HTTP: the worker POSTs
//! `{"invocationId", "deliveryStreamArn", "region", "records": [{"recordId",
//! "approximateArrivalTimestamp", "data": base64}]}` and expects
//! `{"records": [{"recordId", "result": "Ok" | "Dropped" | "ProcessingFailed", "data"}]}`.
//! `Ok` records are delivered with the returned data, `Dropped` ones are not,
//! `ProcessingFailed` ones go to the error prefix (`processing-failed/`). A call
//! that fails `NumberOfRetries` + 1 times, or answers with missing or unknown
//! record ids, fails all its records the same way.
//!
//! The function is named by `LambdaArn`: an `http(s)://` URL is called as is;
//! an ARN is looked up in the node's `[firehose.functions]` table.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::backoff::Backoff;

/// Firehose's defaults: 3 retries, 1 MiB per invocation.
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_BUFFER_MB: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    /// The `LambdaArn` as configured.
    pub function: String,
    pub retries: u32,
    pub buffer_bytes: u64,
}

impl Transform {
    /// The Lambda processor of a destination's `ProcessingConfiguration`, if enabled.
    pub fn from_config(config: &serde_json::Map<String, Value>) -> Result<Option<Transform>, String> {
        let Some(processing) = config.get("ProcessingConfiguration").filter(|v| !v.is_null()) else { return Ok(None) };
        if processing.get("Enabled").and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        let processors = processing.get("Processors").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut transform = None;
        for processor in &processors {
            let kind = processor.get("Type").and_then(Value::as_str).unwrap_or_default();
            let parameters: BTreeMap<&str, &str> = processor
                .get("Parameters")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|p| Some((p.get("ParameterName")?.as_str()?, p.get("ParameterValue")?.as_str()?)))
                        .collect()
                })
                .unwrap_or_default();
            match kind {
                "Lambda" => {
                    let function =
                        parameters.get("LambdaArn").ok_or("A Lambda processor needs a LambdaArn parameter.")?;
                    let retries = match parameters.get("NumberOfRetries") {
                        Some(n) => {
                            n.parse::<u32>().ok().filter(|n| *n <= 300).ok_or("NumberOfRetries must be 0..300.")?
                        }
                        None => DEFAULT_RETRIES,
                    };
                    let buffer_mb = match parameters.get("BufferSizeInMBs") {
                        Some(n) => n
                            .parse::<u64>()
                            .ok()
                            .filter(|n| (1..=3).contains(n))
                            .ok_or("BufferSizeInMBs must be 1..3.")?,
                        None => DEFAULT_BUFFER_MB,
                    };
                    transform =
                        Some(Transform { function: function.to_string(), retries, buffer_bytes: buffer_mb << 20 });
                }
                "AppendDelimiterToRecord" | "RecordDeAggregation" | "MetadataExtraction" => {}
                other => return Err(format!("Processor type {other} is not supported by Shoal yet (Lambda is).")),
            }
        }
        Ok(transform)
    }
}

/// What became of the records after the function.
#[derive(Debug, Default)]
pub struct Transformed {
    /// Records to deliver, in order, with their arrival times.
    pub ok: Vec<(Vec<u8>, u64)>,
    pub dropped: usize,
    /// Records for the error prefix: original data, arrival, error code, message.
    pub failed: Vec<(Vec<u8>, u64, String, String)>,
}

/// Runs `records` through the function at `url`, `buffer_bytes` at a time.
pub async fn run(
    client: &reqwest::Client,
    transform: &Transform,
    url: &str,
    source_arn: &str,
    invocation_seed: &str,
    records: &[(&[u8], u64)],
) -> Transformed {
    let mut out = Transformed::default();
    let mut start = 0;
    let mut invocation = 0;
    while start < records.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < records.len() && (end == start || bytes + records[end].0.len() as u64 <= transform.buffer_bytes) {
            bytes += records[end].0.len() as u64;
            end += 1;
        }
        let chunk = &records[start..end];
        let id = format!("{invocation_seed}-{invocation}");
        match invoke(client, transform, url, source_arn, &id, chunk).await {
            Ok(results) => {
                for ((data, arrival), result) in chunk.iter().zip(results) {
                    match result {
                        Outcome::Ok(new) => out.ok.push((new, *arrival)),
                        Outcome::Dropped => out.dropped += 1,
                        Outcome::Failed => out.failed.push((
                            data.to_vec(),
                            *arrival,
                            "Lambda.ProcessingFailed".into(),
                            "The function marked the record ProcessingFailed.".into(),
                        )),
                    }
                }
            }
            Err((code, message)) => {
                out.failed.extend(
                    chunk.iter().map(|(data, arrival)| (data.to_vec(), *arrival, code.clone(), message.clone())),
                );
            }
        }
        start = end;
        invocation += 1;
    }
    out
}

enum Outcome {
    Ok(Vec<u8>),
    Dropped,
    Failed,
}

async fn invoke(
    client: &reqwest::Client,
    transform: &Transform,
    url: &str,
    source_arn: &str,
    invocation_id: &str,
    chunk: &[(&[u8], u64)],
) -> Result<Vec<Outcome>, (String, String)> {
    let body = json!({
        "invocationId": invocation_id,
        "deliveryStreamArn": source_arn,
        "region": shoal_types::limits::DEFAULT_REGION,
        "records": chunk.iter().enumerate().map(|(i, (data, arrival))| json!({
            "recordId": i.to_string(),
            "approximateArrivalTimestamp": arrival,
            "data": STANDARD.encode(data),
        })).collect::<Vec<_>>(),
    })
    .to_string();
    let mut last = ("Lambda.FunctionError".to_string(), String::new());
    let mut backoff = Backoff::forever().capped_at(Duration::from_secs(10));
    for attempt in 0..=transform.retries {
        if attempt > 0 {
            backoff.wait().await;
        }
        let response = client
            .post(url)
            .header("Content-Type", "application/json")
            .timeout(Duration::from_secs(300))
            .body(body.clone())
            .send()
            .await;
        let bytes = match response {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    last = ("Lambda.FunctionError".into(), e.to_string());
                    continue;
                }
            },
            Ok(r) => {
                last = ("Lambda.FunctionError".into(), format!("the function answered {}", r.status()));
                continue;
            }
            Err(e) => {
                last = ("Lambda.FunctionError".into(), e.to_string());
                continue;
            }
        };
        return parse_answer(&bytes, chunk.len());
    }
    Err(last)
}

fn parse_answer(bytes: &[u8], count: usize) -> Result<Vec<Outcome>, (String, String)> {
    let invalid = |message: &str| ("Lambda.InvalidResponse".to_string(), message.to_string());
    let answer: Value = serde_json::from_slice(bytes).map_err(|_| invalid("the answer is not JSON"))?;
    let records =
        answer.get("records").and_then(Value::as_array).ok_or_else(|| invalid("the answer has no records"))?;
    let mut outcomes: Vec<Option<Outcome>> = (0..count).map(|_| None).collect();
    for record in records {
        let index = record
            .get("recordId")
            .and_then(Value::as_str)
            .and_then(|id| id.parse::<usize>().ok())
            .filter(|i| *i < count)
            .ok_or_else(|| ("Lambda.MissingRecordId".to_string(), "an answer names an unknown recordId".to_string()))?;
        let outcome = match record.get("result").and_then(Value::as_str) {
            Some("Ok") => {
                let data = record.get("data").and_then(Value::as_str).unwrap_or_default();
                Outcome::Ok(STANDARD.decode(data).map_err(|_| invalid("an Ok record's data is not base64"))?)
            }
            Some("Dropped") => Outcome::Dropped,
            Some("ProcessingFailed") => Outcome::Failed,
            _ => return Err(invalid("a record's result is not Ok, Dropped or ProcessingFailed")),
        };
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| {
            o.ok_or_else(|| ("Lambda.MissingRecordId".to_string(), "the answer leaves out a recordId".to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_processors_are_read_with_firehose_defaults() {
        let config = json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Lambda",
            "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": "http://127.0.0.1:9/fn"}]}]}});
        let transform = Transform::from_config(config.as_object().unwrap()).unwrap().unwrap();
        assert_eq!((transform.retries, transform.buffer_bytes), (3, 1 << 20));
        let disabled = json!({"ProcessingConfiguration": {"Enabled": false, "Processors": []}});
        assert!(Transform::from_config(disabled.as_object().unwrap()).unwrap().is_none());
        let unknown = json!({"ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Decompression"}]}});
        assert!(Transform::from_config(unknown.as_object().unwrap()).is_err());
    }

    #[test]
    fn answers_must_account_for_every_record() {
        let ok = br#"{"records":[{"recordId":"1","result":"Dropped"},{"recordId":"0","result":"Ok","data":"eA=="}]}"#;
        let outcomes = parse_answer(ok, 2).unwrap();
        assert!(matches!(&outcomes[0], Outcome::Ok(d) if d == b"x") && matches!(outcomes[1], Outcome::Dropped));
        assert_eq!(
            parse_answer(br#"{"records":[{"recordId":"0","result":"Ok","data":""}]}"#, 2).err().unwrap().0,
            "Lambda.MissingRecordId"
        );
        assert!(parse_answer(br#"{"records":[{"recordId":"7","result":"Ok"}]}"#, 2).is_err());
        assert!(parse_answer(b"nope", 1).is_err());
    }
}
