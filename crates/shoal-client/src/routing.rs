//! Leader-aware PutRecords: send each shard's records straight to the node that
//! leads the shard, as a Kafka producer sends to a partition's leader.
//!
//! Any node accepts PutRecords and forwards records whose shard it does not lead,
//! which costs the cluster one more hop (encode, send, decode) for about two of
//! every three records on three nodes. A [`LeaderRouter`] learns the shards' hash
//! ranges and leaders once, splits each call by leader and sends the parts in
//! parallel; a node that has meanwhile lost a leadership still forwards, so a stale
//! table costs a hop, never a record. Parts for the same node that meet while
//! its calls are out leave together as one call ([`crate::collection`]). The
//! node says so in its answer
//! (`forwarded_record_count`), and the router then re-reads the table in the
//! background, at most once per [`REFRESH_PAUSE`]; [`LeaderRouter::refresh`]
//! re-reads it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use shoal_proto::v1 as proto;
use shoal_tls::Dialer;
use shoal_types::limits::MAX_RECORD_BYTES_CEILING;
use shoal_types::validation::validate_put_records;
use shoal_types::{HashKey, ShoalError, ShoalResult};

use crate::collection::Collector;
use crate::{Record, ShoalClient};

/// An open shard's hash range and the client of the node leading it.
#[derive(Clone)]
struct Route {
    shard_id: String,
    start: u128,
    end: u128,
    node: usize,
}

/// The shortest time between two background refreshes of the table.
pub const REFRESH_PAUSE: Duration = Duration::from_secs(1);

/// Routes a stream's records to its shards' leaders. Clones share one table.
#[derive(Clone)]
pub struct LeaderRouter {
    stream: String,
    /// Where unknown or leaderless shards go (the node first connected to).
    entry: ShoalClient,
    dialer: Dialer,
    table: Arc<RwLock<Arc<RouteTable>>>,
    /// A background refresh is running or pausing.
    refreshing: Arc<AtomicBool>,
    /// PutRecords calls sent to any node, shared with every node's collector (so a
    /// node a refresh drops keeps its count here).
    calls: Arc<AtomicU64>,
}

/// The leading nodes and the open shards' routes to them, as last read.
#[derive(Default)]
struct RouteTable {
    nodes: Vec<LeaderNode>,
    routes: Vec<Route>,
}

/// A node that leads some of the stream's shards.
#[derive(Clone)]
struct LeaderNode {
    addr: String,
    /// Sends the node its parts, collecting those that meet.
    collector: Arc<Collector>,
}

fn parse_hash(text: &str) -> ShoalResult<u128> {
    text.parse().map_err(|_| ShoalError::internal(format!("shard hash key {text:?} is not a number")))
}

impl LeaderRouter {
    /// Learns `stream`'s open shards and their leaders through `entry`, and
    /// connects to each leading node as `dialer` says.
    pub async fn discover(entry: ShoalClient, dialer: Dialer, stream: &str) -> ShoalResult<LeaderRouter> {
        let router = LeaderRouter {
            stream: stream.to_string(),
            entry,
            dialer,
            table: Arc::default(),
            refreshing: Arc::default(),
            calls: Arc::default(),
        };
        router.refresh().await?;
        Ok(router)
    }

