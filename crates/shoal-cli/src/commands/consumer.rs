//! `shoal consumer run|describe`: a consumer application member that prints
//! records, and the state of an application's group.

use std::io::Write;
use std::time::Duration;

use shoal_client::consumer::{Batch, Checkpointer, Consumer, ConsumerConfig, ProcessResult, RecordProcessor};

use crate::cli::ConsumerCommand;

/// Prints each record (optionally with shard, sequence number and key) and
/// checkpoints after every batch.
struct PrintRecords {
    verbose: bool,
}

impl RecordProcessor for PrintRecords {
    async fn process(&self, batch: Batch, checkpointer: Checkpointer) -> ProcessResult {
        {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            // KPL aggregates are unpacked: one line per user record.
            for record in &batch.user_records() {
                if self.verbose {
                    write!(
                        out,
                        "{}\t{}:{}\t{}\t",
                        batch.shard_id, record.sequence_number, record.sub_sequence_number, record.partition_key
                    )?;
                }
                out.write_all(&record.data)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        checkpointer.checkpoint().await?;
        Ok(())
    }
}

pub async fn run(endpoint: &str, command: ConsumerCommand) -> anyhow::Result<()> {
    let client = super::connect::connect(endpoint).await?;
    match command {
        ConsumerCommand::Run { stream, application, member, lease_timeout_secs, latest, push, verbose } => {
            let mut config = ConsumerConfig::new(&application);
            if let Some(member) = member {
                config.member = member;
            }
            config.lease_timeout = Duration::from_secs(lease_timeout_secs.max(1));
            if latest {
                config.start_position = shoal_client::consumer::StartPosition::Latest;
            }
            if push {
                config.delivery = shoal_client::consumer::Delivery::Push;
            }
            let consumer = Consumer::start(client, &stream, config, PrintRecords { verbose }).await?;
            tracing::info!(member = consumer.member(), "consuming; Ctrl-C checkpoints and leaves");
            super::shutdown_signal().await;
            consumer.shutdown().await?;
        }
        ConsumerCommand::Describe { stream, application } => {
            let group = client.describe_group(&stream, &application).await?;
            println!("application {application} on {stream} (lease timeout {} ms)", group.lease_timeout_millis);
            println!("MEMBER\tSHARDS");
            for member in &group.members {
                println!("{}\t{}", member.member, member.shard_ids.join(","));
            }
            println!();
            println!("SHARD\tOWNER\tCHECKPOINT\tSTATE\tLAG (records)\tLAG (ms)");
            for shard in &group.shards {
                let state = if shard.shard_end {
                    "finished"
                } else if shard.waiting_for_parents {
                    "waiting for parents"
                } else if shard.owner.is_empty() {
                    "unowned"
                } else {
                    "leased"
                };
                let (lag_records, lag_millis) = if shard.shard_end {
                    (0, 0)
                } else {
                    client.lag_after(&stream, &shard.shard_id, &shard.checkpoint_sequence_number, 100_000).await?
                };
                let checkpoint =
                    if shard.checkpoint_sequence_number.is_empty() { "-" } else { &shard.checkpoint_sequence_number };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    shard.shard_id,
                    if shard.owner.is_empty() { "-" } else { &shard.owner },
                    checkpoint,
                    state,
                    lag_records,
                    lag_millis
                );
            }
        }
    }
    Ok(())
}
