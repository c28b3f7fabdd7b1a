//! Decodes a command's bincode without copying its records' data.
//!
//! serde's bincode decoder copies every record's data into a new buffer of its
//! own: a follower copied each record it received once more (a `memmove` of all
//! the bytes a cluster replicates, twice per entry across the followers), and
//! then walked the decoded command again to learn how many bytes it had taken.
//! The commands that carry records ([`Command::Append`],
//! [`Command::AppendMany`], [`Command::AppendShards`]) are read here by hand,
//! field by field in bincode's layout, and each record's data is a slice of the
//! message it came in ([`Bytes::slice`]: a reference count, no copy). Other
//! commands are few and small, and serde decodes them as before. The tests hold
//! the two decoders to the same values, and to the same refusals of bytes that
//! do not decode.
//!
//! bincode's layout, as the log and the wire have always used it: an enum is
//! its variant's index (`u32`), then the variant's fields; a sequence or a
//! string is its length (`u64`) and then its items; an `Option` is a tag byte
//! (0 or 1) and then the value; integers are little-endian.

use std::sync::Arc;

use bytes::Bytes;
use shoal_types::Record;

use crate::command::{AppendPart, BatchOrigin, CoalescedBatch, Command, RecordBatch, ShardAppend};
use crate::entry_codec::take;

/// The variant indexes of the commands that carry records.
const APPEND: u32 = 1;
const APPEND_MANY: u32 = 3;
const APPEND_SHARDS: u32 = 4;

/// The fewest bytes a record takes: two lengths and an `Option`'s tag.
const MIN_RECORD_BYTES: usize = 8 + 1 + 8;
/// The fewest bytes a part of a coalesced batch takes: its origin (`u128`, `u64`)
/// and its records' count.
const MIN_PART_BYTES: usize = 16 + 8 + 8;
/// The fewest bytes one shard's appends take: the shard, the arrival time and the
/// parts' count.
const MIN_SHARD_APPEND_BYTES: usize = 8 + 8 + 8;

/// Decodes the command whose bincode starts at `start` of `message`. Returns it
/// and where its bytes end.
pub(crate) fn decode_command(message: &Bytes, start: usize) -> std::io::Result<(Command, usize)> {
    let mut reader = Reader { message, at: start };
    let command = match reader.u32()? {
        APPEND => Command::Append(reader.record_batch()?),
        APPEND_MANY => Command::AppendMany(reader.coalesced_batch()?),
        APPEND_SHARDS => {
            let count = reader.count(MIN_SHARD_APPEND_BYTES)?;
            let mut appends = Vec::with_capacity(count);
            for _ in 0..count {
                let shard = reader.u64()?;
                appends.push(ShardAppend { shard, batch: reader.coalesced_batch()? });
            }
            Command::AppendShards(appends)
        }
        _ => {
            reader.at = start;
            reader.serde()?
        }
    };
    Ok((command, reader.at))
}

