//! The Splunk destination: HTTP Event Collector requests as Firehose sends them
//! (`SplunkDestinationConfiguration`).
//!
//! `Event` endpoints get `POST /services/collector/event` with one
//! `{"time", "event"}` object per record (the record as JSON when it is JSON,
//! as a string otherwise); `Raw` endpoints get `POST /services/collector/raw`
//! with the records one per line. Both carry `Authorization: Splunk <HECToken>`.
//! Failures are retried for `RetryOptions.DurationInSeconds`, then the records
//! go to the backup bucket under `splunk-failed/`.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::backoff::Backoff;
use crate::endpoint_settings::{BackupModes, EndpointSettings, Limits};

/// Firehose's Splunk buffering and retry defaults and limits.
const LIMITS: Limits = Limits {
    destination: "Splunk",
    default_size_mb: 5,
    max_size_mb: 5,
    default_interval_secs: 60,
    max_interval_secs: 60,
    default_retry_secs: 3600,
};
const BACKUP_MODES: BackupModes = BackupModes { failed_only: "FailedEventsOnly", all: "AllEvents" };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplunkDestination {
    pub endpoint: String,
    pub raw: bool,
    pub token: String,
    /// Buffering, retries and the backup bucket (`AllEvents` backs up every record).
    pub settings: EndpointSettings,
}

impl SplunkDestination {
    pub fn from_config(config: &Map<String, Value>) -> Result<SplunkDestination, String> {
        let value = Value::Object(config.clone());
        let text = |key: &str| value.get(key).and_then(Value::as_str);
        let endpoint = text("HECEndpoint").ok_or("HECEndpoint is required.")?;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!("HECEndpoint {endpoint:?} must be an http(s) URL."));
        }
        let raw = match text("HECEndpointType").ok_or("HECEndpointType is required.")? {
            "Raw" => true,
            "Event" => false,
            other => return Err(format!("HECEndpointType {other} is not Raw or Event.")),
        };
        let token = text("HECToken").ok_or("HECToken is required.")?.to_string();
        Ok(SplunkDestination {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            raw,
            token,
            settings: EndpointSettings::from_config(&value, &LIMITS, BACKUP_MODES)?,
        })
    }

    pub fn describe(&self, stored: &Map<String, Value>) -> Value {
        let mut description = stored.clone();
        description.remove("HECToken");
        self.settings.describe_into(&mut description);
        Value::Object(description)
    }
}

/// The HEC request body for `records` (`(data, arrival)`).
pub fn body(destination: &SplunkDestination, records: &[(&[u8], u64)]) -> String {
    let mut body = String::new();
    for (data, arrival) in records {
        if destination.raw {
            body.push_str(String::from_utf8_lossy(data).trim_end_matches('\n'));
            body.push('\n');
        } else {
            let event = serde_json::from_slice::<Value>(data)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(data).trim_end_matches('\n').to_string()));
            body.push_str(&json!({ "time": *arrival as f64 / 1000.0, "event": event }).to_string());
        }
    }
    body
}

/// Sends `records`; `Err((code, message))` once retrying has run out.
pub async fn deliver(
    client: &reqwest::Client,
    destination: &SplunkDestination,
    records: &[(&[u8], u64)],
) -> Result<(), (String, String)> {
    let path = if destination.raw { "services/collector/raw" } else { "services/collector/event" };
    let body = body(destination, records);
    let mut backoff = Backoff::for_secs(destination.settings.retry_secs);
    loop {
        let response = client
            .post(format!("{}/{path}", destination.endpoint))
            .header("Authorization", format!("Splunk {}", destination.token))
            .header("Content-Type", "application/json")
            .timeout(Duration::from_secs(180))
            .body(body.clone())
            .send()
            .await;
        let (code, message) = match response {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() == 401 || r.status().as_u16() == 403 => {
                ("Splunk.InvalidToken".to_string(), format!("the HEC endpoint answered {}", r.status()))
            }
            Ok(r) => ("Splunk.ServerError".to_string(), format!("the HEC endpoint answered {}", r.status())),
            Err(e) => ("Splunk.ConnectionTimeout".to_string(), e.to_string()),
        };
        if !backoff.wait().await {
            return Err((code, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_wrap_json_records_and_raw_joins_lines() {
        let config = json!({"HECEndpoint": "http://127.0.0.1:8088", "HECEndpointType": "Event", "HECToken": "t",
            "S3Configuration": {"RoleARN": "arn:aws:iam::1:role/r", "BucketARN": "arn:aws:s3:::backup"}});
        let mut destination = SplunkDestination::from_config(config.as_object().unwrap()).unwrap();
        let records: Vec<(&[u8], u64)> = vec![(br#"{"a":1}"#, 1_000), (b"plain text\n", 2_000)];
        assert_eq!(body(&destination, &records), r#"{"event":{"a":1},"time":1.0}{"event":"plain text","time":2.0}"#);
        destination.raw = true;
        assert_eq!(body(&destination, &records), "{\"a\":1}\nplain text\n");
        assert!(destination.describe(config.as_object().unwrap()).get("HECToken").is_none());
    }
}
