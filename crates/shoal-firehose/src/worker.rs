//! The delivery worker: one consumer per delivery stream, started and stopped as
//! delivery streams come, change version and go.
//!
//! Workers on several nodes (or processes) share a delivery stream's shards
//! through the consumer group `firehose-<name>`: a worker that dies loses its
//! leases, another takes the shards over from their last checkpoint — which is
//! never past a record the destination has not acknowledged.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use shoal_client::ShoalClient;
use shoal_client::consumer::{Consumer, ConsumerConfig};
use shoal_raft::delivery_stream::DeliveryStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::delivery::DeliveryProcessor;
use crate::{Destination, S3Destination, StoreConfig};

/// How often the worker looks for new, changed and deleted delivery streams.
const RESCAN: Duration = Duration::from_secs(1);

/// Where the worker learns the delivery streams: the node's own metadata
/// ([`Local`]) or, for a worker of its own, the cluster's gRPC API ([`Remote`]).
/// `None` means "could not tell now" (nothing is stopped for it).
pub trait DeliveryStreams: Send + Sync + 'static {
    fn delivery_streams(&self) -> impl std::future::Future<Output = Option<Vec<DeliveryStream>>> + Send;
}

/// Delivery streams read in-process.
pub struct Local<F>(pub F);

impl<F: Fn() -> Vec<DeliveryStream> + Send + Sync + 'static> DeliveryStreams for Local<F> {
    async fn delivery_streams(&self) -> Option<Vec<DeliveryStream>> {
        Some((self.0)())
    }
}

/// Delivery streams asked of the cluster (`Firehose.ListDeliveryStreams`).
pub struct Remote(pub ShoalClient);

impl DeliveryStreams for Remote {
    async fn delivery_streams(&self) -> Option<Vec<DeliveryStream>> {
        match self.0.list_delivery_streams().await {
            Ok(records) => Some(
                records
                    .into_iter()
                    .map(|r| DeliveryStream {
                        name: r.name,
                        kind: r.kind,
                        source_stream: r.source_stream,
                        status: r.status,
                        version_id: r.version_id,
                        created_millis: r.created_millis,
                        updated_millis: r.updated_millis,
                        destination: r.destination_json,
                        tags: r.tags.into_iter().collect(),
                        encryption: None,
                    })
                    .collect(),
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot list delivery streams; keeping the current ones");
                None
            }
        }
    }
}

pub struct Worker {
    client: ShoalClient,
    stores: StoreConfig,
    /// This worker's member name in every delivery stream's consumer group.
    member: String,
    lease_timeout: Duration,
    /// Lambda ARN → URL of the HTTP function standing in for it.
    functions: BTreeMap<String, String>,
    /// `DATABASE.TABLE` → columns, for record format conversion.
    tables: BTreeMap<String, String>,
}

struct Running {
    version: u64,
    consumer: Consumer,
    ticker: JoinHandle<()>,
}

impl Worker {
    pub fn new(client: ShoalClient, stores: StoreConfig, member: &str) -> Worker {
        Worker {
            client,
            stores,
            member: member.into(),
            lease_timeout: Duration::from_secs(10),
            functions: BTreeMap::new(),
            tables: BTreeMap::new(),
        }
    }

    /// The tables (`"DATABASE.TABLE" = "id bigint, …"`) conversions use.
    pub fn with_tables(mut self, tables: BTreeMap<String, String>) -> Worker {
        self.tables = tables;
        self
    }

    /// The HTTP functions that stand in for Lambda ARNs in transformations.
    pub fn with_functions(mut self, functions: BTreeMap<String, String>) -> Worker {
        self.functions = functions;
        self
    }

    /// How long a silent worker keeps its shards before others take them.
    pub fn with_lease_timeout(mut self, timeout: Duration) -> Worker {
        self.lease_timeout = timeout;
        self
    }

