//! Helpers shared by the integration tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use shoal_client::{Record, ShoalClient, StoredRecord};

/// A record whose data says who wrote it, so tests can recognise it later.
pub fn record(key: impl Into<String>, data: impl Into<String>) -> Record {
    Record { data: data.into().into_bytes().into(), partition_key: key.into(), explicit_hash_key: None }
}

/// One record a producer had acknowledged: the `n`-th of its key.
#[derive(Debug, Clone)]
pub struct Acked {
    pub key: String,
    pub n: u64,
    pub shard_id: String,
    pub sequence_number: String,
}

/// Writes one record per key per call, key after key, until stopped; record `n`
/// of key `k` carries `k:n`, and the next record of a key is only sent after
/// the call carrying the previous one has returned — so per-key order is defined.
pub struct KeyedProducer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    task: tokio::task::JoinHandle<()>,
}

impl KeyedProducer {
    pub fn start(client: ShoalClient, stream: &str, keys: usize) -> KeyedProducer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
        let (stream, stop_flag, acked_list) = (stream.to_string(), stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while !stop_flag.load(Ordering::Relaxed) {
                let batch = (0..keys).map(|k| record(format!("key-{k}"), format!("key-{k}:{n}"))).collect();
                if let Ok(response) = client.put_records(&stream, batch).await {
                    let mut acked = acked_list.lock().unwrap_or_else(|e| e.into_inner());
                    for (k, result) in response.records.iter().enumerate() {
                        if result.error_code.is_empty() {
                            acked.push(Acked {
                                key: format!("key-{k}"),
                                n,
                                shard_id: result.shard_id.clone(),
                                sequence_number: result.sequence_number.clone(),
                            });
                        }
                    }
                }
                n += 1;
            }
        });
        KeyedProducer { stop, acked, task }
    }

    /// How many records have been acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Stops the producer and returns what it had acknowledged.
    pub async fn stop(self) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reads a stream the way a lineage-following consumer does: a shard only after
/// its parents have been read to their end. Returns `(shard id, record)` in
/// reading order.
pub async fn read_in_lineage_order(client: &ShoalClient, stream: &str) -> anyhow::Result<Vec<(String, StoredRecord)>> {
    let shards = client.list_shards(stream).await?;
    let listed: BTreeSet<String> = shards.iter().map(|s| s.shard_id.clone()).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while done.len() < shards.len() {
        let ready: Vec<_> = shards
            .iter()
            .filter(|s| !done.contains(&s.shard_id))
            .filter(|s| {
                [&s.parent_shard_id, &s.adjacent_parent_shard_id]
                    .iter()
                    .all(|p| p.is_empty() || !listed.contains(*p) || done.contains(*p))
            })
            .collect();
        anyhow::ensure!(!ready.is_empty(), "shard lineage of {stream} has a cycle");
        for shard in ready {
            for record in client.read_shard(stream, &shard.shard_id).await? {
                out.push((shard.shard_id.clone(), record));
            }
            done.insert(shard.shard_id.clone());
        }
    }
    Ok(out)
}

/// What a consumer saw compared with what the producer had acknowledged.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Audit {
    pub acknowledged: usize,
    pub read: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub reordered: usize,
}

/// Checks that every acknowledged record was read exactly once, at the shard
/// and sequence number it was acknowledged with, and that each key's records
/// were read in the order they were written.
pub fn audit(acked: &[Acked], read: &[(String, StoredRecord)]) -> Audit {
    let mut seen: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut last_n: BTreeMap<String, u64> = BTreeMap::new();
    let acked_set: BTreeSet<(String, u64)> = acked.iter().map(|a| (a.key.clone(), a.n)).collect();
    let mut audit = Audit { acknowledged: acked.len(), read: read.len(), ..Audit::default() };
    for (shard, record) in read {
        let data = String::from_utf8_lossy(&record.data).to_string();
        seen.entry(data.clone()).or_default().push((shard.clone(), record.sequence_number.clone()));
        let Some((key, n)) = data.rsplit_once(':') else { continue };
        let Ok(n) = n.parse::<u64>() else { continue };
        // Order is promised for acknowledged records; an unacknowledged one may
        // land late (its call failed, yet the write went through).
        if !acked_set.contains(&(key.to_string(), n)) {
            continue;
        }
        if let Some(previous) = last_n.insert(key.to_string(), n)
            && previous >= n
        {
            audit.reordered += 1;
        }
    }
    audit.duplicated = seen.values().filter(|places| places.len() > 1).count();
    for a in acked {
        match seen.get(&format!("{}:{}", a.key, a.n)) {
            Some(places) if places.contains(&(a.shard_id.clone(), a.sequence_number.clone())) => {}
            _ => audit.lost += 1,
        }
    }
    audit
}
