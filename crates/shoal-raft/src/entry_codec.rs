//! The bincode of log entries and of AppendEntries requests, built around each
//! command's kept encoding ([`LoggedCommand::encoded`]) rather than by walking
//! its records again.
//!
//! bincode lays a struct out as its fields one after the other, an enum as its
//! variant's index (`u32`, little-endian) and then the variant's fields, and a
//! `Vec` as its length (`u64`) and then its items. So an entry is its log id,
//! the payload's variant and the command's bytes; an AppendEntries request is
//! its vote, the previous log id, the entries and the leader's commit. The tests
//! hold these functions to serde's own encoding of the same values, byte for
//! byte, for every payload kind: the log on disk and the messages on the wire
//! are what they were.
//!
//! Decoding goes the other way round: a command that carries records is read by
//! [`crate::command_decoder`], so each record's data is a slice of the received
//! message (or of the entry read back from the log), not a copy, and the command
//! keeps its own bytes as a slice too.

use std::sync::Arc;

use bytes::Bytes;
use openraft::EntryPayload;
use openraft::raft::AppendEntriesRequest;

use crate::command_decoder::decode_command;
use crate::logged_command::LoggedCommand;
use crate::type_config::{Entry, LogId, TypeConfig};

/// `EntryPayload::Normal`'s variant index.
const NORMAL_PAYLOAD: u32 = 1;
/// `RaftRequest::Append`'s variant index.
pub(crate) const APPEND_REQUEST: u32 = 0;

fn io_error(error: bincode::Error) -> std::io::Error {
    std::io::Error::other(format!("encode failed: {error}"))
}

fn put<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> std::io::Result<()> {
    bincode::serialize_into(out, value).map_err(io_error)
}

/// An entry on its way to bytes: a command's encoding is fetched (or made) once.
enum Payload<'a> {
    Command(Bytes),
    /// A blank or membership entry: serde writes its payload.
    Other(&'a Entry),
}

impl<'a> Payload<'a> {
    fn of(entry: &'a Entry) -> std::io::Result<Self> {
        Ok(match &entry.payload {
            EntryPayload::Normal(command) => Payload::Command(command.encoded()?),
            _ => Payload::Other(entry),
        })
    }

    /// About how many bytes the entry takes.
    fn size(&self) -> usize {
        match self {
            Payload::Command(bytes) => bytes.len() + 64,
            Payload::Other(_) => 256,
        }
    }
}

/// Appends the bincode of the entry at `log_id` with `payload` to `out`.
fn put_entry(out: &mut Vec<u8>, log_id: &LogId, payload: &Payload<'_>) -> std::io::Result<()> {
    put(out, log_id)?;
    match payload {
        Payload::Command(bytes) => {
            out.extend_from_slice(&NORMAL_PAYLOAD.to_le_bytes());
            out.extend_from_slice(bytes);
            Ok(())
        }
        Payload::Other(entry) => put(out, &entry.payload),
    }
}

/// The bincode of `entry`, as the log stores it.
pub fn encode_entry(entry: &Entry) -> std::io::Result<Vec<u8>> {
    let payload = Payload::of(entry)?;
    let mut out = Vec::with_capacity(payload.size());
    put_entry(&mut out, &entry.log_id, &payload)?;
    Ok(out)
}

/// The bincode of `RaftRequest::Append(request)`.
pub(crate) fn encode_append(request: &AppendEntriesRequest<TypeConfig>) -> std::io::Result<Vec<u8>> {
    let payloads = request.entries.iter().map(Payload::of).collect::<std::io::Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(128 + payloads.iter().map(Payload::size).sum::<usize>());
    out.extend_from_slice(&APPEND_REQUEST.to_le_bytes());
    put(&mut out, &request.vote)?;
    put(&mut out, &request.prev_log_id)?;
    put(&mut out, &(request.entries.len() as u64))?;
    for (entry, payload) in request.entries.iter().zip(&payloads) {
        put_entry(&mut out, &entry.log_id, payload)?;
    }
    put(&mut out, &request.leader_commit)?;
    Ok(out)
}

