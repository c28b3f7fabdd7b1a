//! The HTTP endpoint destination: Firehose's delivery request and response
//! contract (`HttpEndpointDestinationConfiguration`).
//!
//! * Request: `POST` of `{"requestId", "timestamp", "records": [{"data": base64}]}`
//!   with `X-Amz-Firehose-Protocol-Version: 1.0`, `X-Amz-Firehose-Request-Id`,
//!   `X-Amz-Firehose-Source-Arn`, `X-Amz-Firehose-Access-Key` (if configured),
//!   `X-Amz-Firehose-Common-Attributes` (if any) and `Content-Encoding: gzip` when
//!   asked for.
//! * Only `200` with the request id echoed counts as delivered; `413` fails at
//!   once; anything else is retried with backoff for `RetryOptions.DurationInSeconds`
//!   (default 300). Then the records go to the backup S3 bucket under the error
//!   prefix (`http-endpoint-failed/` by default), one JSON line each, as Firehose does.
//! * The request id is derived from the shard and the first record, so it is the
//!   same on every retry, also after a worker crash: the receiver can drop repeats.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use crate::backoff::Backoff;
use crate::destination::Compression;
use crate::endpoint_settings::{BackupModes, EndpointSettings, Limits};
use crate::failure::Failure;

/// Firehose's HTTP endpoint buffering and retry defaults and limits.
const LIMITS: Limits = Limits {
    destination: "an HTTP endpoint",
    default_size_mb: 5,
    max_size_mb: 64,
    default_interval_secs: 300,
    max_interval_secs: 900,
    default_retry_secs: 300,
};
const BACKUP_MODES: BackupModes = BackupModes { failed_only: "FailedDataOnly", all: "AllData" };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpDestination {
    pub url: String,
    pub name: Option<String>,
    pub access_key: Option<String>,
    pub gzip: bool,
    pub common_attributes: BTreeMap<String, String>,
    /// Buffering, retries and the backup bucket (`AllData` backs up every record).
    pub settings: EndpointSettings,
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(*key)).and_then(Value::as_str)
}

impl HttpDestination {
    pub fn from_config(config: &Map<String, Value>) -> Result<HttpDestination, String> {
        let value = Value::Object(config.clone());
        let url = str_at(&value, &["EndpointConfiguration", "Url"]).ok_or("EndpointConfiguration.Url is required.")?;
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 1000 {
            return Err(format!(
                "EndpointConfiguration.Url {url:?} must be an http(s) URL of at most 1000 characters."
            ));
        }
        let gzip = match str_at(&value, &["RequestConfiguration", "ContentEncoding"]).unwrap_or("NONE") {
            "NONE" => false,
            "GZIP" => true,
            other => return Err(format!("RequestConfiguration.ContentEncoding {other} is not NONE or GZIP.")),
        };
        let mut common_attributes = BTreeMap::new();
        if let Some(list) = value.pointer("/RequestConfiguration/CommonAttributes").and_then(Value::as_array) {
            for attribute in list {
                let (Some(name), Some(value)) =
                    (str_at(attribute, &["AttributeName"]), str_at(attribute, &["AttributeValue"]))
                else {
                    return Err("CommonAttributes need AttributeName and AttributeValue.".into());
                };
                common_attributes.insert(name.to_string(), value.to_string());
            }
        }
        Ok(HttpDestination {
            url: url.to_string(),
            name: str_at(&value, &["EndpointConfiguration", "Name"]).map(str::to_string),
            access_key: str_at(&value, &["EndpointConfiguration", "AccessKey"]).map(str::to_string),
            gzip,
            common_attributes,
            settings: EndpointSettings::from_config(&value, &LIMITS, BACKUP_MODES)?,
        })
    }

    /// The description DescribeDeliveryStream returns (the access key left out).
    pub fn describe(&self, stored: &Map<String, Value>) -> Value {
        let mut description = stored.clone();
        if let Some(endpoint) = description.get_mut("EndpointConfiguration").and_then(Value::as_object_mut) {
            endpoint.remove("AccessKey");
        }
        self.settings.describe_into(&mut description);
        Value::Object(description)
    }
}

/// Why an HTTP delivery gave up.
#[derive(Debug)]
pub struct HttpFailure {
    pub code: String,
    pub message: String,
    pub attempts: u32,
}

