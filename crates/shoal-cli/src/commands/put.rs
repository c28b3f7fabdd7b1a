//! `shoal put`: one record per line, batched into PutRecords calls.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use shoal_client::{Record, ShoalClient};
use shoal_types::limits::MAX_RECORDS_PER_PUT;

use crate::cli::PutArgs;

pub async fn run(endpoint: &str, args: PutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_RECORDS_PER_PUT).contains(&args.batch),
        "--batch must be between 1 and {MAX_RECORDS_PER_PUT}"
    );
    let client = ShoalClient::connect(endpoint).await?;
    let (reader, total_bytes): (Box<dyn BufRead>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let size = file.metadata().map(|m| m.len()).ok();
            (Box::new(std::io::BufReader::new(file)), size)
        }
        None => (Box::new(std::io::BufReader::new(std::io::stdin())), None),
    };
    let progress = if std::io::stderr().is_terminal() {
        let bar = match total_bytes {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {bytes} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        Some(bar)
    } else {
        None
    };
    let mut batch: Vec<Record> = Vec::with_capacity(args.batch);
    let (mut sent, mut failed) = (0u64, 0u64);
    for line in reader.lines() {
        let line = line.context("reading input")?;
        if let Some(bar) = &progress {
            bar.inc(line.len() as u64 + 1);
        }
        let (key, data) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((key, data)) => (key.to_string(), data.to_string()),
                None => anyhow::bail!("line {} has no key separator {sep:?}", sent + failed + batch.len() as u64 + 1),
            },
            None => (format!("{:032x}", rand::random::<u128>()), line),
        };
        batch.push(Record { data: data.into_bytes(), partition_key: key, explicit_hash_key: None });
        if batch.len() == args.batch {
            let (ok, bad) = flush(&client, &args.stream, &mut batch).await?;
            sent += ok;
            failed += bad;
            if let Some(bar) = &progress {
                bar.set_message(format!("{sent} records"));
            }
        }
    }
    let (ok, bad) = flush(&client, &args.stream, &mut batch).await?;
    sent += ok;
    failed += bad;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    eprintln!("put {sent} record(s) into {}", args.stream);
    anyhow::ensure!(failed == 0, "{failed} record(s) failed");
    Ok(())
}

/// Sends the batch, retrying records that failed on their own, and empties it.
async fn flush(client: &ShoalClient, stream: &str, batch: &mut Vec<Record>) -> anyhow::Result<(u64, u64)> {
    let mut pending = std::mem::take(batch);
    let mut sent = 0u64;
    for attempt in 0..8u64 {
        if pending.is_empty() {
            break;
        }
        if attempt > 0 {
            // Records refused for throughput: give the shard's budget time to refill.
            tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
        }
        let response = client.put_records(stream, pending.clone()).await?;
        let mut retry = Vec::new();
        for (record, result) in pending.into_iter().zip(response.records) {
            if result.error_code.is_empty() {
                sent += 1;
            } else {
                retry.push(record);
            }
        }
        pending = retry;
    }
    Ok((sent, pending.len() as u64))
}
