//! Consumer groups: shard leases and checkpoints of one application on one
//! stream, kept in the metadata group (the KCL's lease table, without DynamoDB).
//!
//! Everything here is a pure function of the group, the stream's shards and the
//! time the proposer stamped on the command, so every metadata replica computes
//! the same leases. After every change the group is rebalanced:
//!
//! 1. members not heard from within the lease timeout are dropped, with their leases;
//! 2. a shard is *eligible* when it is not finished (checkpointed at its end) and
//!    its parents are finished or gone — children wait for their parents, so each
//!    key's records are processed in order across splits and merges;
//! 3. free eligible shards go to the members holding the fewest leases, and a
//!    lease moves from the fullest member to the emptiest while they differ by two.
//!
//! Every grant gets a new epoch. A checkpoint names the epoch of the lease it was
//! made under and is refused unless that lease is still the member's, so a member
//! that lost a shard (it stalled, was presumed dead, was rebalanced away) cannot
//! move the shard's checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shoal_types::{ErrorCode, SequenceNumber, ShardId, ShoalError, Stream};

/// Lease timeout when a member does not ask for one.
pub const DEFAULT_LEASE_TIMEOUT_MILLIS: u64 = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroup {
    pub stream: String,
    pub application: String,
    /// A member that has not heartbeated for this long loses its leases.
    pub lease_timeout_millis: u64,
    pub members: BTreeMap<String, Member>,
    pub leases: BTreeMap<ShardId, Lease>,
    pub checkpoints: BTreeMap<ShardId, Checkpoint>,
    /// The epoch the next lease grant gets.
    pub next_epoch: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub joined_millis: u64,
    pub last_seen_millis: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub epoch: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last sequence number processed (empty: nothing yet).
    pub sequence_number: String,
    /// Within an aggregated record: the last sub-record processed.
    pub sub_sequence_number: u64,
    /// The shard was read to its end: its children may be leased.
    pub shard_end: bool,
    pub millis: u64,
}

/// A change to a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupCommand {
    Join { member: String, lease_timeout_millis: u64 },
    Heartbeat { member: String },
    Leave { member: String },
    Checkpoint { member: String, shard: ShardId, epoch: u64, checkpoint: Checkpoint },
}

impl ConsumerGroup {
    pub fn new(stream: &str, application: &str, lease_timeout_millis: u64) -> ConsumerGroup {
        ConsumerGroup {
            stream: stream.to_string(),
            application: application.to_string(),
            lease_timeout_millis: if lease_timeout_millis == 0 {
                DEFAULT_LEASE_TIMEOUT_MILLIS
            } else {
                lease_timeout_millis
            },
            next_epoch: 1,
            ..Default::default()
        }
    }

    /// The shards `member` holds, with the epoch of each lease.
    pub fn leases_of<'a>(&'a self, member: &'a str) -> impl Iterator<Item = (ShardId, u64)> + 'a {
        self.leases.iter().filter(move |(_, l)| l.owner == member).map(|(s, l)| (*s, l.epoch))
    }

    /// Applies `command` at `now_millis` against the stream's current shards.
    pub fn apply(&mut self, command: GroupCommand, stream: &Stream, now_millis: u64) -> Result<(), ShoalError> {
        match command {
            GroupCommand::Join { member, lease_timeout_millis } => {
                validate_member(&member)?;
                if lease_timeout_millis != 0 {
                    self.lease_timeout_millis = lease_timeout_millis;
                }
                let entry =
                    self.members.entry(member).or_insert(Member { joined_millis: now_millis, last_seen_millis: 0 });
                entry.last_seen_millis = now_millis;
            }
            GroupCommand::Heartbeat { member } => match self.members.get_mut(&member) {
                Some(entry) => entry.last_seen_millis = now_millis,
                None => {
                    return Err(ShoalError::new(
                        ErrorCode::ResourceNotFound,
                        format!("Member {member} is not in consumer group {}; join again.", self.application),
                    ));
                }
            },
            GroupCommand::Leave { member } => {
                self.members.remove(&member);
            }
            GroupCommand::Checkpoint { member, shard, epoch, mut checkpoint } => {
                match self.leases.get(&shard) {
                    Some(lease) if lease.owner == member && lease.epoch == epoch => {}
                    _ => {
                        return Err(ShoalError::new(
                            ErrorCode::ResourceInUse,
                            format!(
                                "Member {member} no longer holds the lease on {shard} (epoch {epoch}); the checkpoint is refused."
                            ),
                        ));
                    }
                }
                // A checkpoint names a record of the shard (or nothing yet).
                if !checkpoint.sequence_number.is_empty() {
                    let position = SequenceNumber::parse(&checkpoint.sequence_number)?;
                    if position.shard_index != shard.index() {
                        return Err(ShoalError::invalid_argument(format!(
                            "Sequence number {} does not belong to {shard}.",
                            checkpoint.sequence_number
                        )));
                    }
                }
                if let Some(entry) = self.members.get_mut(&member) {
                    entry.last_seen_millis = now_millis;
                }
                checkpoint.millis = now_millis;
                self.checkpoints.insert(shard, checkpoint);
            }
        }
        self.rebalance(stream, now_millis);
        Ok(())
    }

