//! The gRPC `ConsumerGroups` service: shard leases and checkpoints of consumer
//! applications, proposed to the metadata group (see `shoal_raft::consumer_group`).
//!
//! Every change carries this node's clock reading; lease expiry is judged by the
//! times stamped on the commands, so all metadata replicas agree on it.

use std::sync::Arc;

use shoal_client::status::to_status;
use shoal_proto::v1 as proto;
use shoal_proto::v1::consumer_groups_server::ConsumerGroups;
use shoal_raft::consumer_group::{Checkpoint, ConsumerGroup, GroupCommand};
use shoal_raft::meta_state::group_key;
use shoal_raft::{MetaCommand, MetaResponse};
use shoal_types::{ShardId, ShoalError, ShoalResult, now_millis};
use tonic::{Request, Response, Status};

use crate::meta_writer;
use crate::node::Node;

pub struct ConsumerGroupService {
    node: Arc<Node>,
}

impl ConsumerGroupService {
    pub fn new(node: Arc<Node>) -> Self {
        ConsumerGroupService { node }
    }

    async fn change(&self, group: Option<proto::GroupRef>, command: GroupCommand) -> ShoalResult<ConsumerGroup> {
        let group =
            group.ok_or_else(|| ShoalError::invalid_argument("The group (stream and application) is missing."))?;
        let command = MetaCommand::Group {
            stream: group.stream_name,
            application: group.application,
            now_millis: now_millis(),
            command,
        };
        match meta_writer::propose(&self.node, command).await? {
            MetaResponse::Group(group) => Ok(group),
            other => Err(ShoalError::internal(format!("unexpected metadata response {other:?}"))),
        }
    }
}

/// The leases `member` holds, with where each resumes.
fn assignment(group: &ConsumerGroup, member: &str) -> proto::GroupAssignment {
    let leases = group
        .leases_of(member)
        .map(|(shard, epoch)| {
            let checkpoint = group.checkpoints.get(&shard).cloned().unwrap_or_default();
            proto::ShardLease {
                shard_id: shard.to_string(),
                epoch,
                checkpoint_sequence_number: checkpoint.sequence_number,
                checkpoint_sub_sequence_number: checkpoint.sub_sequence_number,
            }
        })
        .collect();
    proto::GroupAssignment { leases, lease_timeout_millis: group.lease_timeout_millis }
}

#[tonic::async_trait]
impl ConsumerGroups for ConsumerGroupService {
    async fn join_group(
        &self,
        request: Request<proto::JoinGroupRequest>,
    ) -> Result<Response<proto::GroupAssignment>, Status> {
        let message = request.into_inner();
        let command =
            GroupCommand::Join { member: message.member.clone(), lease_timeout_millis: message.lease_timeout_millis };
        let group = self.change(message.group, command).await.map_err(to_status)?;
        tracing::info!(stream = %group.stream, application = %group.application, member = %message.member, "member joined");
        Ok(Response::new(assignment(&group, &message.member)))
    }

    async fn heartbeat(
        &self,
        request: Request<proto::HeartbeatRequest>,
    ) -> Result<Response<proto::GroupAssignment>, Status> {
        let message = request.into_inner();
        let group = self
            .change(message.group, GroupCommand::Heartbeat { member: message.member.clone() })
            .await
            .map_err(to_status)?;
        Ok(Response::new(assignment(&group, &message.member)))
    }

    async fn leave_group(
        &self,
        request: Request<proto::LeaveGroupRequest>,
    ) -> Result<Response<proto::LeaveGroupResponse>, Status> {
        let message = request.into_inner();
        self.change(message.group, GroupCommand::Leave { member: message.member.clone() }).await.map_err(to_status)?;
        tracing::info!(member = %message.member, "member left");
        Ok(Response::new(proto::LeaveGroupResponse {}))
    }

    async fn checkpoint(
        &self,
        request: Request<proto::CheckpointRequest>,
    ) -> Result<Response<proto::CheckpointResponse>, Status> {
        let message = request.into_inner();
        let shard = ShardId::parse(&message.shard_id).map_err(to_status)?;
        let command = GroupCommand::Checkpoint {
            member: message.member,
            shard,
            epoch: message.epoch,
            checkpoint: Checkpoint {
                sequence_number: message.sequence_number,
                sub_sequence_number: message.sub_sequence_number,
                shard_end: message.shard_end,
                millis: 0,
            },
        };
        self.change(message.group, command).await.map_err(to_status)?;
        Ok(Response::new(proto::CheckpointResponse {}))
    }

    async fn describe_group(
        &self,
        request: Request<proto::DescribeGroupRequest>,
    ) -> Result<Response<proto::DescribeGroupResponse>, Status> {
        let group = request
            .into_inner()
            .group
            .ok_or_else(|| to_status(ShoalError::invalid_argument("The group (stream and application) is missing.")))?;
        let meta = self.node.meta_snapshot();
        let stream = meta.stream(&group.stream_name).map_err(to_status)?;
        let found = meta.consumer_groups.get(&group_key(&group.stream_name, &group.application)).ok_or_else(|| {
            to_status(ShoalError::not_found(format!(
                "Consumer group {} on stream {} does not exist.",
                group.application, group.stream_name
            )))
        })?;
        let eligible = found.eligible(stream);
        let members = found
            .members
            .iter()
            .map(|(name, member)| proto::GroupMember {
                member: name.clone(),
                last_seen_millis: member.last_seen_millis,
                shard_ids: found.leases_of(name).map(|(shard, _)| shard.to_string()).collect(),
            })
            .collect();
        let shards = stream
            .shards
            .iter()
            .map(|shard| {
                let lease = found.leases.get(&shard.id);
                let checkpoint = found.checkpoints.get(&shard.id).cloned().unwrap_or_default();
                proto::ShardProgressReport {
                    shard_id: shard.id.to_string(),
                    owner: lease.map(|l| l.owner.clone()).unwrap_or_default(),
                    epoch: lease.map(|l| l.epoch).unwrap_or(0),
                    checkpoint_sequence_number: checkpoint.sequence_number,
                    checkpoint_sub_sequence_number: checkpoint.sub_sequence_number,
                    shard_end: checkpoint.shard_end,
                    checkpoint_millis: checkpoint.millis,
                    waiting_for_parents: !checkpoint.shard_end && !eligible.contains(&shard.id),
                }
            })
            .collect();
        Ok(Response::new(proto::DescribeGroupResponse {
            members,
            shards,
            lease_timeout_millis: found.lease_timeout_millis,
        }))
    }
}