    /// Delivers until `stop` turns true; then flushes and checkpoints what it holds.
    pub async fn run(self, source: impl DeliveryStreams, mut stop: watch::Receiver<bool>) {
        let mut running: BTreeMap<String, Running> = BTreeMap::new();
        let mut broken: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            let Some(listed) = source.delivery_streams().await else {
                tokio::select! {
                    _ = tokio::time::sleep(RESCAN) => continue,
                    _ = stop.changed() => break,
                }
            };
            let wanted: BTreeMap<String, DeliveryStream> =
                listed.into_iter().filter(|d| d.status == "ACTIVE").map(|d| (d.name.clone(), d)).collect();
            let gone: Vec<String> = running
                .iter()
                .filter(|(name, r)| wanted.get(*name).is_none_or(|d| d.version_id != r.version))
                .map(|(name, _)| name.clone())
                .collect();
            // Stopping flushes and leaves the group, which can take a while (or,
            // for a deleted stream, fail slowly): never hold up the others for it.
            for name in gone {
                if let Some(stopped) = running.remove(&name) {
                    tokio::spawn(async move { stop_one(&name, stopped).await });
                }
            }
            for (name, stream) in &wanted {
                if running.contains_key(name) || broken.get(name) == Some(&stream.version_id) {
                    continue;
                }
                match tokio::time::timeout(STOP_TIMEOUT, self.start_one(stream))
                    .await
                    .unwrap_or_else(|_| Err("joining the consumer group timed out".into()))
                {
                    Ok(started) => {
                        tracing::info!(delivery_stream = %name, version = stream.version_id, "delivering");
                        running.insert(name.clone(), started);
                    }
                    Err(error) => {
                        tracing::warn!(delivery_stream = %name, %error, "cannot deliver this version");
                        broken.insert(name.clone(), stream.version_id);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RESCAN) => {}
                _ = stop.changed() => break,
            }
        }
        for (name, stopped) in running {
            stop_one(&name, stopped).await;
        }
    }

    async fn start_one(&self, stream: &DeliveryStream) -> Result<Running, String> {
        let stored: Value =
            serde_json::from_str(&stream.destination).map_err(|e| format!("stored destination: {e}"))?;
        let destination = Destination::from_stored(&stored)?;
        let store = self.stores.open(destination.bucket())?;
        if let Destination::S3(S3Destination { transform: Some(transform), .. }) = &destination
            && !transform.function.starts_with("http")
            && !self.functions.contains_key(&transform.function)
        {
            return Err(format!("no [firehose.functions] entry gives a URL for {}", transform.function));
        }
        let schema = match &destination {
            Destination::S3(S3Destination { conversion: Some(conversion), .. }) => {
                let columns = self
                    .tables
                    .get(&conversion.table)
                    .ok_or_else(|| format!("no [firehose.tables] entry declares {}", conversion.table))?;
                Some(
                    crate::conversion::parse_columns(columns)
                        .map_err(|e| format!("table {}: {e}", conversion.table))?,
                )
            }
            _ => None,
        };
        let partitioning = match &destination {
            Destination::S3(S3Destination { partitioning: Some(query), .. }) => {
                Some(crate::partitioning::Query::compile(query)?)
            }
            _ => None,
        };
        let backup_store = match &destination {
            Destination::S3(S3Destination { backup: Some(backup), .. }) => Some(self.stores.open(&backup.bucket)?),
            _ => None,
        };
        let processor = DeliveryProcessor::new(&stream.name, stream.version_id, destination, store)
            .with_backup_store(backup_store)
            .with_partitioning(partitioning)
            .with_functions(self.functions.clone())
            .with_schema(schema);
        let mut config = ConsumerConfig::new(&format!("firehose-{}", stream.name));
        config.member = self.member.clone();
        config.lease_timeout = self.lease_timeout;
        config.idle_poll = Duration::from_millis(100);
        let consumer = Consumer::start(self.client.clone(), &stream.source_stream, config, processor.clone())
            .await
            .map_err(|e| format!("joining the consumer group: {e}"))?;
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                processor.flush_due().await;
            }
        });
        Ok(Running { version: stream.version_id, consumer, ticker })
    }
}

/// How long stopping a delivery stream's consumer (flush, checkpoint, leave) may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

async fn stop_one(name: &str, running: Running) {
    running.ticker.abort();
    // Shutting the consumer down flushes every buffer and checkpoints.
    match tokio::time::timeout(STOP_TIMEOUT, running.consumer.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(delivery_stream = %name, %error, "delivery stopped uncleanly; records will be delivered again")
        }
        Err(_) => {
            tracing::warn!(delivery_stream = %name, "delivery did not stop in time; records will be delivered again")
        }
    }
}