    fn table(&self) -> Arc<RouteTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the shards and their leaders (after resharding or failover).
    pub async fn refresh(&self) -> ShoalResult<()> {
        let shards = self.entry.list_shards(&self.stream).await?;
        let status = self.entry.cluster_status().await?;
        let addrs: HashMap<u64, String> = status.nodes.iter().map(|n| (n.node_id, n.addr.clone())).collect();
        let leaders: HashMap<&str, u64> = status
            .groups
            .iter()
            .filter(|g| g.stream_name == self.stream && g.leader_id != 0)
            .map(|g| (g.shard_id.as_str(), g.leader_id))
            .collect();
        // A node the last table already reached keeps its connection and queue.
        let known: HashMap<String, Arc<Collector>> =
            self.table().nodes.iter().map(|node| (node.addr.clone(), node.collector.clone())).collect();
        let mut clients: HashMap<u64, usize> = HashMap::new();
        let mut nodes = Vec::new();
        let mut routes = Vec::new();
        for shard in shards.iter().filter(|s| s.ending_sequence_number.is_empty()) {
            let Some(leader) = leaders.get(shard.shard_id.as_str()) else { continue };
            let Some(addr) = addrs.get(leader) else { continue };
            let node = match clients.get(leader) {
                Some(index) => *index,
                None => {
                    let collector = match known.get(addr) {
                        Some(collector) => collector.clone(),
                        None => Collector::new(
                            ShoalClient::connect_with(addr, &self.dialer).await?,
                            &self.stream,
                            self.calls.clone(),
                        ),
                    };
                    nodes.push(LeaderNode { addr: addr.clone(), collector });
                    clients.insert(*leader, nodes.len() - 1);
                    nodes.len() - 1
                }
            };
            routes.push(Route {
                shard_id: shard.shard_id.clone(),
                start: parse_hash(&shard.starting_hash_key)?,
                end: parse_hash(&shard.ending_hash_key)?,
                node,
            });
        }
        routes.sort_by_key(|r| r.start);
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(RouteTable { nodes, routes });
        Ok(())
    }

    /// Refreshes the table in the background unless a refresh ran less than
    /// [`REFRESH_PAUSE`] ago.
    fn refresh_soon(&self) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let router = self.clone();
        tokio::spawn(async move {
            if let Err(error) = router.refresh().await {
                tracing::debug!(%error, "refreshing the shards' leaders failed");
            }
            tokio::time::sleep(REFRESH_PAUSE).await;
            router.refreshing.store(false, Ordering::Release);
        });
    }

    /// PutRecords calls sent to the leaders so far: fewer than the parts the
    /// callers' records made when parts were collected ([`crate::collection`]).
    pub fn calls_sent(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// How many open shards have a known leader.
    pub fn routed_shards(&self) -> usize {
        self.table().routes.len()
    }

    /// The address of the node leading `shard_id`, if known: where to read or
    /// subscribe to the shard without a hop.
    pub fn shard_leader_addr(&self, shard_id: &str) -> Option<String> {
        let table = self.table();
        let route = table.routes.iter().find(|route| route.shard_id == shard_id)?;
        table.nodes.get(route.node).map(|node| node.addr.clone())
    }

    /// PutRecords with each record sent to its shard's leader; the answer lists
    /// the records in the order given, as one PutRecords call would.
    ///
    /// The call is checked as a whole first, as one node would check it, so a bad
    /// record leaves none of the call's records written. Only a record over the
    /// stream's own size limit (below the 10 MiB any stream may allow) is caught
    /// by its leader alone: the call's parts for other leaders are then written.
    pub async fn put_records(&self, records: Vec<Record>) -> ShoalResult<proto::PutRecordsResponse> {
        let records = checked(records)?;
        let table = self.table();
        // Index `nodes.len()` is the entry node, for records without a known leader.
        let mut parts: Vec<(Vec<usize>, Vec<Record>)> = vec![(Vec::new(), Vec::new()); table.nodes.len() + 1];
        for (index, record) in records.into_iter().enumerate() {
            let hash = HashKey::for_record(&record.partition_key, record.explicit_hash_key.as_deref())?;
            let target = table.node_for(hash.0).unwrap_or(table.nodes.len());
            parts[target].0.push(index);
            parts[target].1.push(record);
        }
        let total: usize = parts.iter().map(|(indexes, _)| indexes.len()).sum();
        let calls = parts.into_iter().enumerate().filter(|(_, (indexes, _))| !indexes.is_empty()).map(
            |(target, (indexes, records))| {
                let collector = table.nodes.get(target).map(|node| node.collector.clone());
                let (entry, stream) = (self.entry.clone(), self.stream.clone());
                async move {
                    let answer = match collector {
                        Some(collector) => collector.put_records(records).await,
                        None => entry.put_records(&stream, records).await,
                    };
                    (indexes, answer)
                }
            },
        );
        let mut merged = proto::PutRecordsResponse {
            failed_record_count: 0,
            records: vec![proto::PutRecordsResultEntry::default(); total],
            forwarded_record_count: 0,
        };
        for (indexes, answer) in join_all(calls).await {
            let answer = answer?;
            // A short answer would leave records looking written that were not.
            if answer.records.len() != indexes.len() {
                return Err(ShoalError::internal(format!(
                    "PutRecords answered {} results for {} records",
                    answer.records.len(),
                    indexes.len()
                )));
            }
            // Counts from the network: a wrong one must not overflow.
            merged.failed_record_count = merged.failed_record_count.saturating_add(answer.failed_record_count);
            merged.forwarded_record_count = merged.forwarded_record_count.saturating_add(answer.forwarded_record_count);
            for (index, entry) in indexes.into_iter().zip(answer.records) {
                merged.records[index] = entry;
            }
        }
        if merged.forwarded_record_count > 0 {
            self.refresh_soon();
        }
        Ok(merged)
    }
}

