//! Letting the disk and the servers settle between runs.
//!
//! The systems under test share this machine's disk, and NATS 2.9 acknowledges
//! before it fsyncs: a NATS run leaves its writes in the page cache, and the
//! kernel writes them back later — during the next run, Shoal's, whose every
//! acknowledgement waits for an fsync. On a machine where both ran one after the
//! other, the one-shard Shoal run that followed NATS's 64 KiB run stalled for one
//! to three seconds; alone it did not. So before each run the benchmark asks the
//! kernel to write everything back (`sync`) and waits for it, and each run starts
//! on a quiet disk.

use std::time::{Duration, Instant};

use super::cpu;

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

/// Servers whose processes use less than this many cores are at rest.
const RESTING_CORES: f64 = 0.15;
/// How often the servers' CPU is read while waiting for them to rest.
const SETTLE_WINDOW: Duration = Duration::from_secs(1);

/// Waits until the servers (`pids`) rest: less than [`RESTING_CORES`] over one
/// [`SETTLE_WINDOW`], for at most `limit`; a run starts after it regardless.
///
/// A run that follows a max-throughput run could start while the servers still
/// work off the last one (memtable flushes and compactions, the deleted stream's
/// data being dropped), and a latency run would then measure that backlog, not
/// its own workload. (In the nineteenth session's `compare.sh` runs the servers
/// were always at rest already: docs/performance.md.) Without pids there is
/// nothing to read and nothing to wait for.
pub async fn settle_servers(pids: &[u32], limit: Duration) {
    if pids.is_empty() || limit.is_zero() {
        return;
    }
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < limit {
        let Some(used) = cpu::cores_over(pids, SETTLE_WINDOW).await else { return };
        last = Some(used);
        if used < RESTING_CORES {
            break;
        }
    }
    let took = started.elapsed();
    match last {
        Some(used) if used >= RESTING_CORES => eprintln!(
            "   (the servers did not come to rest in {:.0} s: still {used:.2} cores; running anyway)",
            took.as_secs_f64()
        ),
        _ if took > SETTLE_WINDOW + SETTLE_WINDOW / 2 => {
            eprintln!("   (waited {:.1} s for the servers to come to rest)", took.as_secs_f64())
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn servers_that_cannot_be_read_or_a_zero_limit_do_not_hold_a_run() {
        let started = Instant::now();
        settle_servers(&[u32::MAX], Duration::from_secs(60)).await;
        settle_servers(&[std::process::id()], Duration::ZERO).await;
        settle_servers(&[], Duration::from_secs(60)).await;
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_resting_server_is_waited_for_one_window() {
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let started = Instant::now();
        settle_servers(&[sleeper.id()], Duration::from_secs(30)).await;
        let took = started.elapsed();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert!(took >= SETTLE_WINDOW, "the servers' CPU is read over a window: {took:?}");
        assert!(took < Duration::from_secs(25), "a resting server does not hold the run: {took:?}");
    }
}