fn undecodable(error: bincode::Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("decode failed: {error}"))
}

/// Decodes the next value of `input` and moves past it. (bincode's encoding is
/// canonical, so the value took exactly its encoded size; reading from the slice
/// keeps bincode's fast path, which a reader that counted bytes would lose.)
pub(crate) fn take<T: serde::de::DeserializeOwned + serde::Serialize>(input: &mut &[u8]) -> std::io::Result<T> {
    let value: T = bincode::deserialize(input).map_err(undecodable)?;
    let size = bincode::serialized_size(&value).map_err(undecodable)? as usize;
    *input = input.get(size..).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "decode failed: a value ran past the message's end")
    })?;
    Ok(value)
}

/// Decodes the entry at the start of `input`, which is the rest of `message`,
/// and moves past it. A command's records share `message`'s buffer, and the
/// command keeps its bytes (a slice of `message`) for a log write or a send.
fn take_entry<'a>(message: &'a Bytes, input: &mut &'a [u8]) -> std::io::Result<Entry> {
    let log_id = take(input)?;
    let before_payload = *input;
    let variant: u32 = take(input)?;
    let payload = if variant == NORMAL_PAYLOAD {
        let from = message.len() - input.len();
        let (command, end) = decode_command(message, from)?;
        *input = message.get(end..).unwrap_or_default();
        EntryPayload::Normal(Arc::new(LoggedCommand::with_encoding(command, message.slice(from..end))))
    } else {
        *input = before_payload;
        take(input)?
    };
    Ok(Entry { log_id, payload })
}

/// Decodes an entry as the log stores it (see [`take_entry`]).
pub fn decode_entry(bytes: &Bytes) -> std::io::Result<Entry> {
    let mut input: &[u8] = bytes;
    take_entry(bytes, &mut input)
}

