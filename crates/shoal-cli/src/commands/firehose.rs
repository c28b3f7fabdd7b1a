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
        let source = move || node.meta_snapshot().delivery_streams.values().cloned().collect::<Vec<_>>();
        Worker::new(client, config.stores(), &member)
            .with_functions(config.functions.clone())
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
