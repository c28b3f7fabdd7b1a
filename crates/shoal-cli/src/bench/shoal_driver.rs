//! The Shoal driver: PutRecords over gRPC, push consumers over SubscribeToShard.

use std::collections::HashMap;
use std::time::Duration;

use shoal_client::{LeaderRouter, Record, ShoalClient};
use tokio::sync::{mpsc, watch};

use super::payload;
use super::workload::Workload;

#[derive(Clone)]
pub struct ShoalDriver {
    client: ShoalClient,
    endpoint: String,
    stream: String,
    /// Whether calls go to the shards' leaders (else all to the entry node).
    route: bool,
    /// Sends each shard's records to its leader; set once the stream is ready.
    router: Option<LeaderRouter>,
}

impl ShoalDriver {
    pub async fn connect(endpoint: &str, stream: &str, route: bool) -> anyhow::Result<ShoalDriver> {
        let client = crate::commands::connect::connect(endpoint).await?;
        Ok(ShoalDriver { client, endpoint: endpoint.into(), stream: stream.into(), route, router: None })
    }

    /// A fresh stream with the workload's shards.
    pub async fn prepare(&mut self, workload: &Workload) -> anyhow::Result<()> {
        if self.client.describe_stream_summary(&self.stream).await.is_ok() {
            self.client.delete_stream(&self.stream).await?;
            while self.client.describe_stream_summary(&self.stream).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.client.create_stream(&self.stream, workload.shards).await?;
        self.client.wait_for_active(&self.stream, Duration::from_secs(120)).await?;
        self.router = None;
        if self.route {
            self.route_to_leaders(workload.shards).await?;
        }
        Ok(())
    }

    /// Learns the shards' leaders, so calls go straight to them (as a leader-aware
    /// producer does) instead of through the entry node's forwarding. Waits until
    /// every shard has a leader, for at most ten seconds.
    async fn route_to_leaders(&mut self, shards: u32) -> anyhow::Result<()> {
        let dialer = crate::commands::connect::dialer();
        let router = LeaderRouter::discover(self.client.clone(), dialer, &self.stream).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while router.routed_shards() < shards as usize && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            router.refresh().await?;
        }
        self.router = Some(router);
        Ok(())
    }

    /// Sends one PutRecords call; returns how many records failed.
    pub async fn publish(&self, records: Vec<(String, Vec<u8>)>) -> anyhow::Result<usize> {
        let records = records
            .into_iter()
            .map(|(key, data)| Record { data: data.into(), partition_key: key, explicit_hash_key: None })
            .collect();
        let response = match &self.router {
            Some(router) => router.put_records(records).await?,
            None => self.client.put_records(&self.stream, records).await?,
        };
        Ok(response.failed_record_count as usize)
    }

    /// One push subscription per shard, from LATEST, opened on the shard's leader
    /// when calls are routed (else on the entry node, which hands it to the
    /// leader), over connections of their own (not the producers'); sends each
    /// record it receives to `latencies` until `stop`.
    pub async fn consume(
        &self,
        latencies: mpsc::UnboundedSender<payload::Delivery>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut connections: HashMap<String, ShoalClient> = HashMap::new();
        for shard in self.client.list_shards(&self.stream).await? {
            let addr = match self.router.as_ref().and_then(|router| router.shard_leader_addr(&shard.shard_id)) {
                Some(leader) => leader,
                None => self.endpoint.clone(),
            };
            let client = match connections.get(&addr) {
                Some(client) => client.clone(),
                None => {
                    let client = crate::commands::connect::connect(&addr).await?;
                    connections.insert(addr, client.clone());
                    client
                }
            };
            let (stream, latencies, mut stop) = (self.stream.clone(), latencies.clone(), stop.clone());
            let mut events = client.subscribe_to_shard(&stream, &shard.shard_id, "LATEST", None).await?;
            tokio::spawn(async move {
                loop {
                    let event = tokio::select! {
                        event = events.message() => event,
                        _ = stop.changed() => return,
                    };
                    let Ok(Some(event)) = event else { return };
                    let now = payload::now_micros();
                    for record in &event.records {
                        if let Some(delivery) = payload::Delivery::of(&record.data, now) {
                            let _ = latencies.send(delivery);
                        }
                    }
                }
            });
        }
        Ok(())
    }
}
