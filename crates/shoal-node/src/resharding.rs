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
use shoal_types::{HashKey, ShardId, ShoalResult};

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
    let stream = node.stream(stream_name).await?;
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
    let stream = node.stream(stream_name).await?;
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
