//! The Firehose delivery worker inside `shoal node` and `shoal dev`.

use std::time::Duration;

use shoal_client::ShoalClient;
use shoal_firehose::Worker;
use shoal_node::NodeHandle;
use shoal_tls::NodeTls;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A worker running next to a node; stop it before the node.
pub struct RunningWorker {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Starts the node's delivery worker (unless `firehose.worker = false`). It reads
/// the delivery streams from the node's metadata and the records through the
/// node's own gRPC API, as member `node-ID` of each delivery stream's consumer group.
pub fn start(handle: &NodeHandle) -> Option<RunningWorker> {
    let node = handle.node.clone();
    let mut config = node.config.firehose.clone();
    if !config.worker {
        return None;
    }
    if config.s3_endpoint.is_empty() && config.local_dir.is_none() {
        config.local_dir = Some(node.config.data_dir.join("firehose"));
    }
    let dialer = node.tls.as_ref().map(NodeTls::peer_dialer).unwrap_or_default();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let addr = node.info.addr.clone();
        let client = loop {
            match ShoalClient::connect_with(&addr, &dialer).await {
                Ok(client) => break client,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        let member = format!("node-{}", node.id);
        let source = shoal_firehose::worker::Local(move || {
            node.meta_snapshot().delivery_streams.values().cloned().collect::<Vec<_>>()
        });
        Worker::new(client, config.stores(), &member)
            .with_functions(config.functions.clone())
            .with_tables(config.tables.clone())
            .run(source, stopped)
            .await;
    });
    Some(RunningWorker { stop, task })
}

impl RunningWorker {
    /// Stops delivering: buffers are flushed and checkpointed (for a while at most).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(15), &mut task).await.is_err() {
            tracing::warn!("the Firehose worker did not stop in time; undelivered records will be delivered later");
            task.abort();
        }
    }
}

/// `shoal firehose worker`: a delivery worker of its own, reading delivery
/// streams and records through the cluster's gRPC API until Ctrl-C or SIGTERM,
/// then flushing what it holds.
pub async fn run_standalone(
    endpoint: &str,
    member: Option<String>,
    lease_timeout_secs: u64,
    args: &crate::cli::FirehoseArgs,
) -> anyhow::Result<()> {
    let mut config = shoal_firehose::FirehoseConfig::default();
    args.apply(&mut config)?;
    anyhow::ensure!(
        !config.s3_endpoint.is_empty() || config.local_dir.is_some(),
        "say where buckets are: --firehose-s3-endpoint URL or --firehose-local-dir DIR"
    );
    let client = super::connect::connect(endpoint).await?;
    let member = member.unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    eprintln!("shoal firehose worker {member}: delivering for the cluster at {endpoint}");
    let worker = Worker::new(client.clone(), config.stores(), &member)
        .with_functions(config.functions.clone())
        .with_tables(config.tables.clone())
        .with_lease_timeout(Duration::from_secs(lease_timeout_secs.max(1)));
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(worker.run(shoal_firehose::worker::Remote(client), stopped));
    super::shutdown_signal().await;
    eprintln!("shoal firehose worker {member}: flushing and stopping");
    RunningWorker { stop, task }.stop().await;
    Ok(())
}
