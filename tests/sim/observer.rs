//! Election safety, watched live: every group member's metrics are followed as
//! they change.
//!
//! Shoal's groups use openraft's default leader ids, `(term, node)`, which are
//! totally ordered: two leaders in one term are allowed (a later candidate with a
//! higher node id may win the same term), and log ids carry the whole leader id,
//! so log matching still holds. What election safety rests on is the vote: each
//! member's vote (the leader id it granted) must never go back — not while it
//! runs, and not across a crash (the vote is fsynced before it is granted). A
//! member whose leader id decreases or jumps to an incomparable one is a
//! violation, whenever it happens. Leaderships are counted per `(group, term,
//! node)` for the summary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::ServerState;
use openraft::rt::WatchReceiver;
use openraft::vote::RaftLeaderId;
use shoal_raft::GroupRaft;
use shoal_raft::type_config::Vote;
use shoal_types::{GroupId, NodeId};

use super::trace::Trace;

#[derive(Clone)]
pub struct Observer {
    inner: Arc<Mutex<Inner>>,
    trace: Trace,
}

#[derive(Default)]
struct Inner {
    /// The leaderships seen: `(group, term, node)`.
    leaders: BTreeMap<(GroupId, u64, NodeId), ()>,
    /// The highest vote each member has shown, across its restarts.
    votes: BTreeMap<(NodeId, GroupId), Vote>,
    violations: Vec<String>,
}

impl Observer {
    pub fn new(trace: Trace) -> Observer {
        Observer { inner: Arc::default(), trace }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows `raft`'s metrics until it shuts down.
    pub fn watch(&self, node: NodeId, group: GroupId, raft: &GroupRaft) {
        let observer = self.clone();
        let mut metrics = raft.metrics();
        tokio::spawn(async move {
            loop {
                let (leading, vote) = {
                    let m = metrics.borrow_watched();
                    ((m.state == ServerState::Leader).then_some(m.current_term), m.vote)
                };
                observer.saw_vote(node, group, vote);
                if let Some(term) = leading {
                    observer.saw_leader(group, term, node);
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    fn saw_leader(&self, group: GroupId, term: u64, node: NodeId) {
        let new = self.inner().leaders.insert((group, term, node), ()).is_none();
        if new {
            self.trace.record(format!("group {group}: node {node} leads term {term}"));
        }
    }

    fn saw_vote(&self, node: NodeId, group: GroupId, vote: Vote) {
        // A member that has not loaded its state yet shows the initial term-0 vote.
        if vote.leader_id().term() == 0 {
            return;
        }
        let mut inner = self.inner();
        let Some(seen) = inner.votes.get(&(node, group)) else {
            inner.votes.insert((node, group), vote);
            return;
        };
        // The committed flag may drop on restart (openraft demotes a restarted
        // leader's vote in memory); the leader id may not.
        match vote.leader_id().partial_cmp(seen.leader_id()) {
            Some(std::cmp::Ordering::Greater) => {
                inner.votes.insert((node, group), vote);
            }
            Some(std::cmp::Ordering::Equal) => {}
            _ => {
                let violation =
                    format!("election safety: group {group}: node {node}'s vote went back from {seen} to {vote}");
                inner.violations.push(violation.clone());
                drop(inner);
                self.trace.record(violation);
            }
        }
    }

    /// How many (group, term, node) leaderships were seen.
    pub fn leaderships(&self) -> usize {
        self.inner().leaders.len()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner().violations.clone()
    }
}
