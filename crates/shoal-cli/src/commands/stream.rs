//! `shoal stream create|list|describe|delete`.

use std::time::Duration;

use anyhow::Context;

use crate::cli::StreamCommand;

pub async fn run(endpoint: &str, command: StreamCommand) -> anyhow::Result<()> {
    let client = super::connect::connect(endpoint).await?;
    match command {
        StreamCommand::Create { name, shards, on_demand } => {
            if on_demand {
                client.create_on_demand_stream(&name).await?;
            } else {
                client.create_stream(&name, shards).await?;
            }
            let description = client.wait_for_active(&name, Duration::from_secs(30)).await?;
            let open = description.summary.map(|s| s.open_shard_count).unwrap_or(shards);
            let mode = if on_demand { "ON_DEMAND" } else { "PROVISIONED" };
            println!("stream {name} is ACTIVE with {open} shard(s), {mode}");
        }
        StreamCommand::List => {
            for stream in client.list_streams().await? {
                println!("{}\t{}\t{} shard(s)", stream.stream_name, stream.stream_status, stream.open_shard_count);
            }
        }
        StreamCommand::Describe { name } => {
            let description = client.describe_stream(&name).await?;
            if let Some(summary) = &description.summary {
                println!("name:       {}", summary.stream_name);
                println!("arn:        {}", summary.stream_arn);
                println!("status:     {}", summary.stream_status);
                println!("retention:  {} hours", summary.retention_period_hours);
                println!("open shards: {}", summary.open_shard_count);
            }
            for shard in &description.shards {
                println!(
                    "{}\thash keys {}..{}\tfirst sequence {}",
                    shard.shard_id, shard.starting_hash_key, shard.ending_hash_key, shard.starting_sequence_number
                );
            }
        }
        StreamCommand::Split { name, shard, at } => {
            let at = match at {
                Some(at) => at,
                None => {
                    let shards = client.list_shards(&name).await?;
                    let found = shards.iter().find(|s| s.shard_id == shard).context("no such shard")?;
                    let start: u128 = found.starting_hash_key.parse()?;
                    let end: u128 = found.ending_hash_key.parse()?;
                    (start + (end - start) / 2 + 1).to_string()
                }
            };
            client.split_shard(&name, &shard, &at).await?;
            client.wait_for_active(&name, Duration::from_secs(30)).await?;
            println!("{shard} of {name} split at hash key {at}");
        }
        StreamCommand::Merge { name, shard, adjacent } => {
            client.merge_shards(&name, &shard, &adjacent).await?;
            client.wait_for_active(&name, Duration::from_secs(30)).await?;
            println!("{shard} and {adjacent} of {name} merged");
        }
        StreamCommand::Scale { name, shards } => {
            let before = client.update_shard_count(&name, shards).await?;
            client.wait_for_active(&name, Duration::from_secs(60)).await?;
            println!("{name} scaled from {before} to {shards} open shards");
        }
        StreamCommand::Mode { name, mode } => {
            client.update_stream_mode(&name, &mode).await?;
            println!("{name} is now {mode}");
        }
        StreamCommand::Delete { name } => {
            client.delete_stream(&name).await?;
            println!("stream {name} is being deleted");
        }
    }
    Ok(())
}
