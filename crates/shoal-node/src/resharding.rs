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
use shoal_types::scaling::{ScalingStep, uniform_scaling_steps};
use shoal_types::{ErrorCode, HashKey, Shard, ShardId, ShoalError, ShoalResult, Stream};

use crate::meta_writer;
use crate::node::Node;
use crate::shard_writer::seal;

/// SplitShard as users call it: provisioned streams only.
pub async fn split_shard(
    node: &Node,
    stream_name: &str,
    shard_id: &str,
    new_starting_hash_key: &str,
) -> ShoalResult<()> {
    refuse_on_demand(&*node.writable_stream(stream_name).await?)?;
    split(node, stream_name, shard_id, new_starting_hash_key).await
}

/// MergeShards as users call it: provisioned streams only.
pub async fn merge_shards(node: &Node, stream_name: &str, shard_id: &str, adjacent_shard_id: &str) -> ShoalResult<()> {
    refuse_on_demand(&*node.writable_stream(stream_name).await?)?;
    merge(node, stream_name, shard_id, adjacent_shard_id).await
}

/// Splits `shard_id` at `new_starting_hash_key`, whatever the stream's mode.
pub async fn split(node: &Node, stream_name: &str, shard_id: &str, new_starting_hash_key: &str) -> ShoalResult<()> {
    let shard_index = ShardId::parse(shard_id)?.index();
    let key = HashKey::parse_explicit(new_starting_hash_key)?;
    // A stream still being created is waited for, as writes wait for it.
    let stream = node.writable_stream(stream_name).await?;
    let parent = node.meta_snapshot().open_shard(stream_name, shard_index)?.clone();
    check_split_key(&parent, key)?;
    let sealed_end = seal(node, &stream, &parent).await?;
    let command = MetaCommand::SplitShard {
        stream: stream_name.to_string(),
        shard_index,
        new_starting_hash_key: key.to_string(),
        sealed_end,
        now_millis: shoal_types::now_millis(),
    };
    meta_writer::propose_and_apply_locally(node, command).await?;
    tracing::info!(stream = %stream_name, shard = %parent.id, "shard split");
    Ok(())
}

/// Merges two adjacent shards, whatever the stream's mode.
pub async fn merge(node: &Node, stream_name: &str, shard_id: &str, adjacent_shard_id: &str) -> ShoalResult<()> {
    let shard_index = ShardId::parse(shard_id)?.index();
    let adjacent_index = ShardId::parse(adjacent_shard_id)?.index();
    // A stream still being created is waited for, as writes wait for it.
    let stream = node.writable_stream(stream_name).await?;
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
        now_millis: shoal_types::now_millis(),
    };
    meta_writer::propose_and_apply_locally(node, command).await?;
    tracing::info!(stream = %stream_name, shard = %shard.id, adjacent = %adjacent.id, "shards merged");
    Ok(())
}

/// Scales the stream to `target` open shards the way Kinesis does (see
/// [`shoal_types::scaling`]): split every open shard, then merge adjacent pairs
/// in passes. Shards of one step are resharded concurrently. Returns the open
/// count before.
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
    for step in uniform_scaling_steps(current, target) {
        let mut open: Vec<Shard> = node.stream(stream_name).await?.open_shards().cloned().collect();
        open.sort_by_key(|s| s.hash_key_range.start);
        match step {
            ScalingStep::SplitAll => {
                let splits = open.iter().map(|shard| async move {
                    let range = &shard.hash_key_range;
                    let middle = range.start.0 + (range.end.0 - range.start.0) / 2 + 1;
                    split(node, stream_name, &shard.id.to_string(), &middle.to_string()).await
                });
                futures::future::try_join_all(splits).await?;
            }
            ScalingStep::MergePairs(pairs) => {
                let merges = open.chunks_exact(2).take(pairs as usize).map(|pair| async move {
                    merge(node, stream_name, &pair[0].id.to_string(), &pair[1].id.to_string()).await
                });
                futures::future::try_join_all(merges).await?;
            }
        }
    }
    Ok(current)
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
