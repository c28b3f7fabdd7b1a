//! The NATS JetStream driver, speaking the NATS client protocol directly (a few
//! text commands over TCP), so the peer needs no client library:
//! `PUB subject reply len` publishes into a JetStream stream and the server's
//! acknowledgement (`{"stream":…,"seq":…}`) arrives on the reply subject.
//! The stream is R3 and file-backed on a three-server cluster.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

use super::payload;
use super::workload::Workload;

const STREAM: &str = "BENCH";

/// One client connection: replies to `_INBOX.<id>.<n>` resolve pending requests;
/// messages on `_DELIVER.<id>` are pushed consumer deliveries.
struct Connection {
    writer: Mutex<OwnedWriteHalf>,
    pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>,
    next: AtomicU64,
    id: u64,
}

static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

impl Connection {
    async fn open(
        addr: &str,
        deliveries: Option<mpsc::UnboundedSender<payload::Delivery>>,
    ) -> anyhow::Result<Arc<Connection>> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to nats at {addr}"))?;
        stream.set_nodelay(true)?;
        let (read, mut write) = stream.into_split();
        let id = CONNECTIONS.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id()) * 1000;
        write.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":false}\r\n").await?;
        write.write_all(format!("SUB _INBOX.{id}.* 1\r\nSUB _DELIVER.{id} 2\r\n").as_bytes()).await?;
        let pending: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>> = Arc::default();
        let connection =
            Arc::new(Connection { writer: Mutex::new(write), pending: pending.clone(), next: AtomicU64::new(0), id });
        let pong = connection.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.first().copied() {
                    Some("MSG") if words.len() >= 4 => {
                        let Some(len) = words.last().and_then(|l| l.parse::<usize>().ok()) else { return };
                        let mut body = vec![0u8; len + 2];
                        if reader.read_exact(&mut body).await.is_err() {
                            return;
                        }
                        body.truncate(len);
                        // JetStream deliveries keep the message's own subject: tell
                        // them apart by subscription id (2 is the deliver subject).
                        let (subject, sid) = (words[1], words[2]);
                        if sid == "2" {
                            let delivery = payload::Delivery::of(&body, payload::now_micros());
                            if let (Some(deliveries), Some(delivery)) = (&deliveries, delivery) {
                                let _ = deliveries.send(delivery);
                            }
                        } else if let Some(n) = subject.rsplit('.').next().and_then(|n| n.parse::<u64>().ok()) {
                            let waiter = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&n);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(body);
                            }
                        }
                    }
                    Some("PING") => {
                        let _ = pong.writer.lock().await.write_all(b"PONG\r\n").await;
                    }
                    Some("-ERR") => tracing::warn!(error = %line.trim(), "nats error"),
                    _ => {}
                }
            }
        });
        Ok(connection)
    }

    /// Publishes (or requests) and returns a receiver for the reply.
    async fn send_many(&self, messages: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<oneshot::Receiver<Vec<u8>>>> {
        let mut buffer = Vec::new();
        let mut replies = Vec::with_capacity(messages.len());
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (subject, data) in messages {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let (tx, rx) = oneshot::channel();
                pending.insert(n, tx);
                replies.push(rx);
                buffer.extend_from_slice(format!("PUB {subject} _INBOX.{}.{n} {}\r\n", self.id, data.len()).as_bytes());
                buffer.extend_from_slice(data);
                buffer.extend_from_slice(b"\r\n");
            }
        }
        let mut writer = self.writer.lock().await;
        writer.write_all(&buffer).await?;
        writer.flush().await?;
        Ok(replies)
    }

    async fn request(&self, subject: &str, body: &str) -> anyhow::Result<serde_json::Value> {
        let reply = self.send_many(&[(subject.to_string(), body.as_bytes().to_vec())]).await?.remove(0);
        let bytes = tokio::time::timeout(std::time::Duration::from_secs(10), reply)
            .await
            .context("nats request timed out")??;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

#[derive(Clone)]
pub struct NatsDriver {
    addrs: Vec<String>,
    connection: Arc<Connection>,
}

impl NatsDriver {
    pub async fn connect(addrs: &[String]) -> anyhow::Result<NatsDriver> {
        let first = addrs.first().context("no nats address")?;
        Ok(NatsDriver { addrs: addrs.to_vec(), connection: Connection::open(first, None).await? })
    }

    /// A connection of its own for one producer, spread over the servers.
    pub async fn for_producer(&self, index: usize) -> anyhow::Result<NatsDriver> {
        let addr = &self.addrs[index % self.addrs.len()];
        Ok(NatsDriver { addrs: self.addrs.clone(), connection: Connection::open(addr, None).await? })
    }

    /// A fresh R3, file-backed JetStream stream for `bench.>`.
    pub async fn prepare(&self, _workload: &Workload) -> anyhow::Result<()> {
        let _ = self.connection.request(&format!("$JS.API.STREAM.DELETE.{STREAM}"), "").await;
        let config = serde_json::json!({
            "name": STREAM, "subjects": ["bench.>"], "storage": "file", "num_replicas": 3,
            "retention": "limits", "discard": "old", "max_msgs": -1, "max_bytes": -1
        });
        let created = self.connection.request(&format!("$JS.API.STREAM.CREATE.{STREAM}"), &config.to_string()).await?;
        anyhow::ensure!(created.get("error").is_none(), "creating the JetStream stream failed: {created}");
        Ok(())
    }

    /// Publishes a burst and waits for every acknowledgement; returns failures.
    pub async fn publish(&self, records: Vec<(String, Vec<u8>)>) -> anyhow::Result<usize> {
        let messages: Vec<(String, Vec<u8>)> =
            records.into_iter().map(|(key, data)| (format!("bench.{key}"), data)).collect();
        let mut failed = 0;
        for reply in self.connection.send_many(&messages).await? {
            match tokio::time::timeout(std::time::Duration::from_secs(30), reply).await {
                Ok(Ok(ack)) if !ack.windows(7).any(|w| w == b"\"error\"") => {}
                _ => failed += 1,
            }
        }
        Ok(failed)
    }

    /// A push consumer from now on; each record it receives goes to `latencies`.
    pub async fn consume(
        &self,
        latencies: mpsc::UnboundedSender<payload::Delivery>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let connection = Connection::open(&self.addrs[0], Some(latencies)).await?;
        let config = serde_json::json!({
            "stream_name": STREAM,
            "config": { "deliver_subject": format!("_DELIVER.{}", connection.id), "ack_policy": "none", "deliver_policy": "new" }
        });
        let created = connection.request(&format!("$JS.API.CONSUMER.CREATE.{STREAM}"), &config.to_string()).await?;
        anyhow::ensure!(created.get("error").is_none(), "creating the JetStream consumer failed: {created}");
        let mut stop = stop;
        tokio::spawn(async move {
            let _ = stop.changed().await;
            drop(connection);
        });
        Ok(())
    }
}
