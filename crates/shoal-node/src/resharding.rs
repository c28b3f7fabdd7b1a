//! Splitting and merging shards.
//!
//! Resharding never splits a Raft group. The parent shard's group first appends a
//! seal entry — its position ends the shard, and appends after it are refused —
//! then the metadata group closes the parent at that position and opens the
//! children as new groups. Writers refused by a sealed parent route their records
//! again once the children appear. Everything is checked before the seal, so a
//! bad request seals nothing; a request that dies between seal and metadata
//! change is completed by repeating it (sealing twice keeps the first seal).

use shoal_raft::MetaCommand;
use shoal_raft::meta_state::{check_adjacent, check_split_key};
use shoal_types::limits::MAX_SHARDS_PER_STREAM;
use shoal_types::{ErrorCode, HashKey, Shard, ShardId, ShoalError, ShoalResult, Stream};

use crate::meta_writer;
use crate::node::Node;
use crate::shard_writer::seal;

pub async fn split_shard(
    node: &Node,
    stream_name: &str,
    shard_id: &str,
    new_starting_hash_key: &str,
) -> ShoalResult<()> {
    let shard_index = ShardId::parse(shard_id)?.index();
    let key = HashKey::parse_explicit(new_starting_hash_key)?;
    // A stream still being created is waited for, as writes wait for it.
    let stream = node.writable_stream(stream_name).await?;
    refuse_on_demand(&stream)?;
    let parent = node.meta_snapshot().open_shard(stream_name, shard_index)?.clone();
    check_split_key(&parent, key)?;
    let sealed_end = seal(node, &stream, &parent).await?;
    let command = MetaCommand::SplitShard {
        stream: stream_name.to_string(),
        shard_index,
        new_starting_hash_key: key.to_string(),
        sealed_end,
    };
    meta_writer::propose_and_apply_locally(node, command).await?;
    tracing::info!(stream = %stream_name, shard = %parent.id, "shard split");
    Ok(())
}

pub async fn merge_shards(node: &Node, stream_name: &str, shard_id: &str, adjacent_shard_id: &str) -> ShoalResult<()> {
    let shard_index = ShardId::parse(shard_id)?.index();
    let adjacent_index = ShardId::parse(adjacent_shard_id)?.index();
    // A stream still being created is waited for, as writes wait for it.
    let stream = node.writable_stream(stream_name).await?;
    refuse_on_demand(&stream)?;
    let meta = node.meta_snapshot();
    let shard = meta.open_shard(stream_name, shard_index)?.clone();
    let adjacent = meta.open_shard(stream_name, adjacent_index)?.clone();
    check_adjacent(&shard, &adjacent)?;
    let first_end = seal(node, &stream, &shard).await?;
    let second_end = seal(node, &stream, &adjacent).await?;
    let command = MetaCommand::MergeShards {
        stream: stream_name.to_string(),
        shard_index,
        adjacent_index,
        sealed_ends: (first_end, second_end),
    };
    meta_writer::propose_and_apply_locally(node, command).await?;
    tracing::info!(stream = %stream_name, shard = %shard.id, adjacent = %adjacent.id, "shards merged");
    Ok(())
}

/// Splits the widest open shards or merges the narrowest adjacent pairs, one at a
/// time, until `target` shards are open. Returns the open count before.
pub async fn update_shard_count(node: &Node, stream_name: &str, target: u32) -> ShoalResult<u32> {
    // A stream still being created is waited for, as writes wait for it.
    let stream = node.writable_stream(stream_name).await?;
    refuse_on_demand(&stream)?;
    let current = stream.open_shards().count() as u32;
    let (low, high) = (current.div_ceil(2), current.saturating_mul(2).min(MAX_SHARDS_PER_STREAM));
    if target < low || target > high {
        return Err(ShoalError::invalid_argument(format!(
            "TargetShardCount {target} is invalid for stream {stream_name}: uniform scaling goes from {low} to {high} shards (half to double the {current} open)."
        )));
    }
    loop {
        let stream = node.stream(stream_name).await?;
        let mut open: Vec<Shard> = stream.open_shards().cloned().collect();
        open.sort_by_key(|s| s.hash_key_range.start);
        let width = |s: &Shard| s.hash_key_range.end.0 - s.hash_key_range.start.0;
        match (open.len() as u32).cmp(&target) {
            std::cmp::Ordering::Equal => return Ok(current),
            std::cmp::Ordering::Less => {
                let Some(widest) = open.iter().max_by_key(|s| width(s)) else { return Ok(current) };
                let middle = widest.hash_key_range.start.0 + width(widest) / 2 + 1;
                split_shard(node, stream_name, &widest.id.to_string(), &middle.to_string()).await?;
            }
            std::cmp::Ordering::Greater => {
                let Some(pair) = open.windows(2).min_by_key(|pair| width(&pair[0]).saturating_add(width(&pair[1])))
                else {
                    return Ok(current);
                };
                merge_shards(node, stream_name, &pair[0].id.to_string(), &pair[1].id.to_string()).await?;
            }
        }
    }
}

/// Kinesis reshards only provisioned streams by request.
fn refuse_on_demand(stream: &Stream) -> ShoalResult<()> {
    if stream.settings.mode == "ON_DEMAND" {
        return Err(ShoalError::new(
            ErrorCode::Validation,
            format!(
                "Request is invalid. Stream {} under account {} is in On-Demand mode.",
                stream.name,
                shoal_types::limits::DEFAULT_ACCOUNT_ID
            ),
        ));
    }
    Ok(())
}