/// Posts `records` to the endpoint until it answers 200 (or gives up: 413, or
/// the retry duration ran out).
pub async fn deliver(
    client: &reqwest::Client,
    destination: &HttpDestination,
    source_arn: &str,
    request_id: &str,
    records: &[&[u8]],
) -> Result<u32, HttpFailure> {
    let body = json!({
        "requestId": request_id,
        "timestamp": shoal_types::now_millis(),
        "records": records.iter().map(|r| json!({ "data": STANDARD.encode(r) })).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let body = if destination.gzip {
        crate::compression::compress(&body, Compression::Gzip).map_err(|e| HttpFailure {
            code: "Internal".into(),
            message: e.to_string(),
            attempts: 0,
        })?
    } else {
        body
    };
    let mut backoff = Backoff::for_secs(destination.settings.retry_secs);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let mut request = client
            .post(&destination.url)
            .header("Content-Type", "application/json")
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", request_id)
            .header("X-Amz-Firehose-Source-Arn", source_arn)
            .timeout(Duration::from_secs(180))
            .body(body.clone());
        if let Some(key) = &destination.access_key {
            request = request.header("X-Amz-Firehose-Access-Key", key);
        }
        if !destination.common_attributes.is_empty() {
            let attributes = json!({ "commonAttributes": destination.common_attributes }).to_string();
            request = request.header("X-Amz-Firehose-Common-Attributes", attributes);
        }
        if destination.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        let (code, message) = match request.send().await {
            Ok(response) if response.status().as_u16() == 200 => {
                let answer: Value = match response.bytes().await {
                    Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                if answer.get("requestId").and_then(Value::as_str) == Some(request_id) {
                    return Ok(attempts);
                }
                (
                    "HttpEndpoint.InvalidResponseFromDestination".to_string(),
                    format!("response {answer} does not echo the request id"),
                )
            }
            Ok(response) if response.status().as_u16() == 413 => {
                return Err(HttpFailure {
                    code: "HttpEndpoint.RequestEntityTooLarge".into(),
                    message: "the endpoint answered 413: request entity too large".into(),
                    attempts,
                });
            }
            Ok(response) => {
                ("HttpEndpoint.ResponseFailed".to_string(), format!("the endpoint answered {}", response.status()))
            }
            Err(error) => ("HttpEndpoint.RequestTimeout".to_string(), error.to_string()),
        };
        tracing::debug!(url = %destination.url, %code, %message, retry_in = ?backoff.pause(), "HTTP delivery failed");
        if !backoff.wait().await {
            return Err(HttpFailure { code, message, attempts });
        }
    }
}

impl HttpFailure {
    /// The failure record of one of the request's records.
    pub fn line(&self, arrival_millis: u64, data: &[u8]) -> String {
        let failure = Failure { code: &self.code, message: &self.message, attempts: self.attempts, lambda_arn: None };
        failure.line(arrival_millis, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn endpoint_configurations_are_checked() {
        let base = json!({
            "EndpointConfiguration": {"Url": "https://example.com/ingest", "AccessKey": "k"},
            "S3Configuration": {"RoleARN": "arn:aws:iam::1:role/r", "BucketARN": "arn:aws:s3:::backup"},
        });
        let parsed = HttpDestination::from_config(&config(base.clone())).unwrap();
        assert_eq!(
            (parsed.settings.size_bytes, parsed.settings.retry_secs, parsed.gzip, parsed.settings.backup_all),
            (5 << 20, 300, false, false)
        );
        let described = parsed.describe(&config(base.clone()));
        assert!(described["EndpointConfiguration"].get("AccessKey").is_none(), "the key is not echoed");
        let mut no_backup = base.clone();
        no_backup.as_object_mut().unwrap().remove("S3Configuration");
        assert!(HttpDestination::from_config(&config(no_backup)).is_err());
        let mut big = base.clone();
        big["BufferingHints"] = json!({"SizeInMBs": 65, "IntervalInSeconds": 60});
        assert!(HttpDestination::from_config(&config(big)).is_err());
        let mut ftp = base;
        ftp["EndpointConfiguration"]["Url"] = json!("ftp://example.com");
        assert!(HttpDestination::from_config(&config(ftp)).is_err());
    }
}
