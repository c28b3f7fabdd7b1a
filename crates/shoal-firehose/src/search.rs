//! OpenSearch / Elasticsearch destinations: the `_bulk` request Firehose sends
//! (`AmazonopensearchserviceDestinationConfiguration`,
//! `ElasticsearchDestinationConfiguration`).
//!
//! Each record must be a JSON document. It is indexed into `IndexName`, rotated
//! by `IndexRotationPeriod` (`-YYYY-MM-DD` for OneDay, and so on) by the record's
//! arrival time, with a document id derived from the shard and the record's
//! sequence number — so a re-delivery overwrites documents instead of adding
//! copies. A bulk call that fails as a whole is retried for
//! `RetryOptions.DurationInSeconds`; documents the cluster refuses (and every
//! document once retrying has run out) go to the backup bucket under
//! `AmazonOpenSearchService-failed/`.

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde_json::{Map, Value, json};

use crate::backoff::Backoff;
use crate::endpoint_settings::{BackupModes, EndpointSettings, Limits};

/// Firehose's OpenSearch buffering and retry defaults and limits.
const LIMITS: Limits = Limits {
    destination: "OpenSearch",
    default_size_mb: 5,
    max_size_mb: 100,
    default_interval_secs: 300,
    max_interval_secs: 900,
    default_retry_secs: 300,
};
const BACKUP_MODES: BackupModes = BackupModes { failed_only: "FailedDocumentsOnly", all: "AllDocuments" };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDestination {
    pub endpoint: String,
    pub index: String,
    pub type_name: Option<String>,
    pub rotation: String,
    /// Buffering, retries and the backup bucket (`AllDocuments` backs up every record).
    pub settings: EndpointSettings,
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

impl SearchDestination {
    pub fn from_config(config: &Map<String, Value>) -> Result<SearchDestination, String> {
        let value = Value::Object(config.clone());
        let endpoint = str_at(&value, "ClusterEndpoint").ok_or(
            "ClusterEndpoint is required: Shoal delivers to the cluster's URL (a DomainARN names nothing here).",
        )?;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!("ClusterEndpoint {endpoint:?} must be an http(s) URL."));
        }
        let index = str_at(&value, "IndexName").ok_or("IndexName is required.")?;
        if index.is_empty() || index.len() > 80 || index.chars().any(|c| c.is_ascii_uppercase() || c == ' ' || c == ',')
        {
            return Err(format!("IndexName {index:?} is not a valid index name (1–80 lower-case characters)."));
        }
        let rotation = str_at(&value, "IndexRotationPeriod").unwrap_or("OneDay").to_string();
        if !["NoRotation", "OneHour", "OneDay", "OneWeek", "OneMonth"].contains(&rotation.as_str()) {
            return Err(format!("IndexRotationPeriod {rotation} is not valid."));
        }
        Ok(SearchDestination {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            index: index.to_string(),
            type_name: str_at(&value, "TypeName").filter(|t| !t.is_empty()).map(str::to_string),
            rotation,
            settings: EndpointSettings::from_config(&value, &LIMITS, BACKUP_MODES)?,
        })
    }

    /// The index a record that arrived at `arrival_millis` goes to.
    pub fn index_for(&self, arrival_millis: u64) -> String {
        let time: DateTime<Utc> = DateTime::from_timestamp_millis(arrival_millis as i64).unwrap_or_default();
        match self.rotation.as_str() {
            "OneHour" => format!("{}-{}", self.index, time.format("%Y-%m-%d-%H")),
            "OneDay" => format!("{}-{}", self.index, time.format("%Y-%m-%d")),
            "OneWeek" => format!("{}-{}-w{}", self.index, time.iso_week().year(), time.iso_week().week()),
            "OneMonth" => format!("{}-{}", self.index, time.format("%Y-%m")),
            _ => self.index.clone(),
        }
    }

    pub fn describe(&self, stored: &Map<String, Value>) -> Value {
        let mut description = stored.clone();
        self.settings.describe_into(&mut description);
        description.insert("IndexRotationPeriod".into(), json!(self.rotation));
        Value::Object(description)
    }
}

