//! Letting idle shard groups rest.
//!
//! A group's Raft ticker drives its heartbeats (on the leader) and its election
//! timer (on followers): ten wake-ups a second per replica, for every shard, busy
//! or not. A thousand idle shards kept two cores busy that way. Here a group
//! whose log has not moved for `raft.quiesce_after_millis` stops its ticker on
//! every replica — followers first, the leader a moment later, so that no
//! follower misses heartbeats while it still listens for them.
//!
//! A resting group wakes when
//! * its leader proposes (a write, a seal, a membership change: [`GroupHandle::wake`]),
//! * a follower sees new entries arrive (the next pass here notices the log moved),
//! * a follower finds its leader's node silent to the liveness probes
//!   ([`crate::liveness`]): its election timer runs again and, the leader's lease
//!   long expired, it campaigns at once.
//!
//! Resting changes no Raft state and no rule of Raft: only timers stop. The
//! metadata group never rests.

use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use shoal_types::now_millis;
use shoal_types::stream::META_GROUP_ID;
use tokio::sync::watch;

use crate::groups::GroupHandle;
use crate::node::Node;

/// The leader rests this much later than its followers.
const LEADER_LAG_MILLIS: u64 = 1_000;

/// Checks every group a few times a second until `stop`.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    if node.config.raft.quiesce_after_millis == 0 {
        return;
    }
    // Resting decisions need no haste: a follower that must wake for a dead
    // leader waits two election timeouts anyway.
    let every = Duration::from_millis(node.config.raft.heartbeat_millis.saturating_mul(2).clamp(20, 250));
    loop {
        pass(&node);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

fn pass(node: &Node) {
    let now = now_millis();
    let mut resting = 0u64;
    for handle in node.groups.all().into_iter().filter(|h| h.group != META_GROUP_ID) {
        match decide(node, &handle, now) {
            Decision::Rest => {
                handle.rest();
                resting += 1;
            }
            Decision::Stay => handle.resume(),
        }
    }
    metrics::gauge!("shoal_raft_resting_groups").set(resting as f64);
}

enum Decision {
    Rest,
    /// Keep (or start again) the ticker.
    Stay,
}

fn decide(node: &Node, handle: &GroupHandle, now: u64) -> Decision {
    let metrics = handle.raft.metrics();
    let metrics = metrics.borrow_watched();
    let last_index = metrics.last_log_index.unwrap_or(0);
    if handle.note_log_index(last_index, now) {
        return Decision::Stay; // entries arrived since the last pass
    }
    let idle = now.saturating_sub(handle.last_activity_millis());
    let quiet_after = node.config.raft.quiesce_after_millis;
    let Some(leader) = metrics.current_leader else {
        return Decision::Stay; // no leader known: elections must be able to run
    };
    if leader == node.id {
        // Rest only with every member holding the whole log and no membership
        // change under way: nothing left for heartbeats to carry.
        let membership = metrics.membership_config.membership();
        let settled = membership.get_joint_config().len() == 1
            && membership.learner_ids().next().is_none()
            && metrics.replication.as_ref().is_some_and(|replication| {
                replication.values().all(|matched| matched.as_ref().map(|m| m.index) == metrics.last_log_index)
            });
        if idle >= quiet_after + LEADER_LAG_MILLIS && settled { Decision::Rest } else { Decision::Stay }
    } else {
        // A follower rests while its leader's node answers probes; when it has not
        // answered for two election timeouts, the follower's timer runs again (and,
        // its leader lease long expired, it campaigns). Two, not one: a follower
        // woken by a slow probe rather than a dead leader would take the
        // leadership away from a healthy node.
        let silence = node.config.raft.election_timeout_millis.saturating_mul(2);
        let leader_alive = node.liveness.answered_within(leader, silence);
        if idle >= quiet_after && leader_alive { Decision::Rest } else { Decision::Stay }
    }
}