/// `records` if they make a valid PutRecords call for a stream of the largest
/// record size any stream may have (checked on the records moved, not copied).
fn checked(records: Vec<Record>) -> ShoalResult<Vec<Record>> {
    let records: Vec<shoal_types::Record> = records
        .into_iter()
        .map(|r| shoal_types::Record {
            partition_key: r.partition_key,
            explicit_hash_key: r.explicit_hash_key,
            data: r.data,
        })
        .collect();
    validate_put_records(&records, MAX_RECORD_BYTES_CEILING)?;
    Ok(records
        .into_iter()
        .map(|r| Record { partition_key: r.partition_key, explicit_hash_key: r.explicit_hash_key, data: r.data })
        .collect())
}

impl RouteTable {
    /// Which node takes a record with this hash key.
    fn node_for(&self, hash: u128) -> Option<usize> {
        let at = self.routes.partition_point(|r| r.start <= hash).checked_sub(1)?;
        let route = &self.routes[at];
        (hash <= route.end).then_some(route.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_key_finds_the_shard_whose_range_holds_it() {
        let routes = vec![
            Route { shard_id: "shardId-000000000000".into(), start: 0, end: 99, node: 0 },
            Route { shard_id: "shardId-000000000001".into(), start: 100, end: 199, node: 1 },
            Route { shard_id: "shardId-000000000003".into(), start: 300, end: u128::MAX, node: 2 },
        ];
        let client =
            || ShoalClient::from_channel(tonic::transport::Endpoint::from_static("http://127.0.0.1:1").connect_lazy());
        let nodes = (1..=3)
            .map(|i| LeaderNode {
                addr: format!("127.0.0.1:{i}"),
                collector: Collector::new(client(), "s", Arc::default()),
            })
            .collect();
        let table = RouteTable { nodes, routes };
        assert_eq!(table.node_for(0), Some(0));
        assert_eq!(table.node_for(99), Some(0));
        assert_eq!(table.node_for(100), Some(1));
        assert_eq!(table.node_for(250), None, "a gap (a shard without a known leader) goes to the entry node");
        assert_eq!(table.node_for(u128::MAX), Some(2));
        let router = LeaderRouter {
            stream: "s".into(),
            entry: client(),
            dialer: Dialer::plain(),
            table: Arc::new(RwLock::new(Arc::new(table))),
            refreshing: Arc::default(),
            calls: Arc::default(),
        };
        assert_eq!(router.shard_leader_addr("shardId-000000000001").as_deref(), Some("127.0.0.1:2"));
        assert_eq!(router.shard_leader_addr("shardId-000000000002"), None, "no known leader");
    }
}
