//! Election safety, watched live: every group member's metrics are followed as
//! they change, and two different leaders for the same term of the same group
//! is a violation, whenever it happens (even if it heals before the end).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::ServerState;
use openraft::rt::WatchReceiver;
use shoal_raft::GroupRaft;
use shoal_types::{GroupId, NodeId};

use super::trace::Trace;

#[derive(Clone)]
pub struct Observer {
    inner: Arc<Mutex<Inner>>,
    trace: Trace,
}

#[derive(Default)]
struct Inner {
    /// The leader seen for each term of each group.
    leaders: BTreeMap<(GroupId, u64), NodeId>,
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
                let leading = {
                    let m = metrics.borrow_watched();
                    (m.state == ServerState::Leader).then_some(m.current_term)
                };
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
        let mut inner = self.inner();
        match inner.leaders.get(&(group, term)).copied() {
            None => {
                inner.leaders.insert((group, term), node);
                drop(inner);
                self.trace.record(format!("group {group}: node {node} leads term {term}"));
            }
            Some(leader) if leader == node => {}
            Some(leader) => {
                let violation =
                    format!("election safety: group {group} has two leaders in term {term}: nodes {leader} and {node}");
                inner.violations.push(violation.clone());
                drop(inner);
                self.trace.record(violation);
            }
        }
    }

    /// How many (group, term) leaderships were seen.
    pub fn leaderships(&self) -> usize {
        self.inner().leaders.len()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner().violations.clone()
    }
}
