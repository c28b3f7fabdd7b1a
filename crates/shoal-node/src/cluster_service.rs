//! The gRPC `Cluster` service: nodes, zones, shard leaders and replication lag.

use openraft::async_runtime::WatchReceiver;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_client::status::to_status;
use shoal_proto::v1 as proto;
use shoal_proto::v1::cluster_client::ClusterClient;
use shoal_proto::v1::cluster_server::Cluster;
use shoal_types::stream::META_GROUP_ID;
use shoal_types::{NodeInfo, ShoalError};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::membership;
use crate::node::Node;
use crate::peers::{forwarded, is_forwarded, relay};

pub struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    pub fn new(node: Arc<Node>) -> Self {
        ClusterService { node }
    }

    /// A client of the metadata leader when it is another node (membership
    /// changes run there); `None` when this node leads.
    async fn leader_elsewhere<T>(&self, request: &Request<T>) -> Result<Option<ClusterClient<Channel>>, Status> {
        match self.node.wait_for_meta_leader(Duration::from_secs(5)).await.map_err(to_status)? {
            None => Ok(None),
            Some(_) if is_forwarded(request) => {
                Err(to_status(ShoalError::unavailable("metadata leadership is moving; retry")))
            }
            Some((_, addr)) => Ok(Some(ClusterClient::new(self.node.peers.channel(&addr).map_err(to_status)?))),
        }
    }

    /// This node's view of every group it runs: one row per shard (a group
    /// that carries several shards has a row for each).
    pub fn local_groups(&self) -> proto::LocalGroupsResponse {
        let mut groups: Vec<proto::GroupStatus> = self
            .node
            .groups
            .all()
            .into_iter()
            .flat_map(|handle| {
                let metrics = handle.raft.metrics().borrow_watched().clone();
                let last_log_index = metrics.last_log_index.unwrap_or(0);
                let follower_lag = metrics
                    .replication
                    .as_ref()
                    .map(|replication| {
                        replication
                            .iter()
                            .filter(|(id, _)| **id != self.node.id)
                            .map(|(id, matched)| {
                                (*id, last_log_index.saturating_sub(matched.map(|m| m.index).unwrap_or(0)))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let row = proto::GroupStatus {
                    group_id: handle.group,
                    stream_name: String::new(),
                    shard_id: String::new(),
                    leader_id: metrics.current_leader.unwrap_or(0),
                    term: metrics.current_term,
                    replicas: metrics.membership_config.voter_ids().collect(),
                    last_log_index,
                    applied_index: metrics.last_applied.map(|l| l.index).unwrap_or(0),
                    follower_lag,
                    appended_records: 0,
                    appended_bytes: 0,
                };
                if handle.group == META_GROUP_ID {
                    return vec![row];
                }
                handle
                    .shards
                    .values()
                    .map(|slot| proto::GroupStatus {
                        stream_name: slot.labels.0.clone(),
                        shard_id: slot.labels.1.clone(),
                        appended_records: slot.load.records.load(Ordering::Relaxed),
                        appended_bytes: slot.load.bytes.load(Ordering::Relaxed),
                        ..row.clone()
                    })
                    .collect()
            })
            .collect();
        groups.sort_by(|a, b| (a.group_id, &a.shard_id).cmp(&(b.group_id, &b.shard_id)));
        proto::LocalGroupsResponse { node_id: self.node.id, groups }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn local_groups(
        &self,
        _request: Request<proto::LocalGroupsRequest>,
    ) -> Result<Response<proto::LocalGroupsResponse>, Status> {
        Ok(Response::new(self.local_groups()))
    }

    /// Asks every node for its groups and keeps, for each group, the report of
    /// its leader (which alone knows the followers' lag).
    async fn status(
        &self,
        _request: Request<proto::ClusterStatusRequest>,
    ) -> Result<Response<proto::ClusterStatusResponse>, Status> {
        let members = self.node.cluster_nodes();
        let meta = self.node.meta_snapshot();
        let load = meta.replica_load();
        let voters = membership::voters(&self.node);
        let mut nodes = Vec::new();
        let mut merged: BTreeMap<(u64, String), proto::GroupStatus> = BTreeMap::new();
        for (id, info) in &members {
            let report = if *id == self.node.id {
                Some(self.local_groups())
            } else {
                match self.node.peers.channel(&info.addr) {
                    Ok(channel) => {
                        let mut client = ClusterClient::new(channel);
                        let call = client.local_groups(proto::LocalGroupsRequest {});
                        tokio::time::timeout(Duration::from_secs(2), call)
                            .await
                            .ok()
                            .and_then(|r| r.ok())
                            .map(|r| r.into_inner())
                    }
                    Err(_) => None,
                }
            };
            nodes.push(proto::NodeStatus {
                node_id: *id,
                zone: info.zone.clone(),
                addr: info.addr.clone(),
                reachable: report.is_some(),
                draining: meta.draining.contains(id),
                replicas: load.get(id).copied().unwrap_or(0) as u32,
                voter: voters.contains(id),
            });
            for group in report.map(|r| r.groups).unwrap_or_default() {
                let reporter_leads = group.leader_id == *id;
                let key = (group.group_id, group.shard_id.clone());
                let keep = match merged.get(&key) {
                    None => true,
                    Some(existing) => reporter_leads || (existing.leader_id == 0 && group.leader_id != 0),
                };
                if keep {
                    merged.insert(key, group);
                }
            }
        }
        let meta_leader_id = self.node.meta.metrics().borrow_watched().current_leader.unwrap_or(0);
        Ok(Response::new(proto::ClusterStatusResponse {
            nodes,
            groups: merged.into_values().collect(),
            meta_leader_id,
        }))
    }

    async fn add_node(
        &self,
        request: Request<proto::AddNodeRequest>,
    ) -> Result<Response<proto::AddNodeResponse>, Status> {
        if let Some(mut leader) = self.leader_elsewhere(&request).await? {
            return relay(leader.add_node(forwarded(request.into_inner())).await);
        }
        let message = request.into_inner();
        let info = NodeInfo { addr: message.addr, zone: message.zone };
        let voter = membership::add_node(&self.node, message.node_id, info).await.map_err(to_status)?;
        Ok(Response::new(proto::AddNodeResponse { voter }))
    }

    async fn drain_node(
        &self,
        request: Request<proto::DrainNodeRequest>,
    ) -> Result<Response<proto::DrainNodeResponse>, Status> {
        if let Some(mut leader) = self.leader_elsewhere(&request).await? {
            return relay(leader.drain_node(forwarded(request.into_inner())).await);
        }
        let message = request.into_inner();
        let replicas_left =
            membership::drain_node(&self.node, message.node_id, message.cancel).await.map_err(to_status)?;
        Ok(Response::new(proto::DrainNodeResponse { replicas_left }))
    }

    async fn remove_node(
        &self,
        request: Request<proto::RemoveNodeRequest>,
    ) -> Result<Response<proto::RemoveNodeResponse>, Status> {
        if let Some(mut leader) = self.leader_elsewhere(&request).await? {
            return relay(leader.remove_node(forwarded(request.into_inner())).await);
        }
        let message = request.into_inner();
        let timeout =
            Duration::from_secs(if message.timeout_secs == 0 { 120 } else { u64::from(message.timeout_secs) });
        membership::remove_node(&self.node, message.node_id, timeout).await.map_err(to_status)?;
        Ok(Response::new(proto::RemoveNodeResponse {}))
    }
}
