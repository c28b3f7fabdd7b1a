//! Letting the disk settle between runs.
//!
//! The systems under test share this machine's disk, and NATS 2.9 acknowledges
//! before it fsyncs: a NATS run leaves its writes in the page cache, and the
//! kernel writes them back later — during the next run, Shoal's, whose every
//! acknowledgement waits for an fsync. On a machine where both ran one after the
//! other, the one-shard Shoal run that followed NATS's 64 KiB run stalled for one
//! to three seconds; alone it did not. So before each run the benchmark asks the
//! kernel to write everything back (`sync`) and waits for it, and each run starts
//! on a quiet disk.

use std::time::Instant;

/// Writes back every dirty page of the machine (`sync`) and reports how long it
/// took. A failure is reported and the benchmark goes on.
pub async fn settle_disk() {
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await;
    match status {
        Ok(Ok(status)) if status.success() => {
            let took = started.elapsed();
            if took.as_millis() >= 100 {
                eprintln!("   (the disk settled: writing back dirty pages took {:.1} s)", took.as_secs_f64());
            }
        }
        Ok(Ok(status)) => eprintln!("   (could not settle the disk: `sync` exited with {status})"),
        Ok(Err(error)) => eprintln!("   (could not settle the disk: {error})"),
        Err(error) => eprintln!("   (could not settle the disk: {error})"),
    }
}