    /// Whether `shard` was read to its end and checkpointed there.
    pub fn finished(&self, shard: ShardId) -> bool {
        self.checkpoints.get(&shard).is_some_and(|c| c.shard_end)
    }

    /// Shards that may be leased now: unfinished, with every parent finished or gone.
    pub fn eligible(&self, stream: &Stream) -> Vec<ShardId> {
        let listed: BTreeSet<ShardId> = stream.shards.iter().map(|s| s.id).collect();
        let done = |parent: Option<ShardId>| parent.is_none_or(|p| !listed.contains(&p) || self.finished(p));
        stream
            .shards
            .iter()
            .filter(|s| !self.finished(s.id) && done(s.parent) && done(s.adjacent_parent))
            .map(|s| s.id)
            .collect()
    }

    fn rebalance(&mut self, stream: &Stream, now_millis: u64) {
        let timeout = self.lease_timeout_millis;
        self.members.retain(|_, m| m.last_seen_millis.saturating_add(timeout) >= now_millis);
        let eligible: BTreeSet<ShardId> = self.eligible(stream).into_iter().collect();
        let members = &self.members;
        self.leases.retain(|shard, lease| members.contains_key(&lease.owner) && eligible.contains(shard));
        if self.members.is_empty() {
            return;
        }
        let mut held: BTreeMap<String, usize> = self.members.keys().map(|m| (m.clone(), 0)).collect();
        for lease in self.leases.values() {
            *held.entry(lease.owner.clone()).or_default() += 1;
        }
        let emptiest = |held: &BTreeMap<String, usize>| {
            held.iter().min_by_key(|(name, n)| (**n, (*name).clone())).map(|(name, _)| name.clone())
        };
        let free: Vec<ShardId> = eligible.iter().filter(|s| !self.leases.contains_key(s)).copied().collect();
        for shard in free {
            let Some(owner) = emptiest(&held) else { return };
            *held.entry(owner.clone()).or_default() += 1;
            self.leases.insert(shard, Lease { owner, epoch: self.next_epoch });
            self.next_epoch += 1;
        }
        loop {
            let (Some(fullest), Some(emptiest)) =
                (held.iter().max_by_key(|(name, n)| (**n, (*name).clone())).map(|(n, _)| n.clone()), emptiest(&held))
            else {
                return;
            };
            if held[&fullest] < held[&emptiest] + 2 {
                return;
            }
            let Some(shard) = self.leases.iter().rev().find(|(_, l)| l.owner == fullest).map(|(s, _)| *s) else {
                return;
            };
            self.leases.insert(shard, Lease { owner: emptiest.clone(), epoch: self.next_epoch });
            self.next_epoch += 1;
            *held.entry(fullest).or_default() -= 1;
            *held.entry(emptiest).or_default() += 1;
        }
    }
}

fn validate_member(member: &str) -> Result<(), ShoalError> {
    if member.is_empty() || member.len() > 256 {
        return Err(ShoalError::invalid_argument("A member name is 1 to 256 characters."));
    }
    Ok(())
}

