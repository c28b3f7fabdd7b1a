//! Raft RPCs on the wire: bincode inside the `RaftTransport` gRPC service, and the
//! code that hands a received RPC to the local group.

use bytes::Bytes;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::log_store::{decode, encode};
use crate::type_config::{GroupRaft, Snapshot, SnapshotMeta, TypeConfig, Vote};

#[derive(Serialize, Deserialize)]
pub enum RaftRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    TransferLeader(TransferLeaderRequest<TypeConfig>),
}

impl RaftRequest {
    /// The request's bincode. An AppendEntries request reuses each command's kept
    /// encoding ([`crate::entry_codec`]); the bytes are serde's all the same.
    pub fn encode(&self) -> std::io::Result<Vec<u8>> {
        match self {
            RaftRequest::Append(request) => crate::entry_codec::encode_append(request),
            other => encode(other),
        }
    }

    /// Decodes a request; an AppendEntries request's commands keep the bytes they
    /// came in, and their records' data, as slices of one copy of `bytes`.
    ///
    /// The copy is the request's own buffer: `bytes` is a slice of the whole
    /// batch that carried it (messages of every group bound for this node, up to
    /// megabytes), and a follower keeps its recent entries for a while after it
    /// applies them. Sliced from the batch, each would keep the whole batch alive;
    /// sliced from the copy, an entry keeps only its own group's message. (One copy
    /// per message, where serde's decoder made one per record.)
    pub fn decode(bytes: &Bytes) -> std::io::Result<Self> {
        match bytes.first_chunk::<4>() {
            Some(variant) if u32::from_le_bytes(*variant) == crate::entry_codec::APPEND_REQUEST => {
                crate::entry_codec::decode_append(&Bytes::copy_from_slice(bytes), 4).map(RaftRequest::Append)
            }
            _ => decode(bytes),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub enum RaftResponse {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    Snapshot(SnapshotResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
}

impl RaftResponse {
    pub fn decode(bytes: &[u8]) -> std::io::Result<Self> {
        decode(bytes)
    }
}

/// Runs a received RPC against the local group and encodes its outcome.
pub async fn handle(raft: &GroupRaft, request: RaftRequest) -> Result<Vec<u8>, String> {
    let response = match request {
        RaftRequest::Append(rpc) => {
            raft.append_entries(rpc).await.map(RaftResponse::Append).map_err(|e| e.to_string())?
        }
        RaftRequest::Vote(rpc) => raft.vote(rpc).await.map(RaftResponse::Vote).map_err(|e| e.to_string())?,
        RaftRequest::PreVote(rpc) => raft.pre_vote(rpc).await.map(RaftResponse::Vote).map_err(|e| e.to_string())?,
        RaftRequest::Snapshot { vote, meta, data } => raft
            .install_full_snapshot(vote, Snapshot { meta, snapshot: data })
            .await
            .map(RaftResponse::Snapshot)
            .map_err(|e| e.to_string())?,
        RaftRequest::TransferLeader(req) => {
            raft.handle_transfer_leader(req).await.map(RaftResponse::TransferLeader).map_err(|e| e.to_string())?
        }
    };
    encode(&response).map_err(|e| e.to_string())
}
