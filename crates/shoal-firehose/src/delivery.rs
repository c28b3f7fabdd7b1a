//! One delivery stream's record processor: per-shard buffers, flushed to one
//! object each when the buffering hints say so, and a checkpoint only after the
//! store has acknowledged the object.
//!
//! * Size: a buffer is flushed when it reaches `SizeInMBs` (checked as records
//!   arrive, so objects end at the same record on every run).
//! * Interval: a ticker flushes buffers older than `IntervalInSeconds`.
//! * Failures: a put is retried with backoff (doubling to 30 s) until it works;
//!   meanwhile the shard is not read further — back-pressure, not loss. The
//!   records stay in the stream (a week for DirectPut), so nothing is dropped.
//! * Order: one flush at a time per shard, so objects and checkpoints of a shard
//!   follow record order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::path::Path;
use shoal_client::consumer::{Batch, Checkpointer, ProcessResult, RecordProcessor};
use tokio::sync::Mutex;

use crate::backoff::Backoff;
use crate::compression::compress;
use crate::destination::S3Destination;
use crate::destination::{Compression, Destination};
use crate::endpoint_settings::EndpointSettings;
use crate::failure::Failure;
use crate::naming::ObjectOrigin;
use crate::{conversion, http_endpoint, partitioning, postgres, search, splunk, transform};

/// Records of one shard waiting to be written.
struct ShardBuffer {
    data: Vec<u8>,
    /// Where each record ends in `data`, and when it arrived.
    ends: Vec<(usize, u64)>,
    records: u64,
    first_sequence_number: String,
    last_sequence_number: String,
    last_sub_sequence_number: u64,
    oldest_arrival_millis: u64,
    opened: Instant,
    checkpointer: Checkpointer,
}

/// Cheap to clone: the worker keeps one to flush by interval.
#[derive(Clone)]
pub struct DeliveryProcessor {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    version: u64,
    destination: Destination,
    /// The destination bucket, or an HTTP endpoint's backup bucket.
    store: Arc<dyn ObjectStore>,
    /// The bucket of an S3 destination's source-record backup.
    backup_store: Option<Arc<dyn ObjectStore>>,
    http: reqwest::Client,
    /// The delivery stream's ARN, sent to HTTP endpoints and functions.
    source_arn: String,
    /// Lambda ARN → URL of the function standing in for it.
    functions: std::collections::BTreeMap<String, String>,
    /// The Parquet schema, when the destination converts records.
    schema: Option<Arc<arrow_schema::Schema>>,
    /// The partition key query, when the destination partitions dynamically.
    partitioning: Option<partitioning::Query>,
    /// Per shard: the buffer being filled (one flush at a time: the lock is held
    /// across the put).
    shards: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<ShardBuffer>>>>>,
}

impl DeliveryProcessor {
    pub fn new(name: &str, version: u64, destination: Destination, store: Arc<dyn ObjectStore>) -> Self {
        let inner = Inner {
            name: name.into(),
            version,
            destination,
            store,
            http: reqwest::Client::new(),
            source_arn: format!(
                "arn:aws:firehose:{}:{}:deliverystream/{name}",
                shoal_types::limits::DEFAULT_REGION,
                shoal_types::limits::DEFAULT_ACCOUNT_ID
            ),
            functions: Default::default(),
            schema: None,
            partitioning: None,
            backup_store: None,
            shards: Default::default(),
        };
        DeliveryProcessor { inner: Arc::new(inner) }
    }

    /// The Parquet schema records are converted with.
    pub fn with_schema(mut self, schema: Option<Arc<arrow_schema::Schema>>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.schema = schema;
        }
        self
    }

    /// Where an S3 destination's source records are backed up.
    pub fn with_backup_store(mut self, store: Option<Arc<dyn ObjectStore>>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.backup_store = store;
        }
        self
    }

    /// The compiled partition key query of a dynamically partitioned destination.
    pub fn with_partitioning(mut self, query: Option<partitioning::Query>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.partitioning = query;
        }
        self
    }

    pub fn with_functions(mut self, functions: std::collections::BTreeMap<String, String>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.functions = functions;
        }
        self
    }

    /// Flushes buffers older than the interval; the worker calls this every second.
    pub async fn flush_due(&self) {
        let interval = Duration::from_secs(self.inner.destination.interval_secs());
        for (shard, slot) in self.inner.slots() {
            let mut buffer = slot.lock().await;
            if buffer.as_ref().is_some_and(|b| b.opened.elapsed() >= interval)
                && let Err(error) = self.inner.flush(&mut buffer).await
            {
                tracing::warn!(delivery_stream = %self.inner.name, %shard, %error, "checkpoint after delivery failed");
            }
        }
    }
}