/// A position in a message, moving forward as values are read.
struct Reader<'a> {
    message: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    /// The next `len` bytes, as positions in the message.
    fn advance(&mut self, len: usize) -> std::io::Result<std::ops::Range<usize>> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.message.len()).ok_or_else(|| {
            invalid(format!(
                "a value of {len} bytes at {} runs past the message's end ({})",
                self.at,
                self.message.len()
            ))
        })?;
        let range = self.at..end;
        self.at = end;
        Ok(range)
    }

    fn array<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let range = self.advance(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.message[range]);
        Ok(out)
    }

    fn u8(&mut self) -> std::io::Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> std::io::Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length of bytes (whether they are there, [`Reader::advance`] checks).
    fn len(&mut self) -> std::io::Result<usize> {
        let len = self.u64()?;
        usize::try_from(len).map_err(|_| invalid(format!("a length of {len} bytes")))
    }

    /// A count of items that each take at least `min_item_bytes`: no more than
    /// what is left could hold (a garbage count must not reserve memory).
    fn count(&mut self, min_item_bytes: usize) -> std::io::Result<usize> {
        let count = self.u64()?;
        let left = self.message.len() - self.at;
        usize::try_from(count)
            .ok()
            .filter(|count| count.saturating_mul(min_item_bytes) <= left)
            .ok_or_else(|| invalid(format!("{count} items with {left} bytes left")))
    }

    /// Bytes shared with the message.
    fn bytes(&mut self) -> std::io::Result<Bytes> {
        let len = self.len()?;
        let range = self.advance(len)?;
        Ok(self.message.slice(range))
    }

    fn string(&mut self) -> std::io::Result<String> {
        let len = self.len()?;
        let range = self.advance(len)?;
        std::str::from_utf8(&self.message[range]).map(str::to_owned).map_err(|e| invalid(format!("a string: {e}")))
    }

    fn optional_string(&mut self) -> std::io::Result<Option<String>> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            tag => Err(invalid(format!("an option's tag is {tag}"))),
        }
    }

    /// A value serde decodes (see [`take`]).
    fn serde<T: serde::de::DeserializeOwned + serde::Serialize>(&mut self) -> std::io::Result<T> {
        let mut input = self.message.get(self.at..).unwrap_or_default();
        let value = take(&mut input)?;
        self.at = self.message.len() - input.len();
        Ok(value)
    }

    fn origin(&mut self) -> std::io::Result<BatchOrigin> {
        self.serde()
    }

    fn records(&mut self) -> std::io::Result<Arc<Vec<Record>>> {
        let count = self.count(MIN_RECORD_BYTES)?;
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let partition_key = self.string()?;
            let explicit_hash_key = self.optional_string()?;
            records.push(Record { partition_key, explicit_hash_key, data: self.bytes()? });
        }
        Ok(Arc::new(records))
    }

    fn record_batch(&mut self) -> std::io::Result<RecordBatch> {
        let records = self.records()?;
        let arrival_millis = self.u64()?;
        Ok(RecordBatch { records, arrival_millis, origin: self.origin()? })
    }

    fn coalesced_batch(&mut self) -> std::io::Result<CoalescedBatch> {
        let arrival_millis = self.u64()?;
        let count = self.count(MIN_PART_BYTES)?;
        let mut parts = Vec::with_capacity(count);
        for _ in 0..count {
            let origin = self.origin()?;
            parts.push(AppendPart { origin, records: self.records()? });
        }
        Ok(CoalescedBatch { arrival_millis, parts })
    }
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("decode failed: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::MetaCommand;
    use crate::log_store::{decode, encode};

    fn records(n: usize, seed: u8) -> Arc<Vec<Record>> {
        Arc::new(
            (0..n)
                .map(|i| Record {
                    partition_key: format!("key-{seed}-{i}-ü"),
                    explicit_hash_key: (i % 2 == 1).then(|| format!("{}", i * 7)),
                    data: vec![seed.wrapping_add(i as u8); i * 13].into(),
                })
                .collect(),
        )
    }

    fn origin(id: u128) -> BatchOrigin {
        BatchOrigin { id, retry_since_millis: (id as u64).wrapping_mul(3) }
    }

    fn commands() -> Vec<Command> {
        let coalesced = |seed: u8| CoalescedBatch {
            arrival_millis: 1_700_000_000_000 + seed as u64,
            parts: vec![
                AppendPart { origin: origin(u128::MAX - seed as u128), records: records(3, seed) },
                AppendPart { origin: origin(0), records: records(0, seed) },
                AppendPart { origin: origin(5), records: records(4, seed + 1) },
            ],
        };
        vec![
            Command::Append(RecordBatch { records: records(5, 1), arrival_millis: 9, origin: origin(77) }),
            Command::Append(RecordBatch { records: records(0, 1), arrival_millis: 0, origin: origin(0) }),
            Command::AppendMany(coalesced(2)),
            Command::AppendMany(CoalescedBatch { arrival_millis: 3, parts: vec![] }),
            Command::AppendShards(vec![
                ShardAppend { shard: 11, batch: coalesced(3) },
                ShardAppend { shard: 12, batch: coalesced(4) },
            ]),
            Command::AppendShards(vec![]),
            Command::Seal,
            Command::SealShard(42),
            Command::Meta(MetaCommand::CreateStream {
                name: "s".into(),
                shard_count: 2,
                retention_hours: 24,
                now_millis: 5,
            }),
        ]
    }

    #[test]
    fn every_command_decodes_to_what_serde_decodes_and_ends_where_its_bytes_end() {
        for command in commands() {
            let mut message = vec![0xAB; 7];
            message.extend_from_slice(&encode(&command).unwrap());
            message.extend_from_slice(&[0xCD; 5]);
            let message = Bytes::from(message);
            let (decoded, end) = decode_command(&message, 7).unwrap();
            assert_eq!(decoded, command);
            assert_eq!(decoded, decode::<Command>(&message[7..]).unwrap());
            assert_eq!(end, message.len() - 5, "{command}");
        }
    }

    #[test]
    fn a_records_data_is_a_slice_of_the_message_not_a_copy() {
        for command in commands() {
            let message = Bytes::from(encode(&command).unwrap());
            let (decoded, _) = decode_command(&message, 0).unwrap();
            let records: Vec<&Record> = match &decoded {
                Command::Append(batch) => batch.records.iter().collect(),
                Command::AppendMany(batch) => batch.parts.iter().flat_map(|p| p.records.iter()).collect(),
                Command::AppendShards(appends) => {
                    appends.iter().flat_map(|a| &a.batch.parts).flat_map(|p| p.records.iter()).collect()
                }
                _ => continue,
            };
            let whole = message.as_ptr_range();
            for record in records.iter().filter(|r| !r.data.is_empty()) {
                assert!(whole.contains(&record.data.as_ptr()), "{command}: {record:?} was copied");
            }
        }
    }

    #[test]
    fn bytes_that_serde_refuses_are_refused_without_a_panic() {
        for command in commands() {
            let bytes = encode(&command).unwrap();
            // Every cut short of the end.
            for cut in 0..bytes.len() {
                let message = Bytes::copy_from_slice(&bytes[..cut]);
                assert!(decode_command(&message, 0).is_err(), "{command} cut at {cut}");
            }
            // Every single byte changed: what decodes must be what serde decodes.
            for at in 0..bytes.len() {
                for flip in [0x01u8, 0x80, 0xFF] {
                    let mut changed = bytes.clone();
                    changed[at] ^= flip;
                    let ours = decode_command(&Bytes::from(changed.clone()), 0);
                    let theirs = bincode::deserialize::<Command>(&changed)
                        .map(|c| (c.clone(), bincode::serialized_size(&c).unwrap() as usize));
                    match (ours, theirs) {
                        (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{command} changed at {at}"),
                        (Err(_), Err(_)) => {}
                        (ours, theirs) => {
                            panic!("{command} changed at {at}: ours {ours:?}, serde's {theirs:?}")
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_garbage_count_is_refused_before_any_memory_is_reserved() {
        let mut message = APPEND.to_le_bytes().to_vec();
        message.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_command(&Bytes::from(message), 0).is_err());
        let mut message = APPEND_SHARDS.to_le_bytes().to_vec();
        message.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode_command(&Bytes::from(message), 0).is_err());
    }
}
