//! The node-to-node transport against stand-in peers on loopback: a current peer
//! (one exchange stream, replies in any order), a peer that ends its exchange
//! (the next message opens a new one), an older peer without exchanges (one
//! `Deliver` call per batch), and a follower that answers a group's appends only
//! once several are on the wire (pipelined replication).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, StreamAppendError};
use openraft::testing::{blank_ent, log_id};
use shoal_proto::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use shoal_proto::v1::{
    MetaProposal, MetaProposalReply, RaftBatch, RaftBatchReply, RaftReply, ShardAppendReply, ShardAppendRequest,
};
use shoal_raft::transport::{APPENDS_IN_FLIGHT, PeerNetwork};
use shoal_raft::wire::{RaftRequest, RaftResponse};
use shoal_raft::{NetworkFaults, TypeConfig};
use shoal_tls::Dialer;
use shoal_types::NodeInfo;
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone, Copy, PartialEq)]
enum Peer {
    /// Serves exchanges and answers each frame's messages in reverse order.
    Current,
    /// Answers one frame, then ends the exchange.
    EndsAfterOneFrame,
    /// Predates exchanges: `Unimplemented`, and batches through `Deliver`.
    Old,
    /// A follower that holds its replies until [`HELD_APPENDS`] appends have
    /// arrived, then answers them last first: `Success`, but `Conflict` for the
    /// entry at index [`CONFLICT_AT`].
    Holding,
}

const HELD_APPENDS: usize = 4;
const CONFLICT_AT: u64 = 3;

#[derive(Clone)]
struct StandIn {
    kind: Peer,
    exchanges: Arc<AtomicUsize>,
    delivers: Arc<AtomicUsize>,
}

fn answered(batch: RaftBatch) -> Vec<RaftReply> {
    batch
        .messages
        .into_iter()
        .map(|m| RaftReply { payload: Vec::new(), error: String::new(), call_id: m.call_id })
        .collect()
}

/// [`Peer::Holding`]'s replies: nothing until [`HELD_APPENDS`] appends arrived, then
/// one frame answering them in reverse order.
fn held_replies(inbound: Streaming<RaftBatch>) -> impl Stream<Item = Result<RaftBatchReply, Status>> + Send {
    futures::stream::once(async move {
        let mut inbound = inbound;
        let mut held = Vec::new();
        while held.len() < HELD_APPENDS {
            match inbound.message().await {
                Ok(Some(batch)) => held.extend(batch.messages),
                _ => return Err(Status::aborted("the exchange ended early")),
            }
        }
        let replies = held
            .iter()
            .rev()
            .map(|message| {
                let Ok(RaftRequest::Append(rpc)) = RaftRequest::decode(&message.payload) else {
                    panic!("the stand-in follower only expects appends");
                };
                let response = match rpc.entries.first() {
                    Some(entry) if entry.log_id.index == CONFLICT_AT => AppendEntriesResponse::Conflict,
                    _ => AppendEntriesResponse::Success,
                };
                let payload = bincode::serialize(&RaftResponse::Append(response)).unwrap();
                RaftReply { payload, error: String::new(), call_id: message.call_id }
            })
            .collect();
        Ok(RaftBatchReply { replies })
    })
}

#[tonic::async_trait]
impl RaftTransport for StandIn {
    type ExchangeStream = Pin<Box<dyn Stream<Item = Result<RaftBatchReply, Status>> + Send>>;

    async fn exchange(&self, request: Request<Streaming<RaftBatch>>) -> Result<Response<Self::ExchangeStream>, Status> {
        self.exchanges.fetch_add(1, Ordering::SeqCst);
        if self.kind == Peer::Old {
            return Err(Status::unimplemented("this peer predates exchanges"));
        }
        if self.kind == Peer::Holding {
            return Ok(Response::new(Box::pin(held_replies(request.into_inner()))));
        }
        let replies = request
            .into_inner()
            .map(|frame| frame.map(|batch| RaftBatchReply { replies: answered(batch).into_iter().rev().collect() }));
        Ok(Response::new(match self.kind {
            Peer::EndsAfterOneFrame => Box::pin(replies.take(1)),
            _ => Box::pin(replies),
        }))
    }