/// Decodes an AppendEntries request whose fields start at `start` of `message`:
/// each command keeps the bytes it was decoded from (a slice of `message`, no
/// copy), so the follower's log write does not encode it again.
pub(crate) fn decode_append(message: &Bytes, start: usize) -> std::io::Result<AppendEntriesRequest<TypeConfig>> {
    let mut rest = message.get(start..).unwrap_or_default();
    let input = &mut rest;
    let vote = take(input)?;
    let prev_log_id = take(input)?;
    let count: u64 = take(input)?;
    // Each entry takes at least a log id's bytes: a length beyond what is left is garbage.
    let mut entries = Vec::with_capacity((count as usize).min(input.len() / 16));
    for _ in 0..count {
        entries.push(take_entry(message, input)?);
    }
    let leader_commit = take(input)?;
    Ok(AppendEntriesRequest { vote, prev_log_id, entries, leader_commit })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::Membership;
    use shoal_types::{NodeInfo, Record};

    use super::*;
    use crate::command::{BatchOrigin, Command, RecordBatch};
    use crate::log_store::{decode, encode};
    use crate::type_config::Vote;
    use crate::wire::RaftRequest;

    fn log_id(term: u64, index: u64) -> LogId {
        openraft::testing::log_id::<TypeConfig>(term, 1, index)
    }

    fn entries() -> Vec<Entry> {
        let records = (0..3)
            .map(|i| Record {
                partition_key: format!("k{i}"),
                explicit_hash_key: (i == 1).then(|| "42".to_string()),
                data: vec![i as u8; 100].into(),
            })
            .collect();
        let batch = RecordBatch { records: Arc::new(records), arrival_millis: 9, origin: BatchOrigin::default() };
        let node = NodeInfo { addr: "127.0.0.1:1".into(), zone: "az-a".into() };
        let membership = Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, node)])).unwrap();
        vec![
            Entry { log_id: log_id(2, 5), payload: EntryPayload::Blank },
            Entry { log_id: log_id(2, 6), payload: EntryPayload::Normal(Arc::new(Command::Append(batch).into())) },
            Entry { log_id: log_id(2, 7), payload: EntryPayload::Membership(membership) },
            Entry { log_id: log_id(3, 8), payload: EntryPayload::Normal(Arc::new(Command::SealShard(4).into())) },
        ]
    }

    #[test]
    fn an_entry_is_the_bytes_serde_makes_of_it_whatever_its_payload() {
        for entry in entries() {
            assert_eq!(encode_entry(&entry).unwrap(), encode(&entry).unwrap(), "{entry:?}");
            let back: Entry = decode(&encode_entry(&entry).unwrap()).unwrap();
            assert_eq!(back, entry);
            let bytes = Bytes::from(encode_entry(&entry).unwrap());
            let ours = decode_entry(&bytes).unwrap();
            assert_eq!(ours, entry);
            if let EntryPayload::Normal(command) = &ours.payload {
                assert_eq!(encode_entry(&ours).unwrap(), bytes, "the kept bytes are the entry's command");
                assert_eq!(command.encoded().unwrap().as_ptr_range().end, bytes.as_ptr_range().end, "not a copy");
            }
        }
    }

    #[test]
    fn an_append_request_is_the_bytes_serde_makes_of_it_and_decodes_with_each_commands_bytes() {
        for entries in [entries(), vec![]] {
            let request = AppendEntriesRequest::<TypeConfig> {
                vote: Vote::new_committed(3, 1),
                prev_log_id: Some(log_id(2, 4)),
                entries,
                leader_commit: Some(log_id(2, 3)),
            };
            let ours = encode_append(&request).unwrap();
            let theirs = encode(&RaftRequest::Append(request.clone())).unwrap();
            assert_eq!(ours, theirs);
            let decoded = decode_append(&Bytes::from(ours), 4).unwrap();
            assert_eq!(decoded.entries, request.entries);
            assert_eq!(
                (decoded.vote, decoded.prev_log_id, decoded.leader_commit),
                (request.vote, request.prev_log_id, request.leader_commit)
            );
            for (entry, original) in decoded.entries.iter().zip(&request.entries) {
                if let (EntryPayload::Normal(got), EntryPayload::Normal(sent)) = (&entry.payload, &original.payload) {
                    assert_eq!(got.encoded().unwrap(), encode(&**sent).unwrap().as_slice());
                }
            }
        }
    }

    #[test]
    fn a_received_request_keeps_its_own_copy_not_the_batch_that_carried_it() {
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: None,
            entries: entries(),
            leader_commit: None,
        };
        let mut batch = vec![7u8; 100];
        batch.extend(encode_append(&request).unwrap());
        batch.extend([7u8; 100]);
        let batch = Bytes::from(batch);
        let RaftRequest::Append(decoded) = RaftRequest::decode(&batch.slice(100..batch.len() - 100)).unwrap() else {
            panic!("not an append request")
        };
        assert_eq!(decoded.entries, request.entries);
        let whole = batch.as_ptr_range();
        let mut records = 0;
        for entry in &decoded.entries {
            let EntryPayload::Normal(command) = &entry.payload else { continue };
            assert!(!whole.contains(&command.encoded().unwrap().as_ptr()), "the kept bytes hold the batch");
            if let Command::Append(batch) = &***command {
                for record in batch.records.iter() {
                    assert!(!whole.contains(&record.data.as_ptr()), "a record holds the batch");
                    records += 1;
                }
            }
        }
        assert_eq!(records, 3);
    }

    #[test]
    fn a_truncated_or_garbled_append_request_fails_to_decode() {
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: None,
            entries: entries(),
            leader_commit: None,
        };
        let bytes = encode_append(&request).unwrap();
        for cut in [4, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode_append(&Bytes::copy_from_slice(&bytes[..cut]), 4).is_err(), "cut at {cut}");
        }
        let mut huge_count = bytes.clone();
        // The entry count sits after the vote and the (absent) previous log id.
        let at = 4 + encode(&request.vote).unwrap().len() + 1;
        huge_count[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_append(&Bytes::from(huge_count), 4).is_err());
    }
}