/// One document to index: the record, its arrival, and its id.
pub struct Document<'a> {
    pub data: &'a [u8],
    pub arrival_millis: u64,
    pub id: String,
}

/// Indexes `documents`; returns the ones that could not be indexed, with why.
pub async fn deliver(
    client: &reqwest::Client,
    destination: &SearchDestination,
    documents: &[Document<'_>],
) -> Vec<(usize, String, String)> {
    let mut failed = Vec::new();
    let mut body = String::new();
    let mut sent = Vec::new();
    for (i, document) in documents.iter().enumerate() {
        let Ok(parsed) = serde_json::from_slice::<Value>(document.data) else {
            failed.push((i, "OS.MalformedDocument".to_string(), "the record is not a JSON document".to_string()));
            continue;
        };
        let mut action = json!({ "_index": destination.index_for(document.arrival_millis), "_id": document.id });
        if let Some(type_name) = &destination.type_name {
            action["_type"] = json!(type_name);
        }
        body.push_str(&json!({ "index": action }).to_string());
        body.push('\n');
        body.push_str(&parsed.to_string());
        body.push('\n');
        sent.push(i);
    }
    if sent.is_empty() {
        return failed;
    }
    let mut backoff = Backoff::for_secs(destination.settings.retry_secs);
    loop {
        let response = client
            .post(format!("{}/_bulk", destination.endpoint))
            .header("Content-Type", "application/x-ndjson")
            .timeout(Duration::from_secs(120))
            .body(body.clone())
            .send()
            .await;
        let reason = match response {
            Ok(r) if r.status().is_success() => {
                match r.bytes().await.ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
                    Some(answer) => {
                        let items = answer.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                        for (position, i) in sent.iter().enumerate() {
                            let item = items.get(position).and_then(|it| it.get("index"));
                            let status = item.and_then(|it| it.get("status")).and_then(Value::as_u64).unwrap_or(0);
                            if !(200..300).contains(&status) {
                                let error =
                                    item.and_then(|it| it.get("error")).map(Value::to_string).unwrap_or_default();
                                failed.push((*i, format!("OS.{status}"), error));
                            }
                        }
                        return failed;
                    }
                    None => "the _bulk answer is not JSON".to_string(),
                }
            }
            Ok(r) => format!("the cluster answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        tracing::debug!(endpoint = %destination.endpoint, %reason, retry_in = ?backoff.pause(), "bulk request failed");
        if !backoff.wait().await {
            failed.extend(sent.iter().map(|i| (*i, "OS.RequestFailed".to_string(), reason.clone())));
            return failed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_rotate_by_arrival_time() {
        let config = json!({"ClusterEndpoint": "http://127.0.0.1:9200", "IndexName": "logs",
            "S3Configuration": {"RoleARN": "arn:aws:iam::1:role/r", "BucketARN": "arn:aws:s3:::backup"}});
        let mut destination = SearchDestination::from_config(config.as_object().unwrap()).unwrap();
        // 2026-11-26T04:05:06Z
        let at = 1_795_665_906_000;
        assert_eq!(destination.index_for(at), "logs-2026-11-26");
        destination.rotation = "OneHour".into();
        assert_eq!(destination.index_for(at), "logs-2026-11-26-04");
        destination.rotation = "OneMonth".into();
        assert_eq!(destination.index_for(at), "logs-2026-11");
        destination.rotation = "NoRotation".into();
        assert_eq!(destination.index_for(at), "logs");
        let bad = json!({"ClusterEndpoint": "http://x", "IndexName": "Logs",
            "S3Configuration": {"RoleARN": "r", "BucketARN": "arn:aws:s3:::backup"}});
        assert!(SearchDestination::from_config(bad.as_object().unwrap()).is_err());
    }
}