impl Inner {
    fn slot(&self, shard: &str) -> Arc<Mutex<Option<ShardBuffer>>> {
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards.entry(shard.to_string()).or_default().clone()
    }

    fn slots(&self) -> Vec<(String, Arc<Mutex<Option<ShardBuffer>>>)> {
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        shards.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Delivers the buffer — one object, or one request to the HTTP endpoint —
    /// then checkpoints after its last record.
    async fn flush(&self, buffer: &mut Option<ShardBuffer>) -> ProcessResult {
        let Some(full) = buffer.take() else { return Ok(()) };
        let origin = ObjectOrigin {
            delivery_stream: &self.name,
            version: self.version,
            shard_id: full.checkpointer.shard_id(),
            first_sequence_number: &full.first_sequence_number,
            oldest_arrival_millis: full.oldest_arrival_millis,
        };
        if let (Destination::S3(S3Destination { backup: Some(backup), .. }), Some(store)) =
            (&self.destination, &self.backup_store)
        {
            let key = origin.key(&backup.prefix, backup.compression, backup.file_extension.as_deref());
            let body = compress(&full.data, backup.compression)?;
            self.put_to(store, &key, body, full.records, full.data.len()).await;
        }
        match &self.destination {
            Destination::S3(s3) if s3.transform.is_none() && s3.conversion.is_none() && self.partitioning.is_none() => {
                let key = origin.key(&s3.prefix, s3.compression, s3.file_extension.as_deref());
                self.put(&key, compress(&full.data, s3.compression)?, full.records, full.data.len()).await;
                self.record_freshness(full.oldest_arrival_millis);
            }
            Destination::S3(s3) => {
                let mut records: Vec<(Vec<u8>, u64)> =
                    full.records_with_arrival().into_iter().map(|(data, arrival)| (data.to_vec(), arrival)).collect();
                if let Some(transform) = &s3.transform {
                    let url =
                        self.functions.get(&transform.function).cloned().unwrap_or_else(|| transform.function.clone());
                    let input: Vec<(&[u8], u64)> = records.iter().map(|(d, a)| (d.as_slice(), *a)).collect();
                    let outcome =
                        transform::run(&self.http, transform, &url, &self.source_arn, &origin.uuid(), &input).await;
                    if !outcome.failed.is_empty() {
                        let lines: String = outcome
                            .failed
                            .iter()
                            .map(|(data, arrival, code, message)| {
                                Failure { code, message, attempts: 1, lambda_arn: Some(&transform.function) }
                                    .line(*arrival, data)
                            })
                            .collect();
                        let prefix = error_prefix(&s3.error_output_prefix, "processing-failed");
                        let failed_key = origin.key(&prefix, Compression::Uncompressed, None);
                        self.put(&failed_key, lines.into_bytes(), outcome.failed.len() as u64, 0).await;
                    }
                    records = outcome.ok;
                }
                // Dynamic partitioning splits the records into one object per
                // partition; otherwise they all go into one.
                let mut groups: BTreeMap<String, Vec<(Vec<u8>, u64)>> = BTreeMap::new();
                match &self.partitioning {
                    Some(query) => {
                        let mut failed = Vec::new();
                        for (data, arrival) in records {
                            match query.keys(&data).and_then(|keys| partitioning::fill_prefix(&s3.prefix, &keys)) {
                                Ok(prefix) => groups.entry(prefix).or_default().push((data, arrival)),
                                Err(error) => failed.push(failure_line(
                                    "DynamicPartitioning.MetadataExtractionFailed",
                                    &error,
                                    arrival,
                                    &data,
                                )),
                            }
                        }
                        if !failed.is_empty() {
                            let prefix = error_prefix(&s3.error_output_prefix, "partitioning-failed");
                            let failed_key = origin.key(&prefix, Compression::Uncompressed, None);
                            self.put(&failed_key, failed.concat().into_bytes(), failed.len() as u64, 0).await;
                        }
                    }
                    None => {
                        groups.insert(s3.prefix.clone(), records);
                    }
                }
                for (prefix, records) in groups {
                    // Each partition's object has a name of its own, the same on every run.
                    let salted = format!("{}/{prefix}", full.first_sequence_number);
                    let origin = ObjectOrigin { first_sequence_number: &salted, ..origin };
                    self.put_records(s3, &origin, &prefix, records).await?;
                }
                self.record_freshness(full.oldest_arrival_millis);
            }
            Destination::Http(http) => {
                let records: Vec<&[u8]> = full.records_with_arrival().into_iter().map(|(data, _)| data).collect();
                let labels = [("delivery_stream", self.name.clone())];
                let request_id = origin.request_id(&full.last_sequence_number, full.records);
                match http_endpoint::deliver(&self.http, http, &self.source_arn, &request_id, &records).await {
                    Ok(_) => {
                        metrics::counter!("shoal_firehose_delivery_to_http_endpoint_records_total", &labels)
                            .increment(full.records);
                        metrics::counter!("shoal_firehose_delivery_to_http_endpoint_bytes_total", &labels)
                            .increment(full.data.len() as u64);
                        metrics::counter!("shoal_firehose_delivery_to_http_endpoint_success_total", &labels)
                            .increment(1);
                        self.record_freshness(full.oldest_arrival_millis);
                        self.back_up_all(&http.settings, &origin, &full).await?;
                    }
                    Err(failure) => {
                        tracing::warn!(delivery_stream = %self.name, code = %failure.code, message = %failure.message,
                            "HTTP endpoint delivery failed; records go to the backup bucket");
                        metrics::counter!("shoal_firehose_delivery_to_http_endpoint_failures_total", &labels)
                            .increment(1);
                        let lines: String = full
                            .ends
                            .iter()
                            .zip(records.iter())
                            .map(|((_, arrival), data)| failure.line(*arrival, data))
                            .collect();
                        let prefix = error_prefix(&http.settings.backup.error_output_prefix, "http-endpoint-failed");
                        let key = origin.key(&prefix, Compression::Uncompressed, None);
                        self.put(&key, lines.into_bytes(), full.records, full.data.len()).await;
                    }
                }
            }
            Destination::Search(search) => {
                let shard = full.checkpointer.shard_id().to_string();
                let records = full.records_with_arrival();
                let documents: Vec<search::Document> = records
                    .iter()
                    .enumerate()
                    .map(|(i, (data, arrival))| search::Document {
                        data,
                        arrival_millis: *arrival,
                        // Stable ids: a re-delivery overwrites the same documents.
                        id: format!("{}-{shard}-{}-{i}", self.name, full.first_sequence_number),
                    })
                    .collect();
                let failed = search::deliver(&self.http, search, &documents).await;
                self.record_freshness(full.oldest_arrival_millis);
                if !failed.is_empty() {
                    let lines: String = failed
                        .iter()
                        .map(|(i, code, message)| {
                            let (data, arrival) = records[*i];
                            failure_line(code, message, arrival, data)
                        })
                        .collect();
                    let prefix =
                        error_prefix(&search.settings.backup.error_output_prefix, "AmazonOpenSearchService-failed");
                    let key = origin.key(&prefix, Compression::Uncompressed, None);
                    self.put(&key, lines.into_bytes(), failed.len() as u64, 0).await;
                }
                self.back_up_all(&search.settings, &origin, &full).await?;
            }
            Destination::Postgres(pg) => {
                // The intermediate object first (as Firehose stages Redshift loads in S3),
                // then COPY; its key makes the load happen once.
                let key = origin.key(&pg.intermediate.prefix, pg.intermediate.compression, None);
                self.put(&key, compress(&full.data, pg.intermediate.compression)?, full.records, full.data.len()).await;
                let records: Vec<&[u8]> = full.records_with_arrival().into_iter().map(|(data, _)| data).collect();
                let labels = [("delivery_stream", self.name.clone())];
                match postgres::load(pg, &key, &records).await {
                    Ok(loaded) => {
                        if loaded {
                            metrics::counter!("shoal_firehose_delivery_to_postgres_records_total", &labels)
                                .increment(full.records);
                        }
                        self.record_freshness(full.oldest_arrival_millis);
                    }
                    Err(error) => {
                        tracing::warn!(delivery_stream = %self.name, %error, "COPY failed for good; a manifest goes under errors/");
                        metrics::counter!("shoal_firehose_delivery_to_postgres_failures_total", &labels).increment(1);
                        let manifest = serde_json::json!({
                            "entries": [{ "url": format!("s3://{}/{key}", pg.intermediate.bucket), "mandatory": true }],
                            "error": error,
                        });
                        let error_key = origin.key("errors/", Compression::Uncompressed, Some(".manifest"));
                        self.put(&error_key, manifest.to_string().into_bytes(), 0, 0).await;
                    }
                }
            }
            Destination::Splunk(splunk) => {
                let records = full.records_with_arrival();
                match splunk::deliver(&self.http, splunk, &records).await {
                    Ok(()) => self.record_freshness(full.oldest_arrival_millis),
                    Err((code, message)) => {
                        let lines: String = records
                            .iter()
                            .map(|(data, arrival)| failure_line(&code, &message, *arrival, data))
                            .collect();
                        let prefix = error_prefix(&splunk.settings.backup.error_output_prefix, "splunk-failed");
                        let key = origin.key(&prefix, Compression::Uncompressed, None);
                        self.put(&key, lines.into_bytes(), full.records, 0).await;
                    }
                }
                self.back_up_all(&splunk.settings, &origin, &full).await?;
            }
        }
        full.checkpointer.checkpoint_at(&full.last_sequence_number, full.last_sub_sequence_number).await?;
        Ok(())
    }

    /// Writes `records` as one object under `prefix` (as Parquet when converting),
    /// misfits of the conversion under the error prefix.
    async fn put_records(
        &self,
        s3: &S3Destination,
        origin: &ObjectOrigin<'_>,
        prefix: &str,
        records: Vec<(Vec<u8>, u64)>,
    ) -> ProcessResult {
        match (&s3.conversion, &self.schema) {
            (Some(conversion), Some(schema)) => {
                let input: Vec<&[u8]> = records.iter().map(|(d, _)| d.as_slice()).collect();
                let (file, rows, failed) = conversion::to_parquet(schema, &conversion.compression, &input)?;
                if !failed.is_empty() {
                    let lines: String = failed
                        .iter()
                        .map(|i| {
                            let (data, arrival) = &records[*i];
                            failure_line(
                                "DataFormatConversion.MalformedData",
                                "the record does not fit the table's schema",
                                *arrival,
                                data,
                            )
                        })
                        .collect();
                    let error = error_prefix(&s3.error_output_prefix, "format-conversion-failed");
                    let failed_key = origin.key(&error, Compression::Uncompressed, None);
                    self.put(&failed_key, lines.into_bytes(), failed.len() as u64, 0).await;
                }
                if rows > 0 {
                    let ext = s3.file_extension.as_deref().unwrap_or(".parquet");
                    let key = origin.key(prefix, Compression::Uncompressed, Some(ext));
                    let size = file.len();
                    self.put(&key, file, rows as u64, size).await;
                }
            }
            _ if !records.is_empty() => {
                let key = origin.key(prefix, s3.compression, s3.file_extension.as_deref());
                let data: Vec<u8> = records.iter().flat_map(|(d, _)| d.iter().copied()).collect();
                self.put(&key, compress(&data, s3.compression)?, records.len() as u64, data.len()).await;
            }
            _ => {}
        }
        Ok(())
    }

    fn record_freshness(&self, oldest_arrival_millis: u64) {
        let freshness = shoal_types::now_millis().saturating_sub(oldest_arrival_millis);
        metrics::gauge!("shoal_firehose_data_freshness_seconds", "delivery_stream" => self.name.clone())
            .set(freshness as f64 / 1000.0);
    }

    /// Writes one object to the destination bucket (see [`Inner::put_to`]).
    /// With the `All…` backup mode, writes the whole buffer to the backup bucket too.
    async fn back_up_all(
        &self,
        settings: &EndpointSettings,
        origin: &ObjectOrigin<'_>,
        full: &ShardBuffer,
    ) -> std::io::Result<()> {
        if settings.backup_all {
            let key = origin.key(&settings.backup.prefix, settings.backup.compression, None);
            let body = compress(&full.data, settings.backup.compression)?;
            self.put(&key, body, full.records, full.data.len()).await;
        }
        Ok(())
    }

    async fn put(&self, key: &str, body: Vec<u8>, records: u64, raw_bytes: usize) {
        self.put_to(&self.store, key, body, records, raw_bytes).await
    }

    /// Writes one object, retrying with backoff until the store takes it.
    async fn put_to(&self, store: &Arc<dyn ObjectStore>, key: &str, body: Vec<u8>, records: u64, raw_bytes: usize) {
        let mut backoff = Backoff::forever();
        let labels = [("delivery_stream", self.name.clone())];
        loop {
            let started = Instant::now();
            match store.put(&Path::from(key), body.clone().into()).await {
                Ok(_) => {
                    metrics::counter!("shoal_firehose_delivery_to_s3_records_total", &labels).increment(records);
                    metrics::counter!("shoal_firehose_delivery_to_s3_bytes_total", &labels).increment(raw_bytes as u64);
                    metrics::counter!("shoal_firehose_delivery_to_s3_success_total", &labels).increment(1);
                    metrics::histogram!("shoal_firehose_delivery_to_s3_seconds", &labels)
                        .record(started.elapsed().as_secs_f64());
                    tracing::debug!(delivery_stream = %self.name, %key, records, "delivered");
                    return;
                }
                Err(error) => {
                    metrics::counter!("shoal_firehose_delivery_to_s3_failures_total", &labels).increment(1);
                    tracing::warn!(delivery_stream = %self.name, %key, %error, retry_in = ?backoff.pause(), "delivery failed; retrying");
                    backoff.wait().await;
                }
            }
        }
    }
}

impl ShardBuffer {
    /// Each record's bytes and arrival time.
    fn records_with_arrival(&self) -> Vec<(&[u8], u64)> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|(end, arrival)| {
                let record = &self.data[start..*end];
                start = *end;
                (record, *arrival)
            })
            .collect()
    }
}