/// Application names follow consumer-name rules: `[a-zA-Z0-9_.-]{1,128}`.
pub fn validate_application(name: &str) -> Result<(), ShoalError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        return Err(ShoalError::new(
            ErrorCode::Validation,
            format!("Application name {name:?} is invalid: it must match [a-zA-Z0-9_.-]{{1,128}}."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_types::{HashKeyRange, Shard, StreamStatus};

    fn shard(index: u32, parent: Option<u32>, adjacent: Option<u32>, open: bool) -> Shard {
        Shard {
            parent: parent.map(ShardId),
            adjacent_parent: adjacent.map(ShardId),
            ready: true,
            closed_at: if open { None } else { Some(shoal_types::RecordPosition::START) },
            ..Shard::new(ShardId(index), u64::from(index) + 1, HashKeyRange::split_evenly(1)[0], vec![1, 2, 3])
        }
    }

    fn stream(shards: Vec<Shard>) -> Stream {
        Stream { status: StreamStatus::Active, ..Stream::new("s", 1, 24, shards) }
    }

    fn join(group: &mut ConsumerGroup, stream: &Stream, member: &str, now: u64) {
        group.apply(GroupCommand::Join { member: member.into(), lease_timeout_millis: 0 }, stream, now).unwrap();
    }

    fn counts(group: &ConsumerGroup) -> Vec<usize> {
        let mut counts: Vec<usize> = group.members.keys().map(|m| group.leases_of(m).count()).collect();
        counts.sort();
        counts
    }

    #[test]
    fn three_members_share_eight_shards_evenly() {
        let stream = stream((0..8).map(|i| shard(i, None, None, true)).collect());
        let mut group = ConsumerGroup::new("s", "app", 1000);
        for (i, member) in ["a", "b", "c"].iter().enumerate() {
            join(&mut group, &stream, member, i as u64);
        }
        assert_eq!(counts(&group), [2, 3, 3]);
        assert_eq!(group.leases.len(), 8);
    }

    #[test]
    fn a_silent_member_loses_its_shards_to_the_others() {
        let stream = stream((0..8).map(|i| shard(i, None, None, true)).collect());
        let mut group = ConsumerGroup::new("s", "app", 1000);
        join(&mut group, &stream, "a", 0);
        join(&mut group, &stream, "b", 0);
        group.apply(GroupCommand::Heartbeat { member: "a".into() }, &stream, 900).unwrap();
        group.apply(GroupCommand::Heartbeat { member: "a".into() }, &stream, 1500).unwrap();
        assert_eq!(group.members.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(group.leases_of("a").count(), 8);
    }

    #[test]
    fn a_stale_checkpoint_is_refused() {
        let stream = stream((0..2).map(|i| shard(i, None, None, true)).collect());
        let mut group = ConsumerGroup::new("s", "app", 1000);
        join(&mut group, &stream, "a", 0);
        let (shard, old_epoch) = group.leases_of("a").next().unwrap();
        join(&mut group, &stream, "b", 10);
        // Whatever moved, a checkpoint under an epoch that is no longer the
        // member's lease is refused.
        let stale = GroupCommand::Checkpoint {
            member: "a".into(),
            shard,
            epoch: old_epoch + 100,
            checkpoint: Checkpoint { sequence_number: "1".into(), ..Default::default() },
        };
        assert_eq!(group.apply(stale, &stream, 20).unwrap_err().code, ErrorCode::ResourceInUse);
        assert!(group.checkpoints.is_empty());
    }

    #[test]
    fn children_wait_until_their_parents_are_finished() {
        // 0 split into 1 and 2; 1 and 2 merged into 3.
        let stream = stream(vec![
            shard(0, None, None, false),
            shard(1, Some(0), None, false),
            shard(2, Some(0), None, false),
            shard(3, Some(1), Some(2), true),
        ]);
        let mut group = ConsumerGroup::new("s", "app", 1000);
        join(&mut group, &stream, "a", 0);
        assert_eq!(group.leases.keys().copied().collect::<Vec<_>>(), [ShardId(0)]);
        let end = |shard: u32, group: &ConsumerGroup| GroupCommand::Checkpoint {
            member: "a".into(),
            shard: ShardId(shard),
            epoch: group.leases[&ShardId(shard)].epoch,
            checkpoint: Checkpoint {
                sequence_number: stream.sequence_number(ShardId(shard), shoal_types::RecordPosition::START).to_string(),
                shard_end: true,
                ..Default::default()
            },
        };
        group.apply(end(0, &group), &stream, 1).unwrap();
        assert_eq!(group.leases.keys().copied().collect::<Vec<_>>(), [ShardId(1), ShardId(2)]);
        group.apply(end(1, &group), &stream, 2).unwrap();
        assert_eq!(group.leases.keys().copied().collect::<Vec<_>>(), [ShardId(2)], "3 waits for both parents");
        group.apply(end(2, &group), &stream, 3).unwrap();
        assert_eq!(group.leases.keys().copied().collect::<Vec<_>>(), [ShardId(3)]);
    }
}
