//! `shoal get` (everything, then exit) and `shoal tail` (follow).

use std::io::Write;
use std::time::Duration;

use shoal_client::StoredRecord;

use crate::cli::{GetArgs, TailArgs};

fn print(out: &mut impl Write, shard: &str, record: &StoredRecord, verbose: bool) -> std::io::Result<()> {
    if verbose {
        write!(out, "{shard}\t{}\t{}\t", record.sequence_number, record.partition_key)?;
    }
    out.write_all(&record.data)?;
    out.write_all(b"\n")
}

pub async fn get(endpoint: &str, args: GetArgs) -> anyhow::Result<()> {
    let client = super::connect::connect(endpoint).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (shard, records) in client.read_stream(&args.stream).await? {
        for record in &records {
            print(&mut out, &shard, record, args.verbose)?;
        }
    }
    out.flush()?;
    Ok(())
}

pub async fn tail(endpoint: &str, args: TailArgs) -> anyhow::Result<()> {
    let client = super::connect::connect(endpoint).await?;
    let start = if args.from_start { "TRIM_HORIZON" } else { "LATEST" };
    let mut cursors = Vec::new();
    for shard in client.list_shards(&args.stream).await? {
        let iterator = client.get_shard_iterator(&args.stream, &shard.shard_id, start, None, None).await?;
        cursors.push((shard.shard_id, iterator));
    }
    loop {
        let mut got_any = false;
        for (shard, iterator) in cursors.iter_mut() {
            let page = client.get_records(iterator, 10_000).await?;
            {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                for record in &page.records {
                    print(&mut out, shard, record, args.verbose)?;
                }
                out.flush()?;
            }
            got_any |= !page.records.is_empty();
            if !page.next_shard_iterator.is_empty() {
                *iterator = page.next_shard_iterator;
            }
        }
        if !got_any {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = super::shutdown_signal() => return Ok(()),
            }
        }
    }
}
