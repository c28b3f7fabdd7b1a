//! `shoal stream create|list|describe|delete`.

use std::time::Duration;

use shoal_client::ShoalClient;

use crate::cli::StreamCommand;

pub async fn run(endpoint: &str, command: StreamCommand) -> anyhow::Result<()> {
    let client = ShoalClient::connect(endpoint).await?;
    match command {
        StreamCommand::Create { name, shards } => {
            client.create_stream(&name, shards).await?;
            client.wait_for_active(&name, Duration::from_secs(30)).await?;
            println!("stream {name} is ACTIVE with {shards} shard(s)");
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
        StreamCommand::Delete { name } => {
            client.delete_stream(&name).await?;
            println!("stream {name} is being deleted");
        }
    }
    Ok(())
}