/// The error prefix for `kind` (`processing-failed`, `http-endpoint-failed`):
/// the configured one with `!{firehose:error-output-type}` filled in, or `kind/`.
fn error_prefix(configured: &str, kind: &str) -> String {
    if configured.is_empty() { format!("{kind}/") } else { configured.replace("!{firehose:error-output-type}", kind) }
}

/// The failure record of a record that failed once with `code` and `message`.
fn failure_line(code: &str, message: &str, arrival_millis: u64, data: &[u8]) -> String {
    Failure { code, message, attempts: 1, lambda_arn: None }.line(arrival_millis, data)
}

impl RecordProcessor for DeliveryProcessor {
    async fn process(&self, batch: Batch, checkpointer: Checkpointer) -> ProcessResult {
        let slot = self.inner.slot(&batch.shard_id);
        let mut buffer = slot.lock().await;
        for record in batch.user_records() {
            let entry = buffer.get_or_insert_with(|| ShardBuffer {
                data: Vec::new(),
                ends: Vec::new(),
                records: 0,
                first_sequence_number: record.sequence_number.clone(),
                last_sequence_number: record.sequence_number.clone(),
                last_sub_sequence_number: record.sub_sequence_number,
                oldest_arrival_millis: record.approximate_arrival_timestamp_millis,
                opened: Instant::now(),
                checkpointer: checkpointer.clone(),
            });
            entry.data.extend_from_slice(&record.data);
            entry.ends.push((entry.data.len(), record.approximate_arrival_timestamp_millis));
            entry.records += 1;
            entry.last_sequence_number = record.sequence_number.clone();
            entry.last_sub_sequence_number = record.sub_sequence_number;
            entry.oldest_arrival_millis = entry.oldest_arrival_millis.min(record.approximate_arrival_timestamp_millis);
            // The newest lease's checkpointer (a re-leased shard has a new epoch).
            entry.checkpointer = checkpointer.clone();
            if entry.data.len() as u64 >= self.inner.destination.size_bytes() {
                self.inner.flush(&mut buffer).await?;
            }
        }
        if self.inner.destination.interval_secs() == 0 {
            self.inner.flush(&mut buffer).await?;
        }
        Ok(())
    }

    async fn flush(&self, shard_id: &str) -> ProcessResult {
        let slot = self.inner.slot(shard_id);
        let mut buffer = slot.lock().await;
        self.inner.flush(&mut buffer).await
    }
}
