//! `shoal put`: one record per line, batched into PutRecords calls.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use shoal_client::producer::{Producer, ProducerConfig, Sent};
use shoal_client::{Record, ShoalClient};
use shoal_types::limits::MAX_RECORDS_PER_PUT;

use crate::cli::PutArgs;

pub async fn run(endpoint: &str, args: PutArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_RECORDS_PER_PUT).contains(&args.batch),
        "--batch must be between 1 and {MAX_RECORDS_PER_PUT}"
    );
    let client = super::connect::connect(endpoint).await?;
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
    let producer = args.aggregate.then(|| {
        let config = ProducerConfig { aggregate: true, max_attempts: 8, ..Default::default() };
        Producer::start(client.clone(), &args.stream, config)
    });
    let mut acks = Vec::new();
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
        if let Some(producer) = &producer {
            acks.push(producer.send(&key, data.into_bytes()).await?);
            if acks.len() >= 10_000 {
                let (ok, bad) = settle(&mut acks).await;
                sent += ok;
                failed += bad;
            }
            continue;
        }
        batch.push(Record { data: data.into_bytes().into(), partition_key: key, explicit_hash_key: None });
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
    let (ok, bad) = settle(&mut acks).await;
    sent += ok;
    failed += bad;
    if let Some(producer) = producer {
        producer.close().await;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    eprintln!("put {sent} record(s) into {}", args.stream);
    anyhow::ensure!(failed == 0, "{failed} record(s) failed");
    Ok(())
}

/// Waits for the producer's acknowledgements: `(stored, failed)`.
async fn settle<F: std::future::Future<Output = shoal_client::ShoalResult<Sent>>>(acks: &mut Vec<F>) -> (u64, u64) {
    let (mut ok, mut bad) = (0, 0);
    for ack in acks.drain(..) {
        match ack.await {
            Ok(_) => ok += 1,
            Err(error) => {
                tracing::warn!(%error, "record not stored");
                bad += 1;
            }
        }
    }
    (ok, bad)
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