    async fn deliver(&self, request: Request<RaftBatch>) -> Result<Response<RaftBatchReply>, Status> {
        self.delivers.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(RaftBatchReply { replies: answered(request.into_inner()) }))
    }

    async fn append_to_shard(&self, _: Request<ShardAppendRequest>) -> Result<Response<ShardAppendReply>, Status> {
        Err(Status::unimplemented("stand-in"))
    }

    async fn propose_meta(&self, _: Request<MetaProposal>) -> Result<Response<MetaProposalReply>, Status> {
        Err(Status::unimplemented("stand-in"))
    }
}

async fn start(kind: Peer) -> (StandIn, NodeInfo) {
    let peer = StandIn { kind, exchanges: Arc::default(), delivers: Arc::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let service = RaftTransportServer::new(peer.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (peer, NodeInfo { addr, zone: "az-b".into() })
}

fn network() -> PeerNetwork {
    PeerNetwork::new(1, Arc::new(NetworkFaults::default()), Dialer::default())
}

/// Pings until one is answered (a call in flight when an exchange ends fails;
/// Raft retries such calls the same way).
async fn answered_within(network: &PeerNetwork, node: &NodeInfo, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if network.ping(2, node, Duration::from_secs(1)).await {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn messages_to_a_peer_share_one_exchange() {
    let (peer, node) = start(Peer::Current).await;
    let network = network();
    let pings = (0..50).map(|_| network.ping(2, &node, Duration::from_secs(5)));
    assert!(futures::future::join_all(pings).await.into_iter().all(|answered| answered));
    assert!(network.ping(2, &node, Duration::from_secs(5)).await);
    assert_eq!(peer.exchanges.load(Ordering::SeqCst), 1, "every message went over the one exchange");
    assert_eq!(peer.delivers.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_ended_exchange_is_reopened_by_the_next_message() {
    let (peer, node) = start(Peer::EndsAfterOneFrame).await;
    let network = network();
    assert!(network.ping(2, &node, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(answered_within(&network, &node, Duration::from_secs(5)).await);
    assert!(peer.exchanges.load(Ordering::SeqCst) >= 2, "the second message opened a new exchange");
}

#[tokio::test]
async fn an_older_peer_gets_one_call_per_batch() {
    let (peer, node) = start(Peer::Old).await;
    let network = network();
    // The first message fails with the refused exchange; from then on, Deliver.
    assert!(answered_within(&network, &node, Duration::from_secs(5)).await);
    assert!(network.ping(2, &node, Duration::from_secs(5)).await);
    assert!(peer.delivers.load(Ordering::SeqCst) >= 2);
    // One refused exchange, and the sender never tried again.
    assert_eq!(peer.exchanges.load(Ordering::SeqCst), 1, "exchange attempts");
}

#[tokio::test]
async fn a_groups_appends_are_pipelined_and_their_outcomes_come_back_in_order() {
    const { assert!(APPENDS_IN_FLIGHT >= HELD_APPENDS, "the test needs HELD_APPENDS appends in flight") };
    let (_peer, node) = start(Peer::Holding).await;
    let mut follower = network().for_group(7).new_client(2, &node).await;
    // Four appends of one entry each, every one following the one before.
    let requests: Vec<AppendEntriesRequest<TypeConfig>> = (1..=HELD_APPENDS as u64)
        .map(|index| AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: (index > 1).then(|| log_id::<TypeConfig>(1, 1, index - 1)),
            leader_commit: None,
            entries: vec![blank_ent::<TypeConfig>(1, 1, index)],
        })
        .collect();
    let option = RPCOption::new(Duration::from_secs(5));
    let outcomes = tokio::time::timeout(Duration::from_secs(10), async {
        let answers = follower.stream_append(futures::stream::iter(requests), option).await.unwrap();
        answers.collect::<Vec<_>>().await
    })
    .await
    .expect("the follower answers only once all four appends are on the wire: they must not wait for each other");
    let outcomes: Vec<_> = outcomes.into_iter().map(|outcome| outcome.unwrap()).collect();
    // In request order, whatever order the replies came in, and nothing after the
    // conflict: openraft resumes from what the follower acknowledged.
    assert_eq!(
        outcomes,
        vec![
            Ok(Some(log_id::<TypeConfig>(1, 1, 1))),
            Ok(Some(log_id::<TypeConfig>(1, 1, 2))),
            Err(StreamAppendError::Conflict(log_id::<TypeConfig>(1, 1, 2))),
        ]
    );
}
