//! CPU time over a run's measurement window: of the system under test (the
//! processes given by `--shoal-pids` / `--nats-pids`) and of the benchmark itself.
//! On a machine the load generator shares with the servers, throughput alone
//! hides how much of the machine each system took to reach it.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Clock ticks per second of the times in `/proc/PID/stat` (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// Cores used over the measurement window; `None` where a process could not be
/// read (not given, gone, or not Linux).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    /// The system under test: all of its processes together.
    pub server_cores: Option<f64>,
    /// This benchmark process (producers and consumers).
    pub client_cores: Option<f64>,
}

/// Reads the CPU time of `server_pids` and of this process at `from` and at
/// `until`, and returns the cores each used in between.
pub async fn measure(server_pids: Vec<u32>, from: Instant, until: Instant) -> CpuUse {
    tokio::time::sleep_until(from).await;
    let started = Instant::now();
    let (server_before, client_before) = (server_ticks(&server_pids), own_ticks());
    tokio::time::sleep_until(until).await;
    let elapsed = started.elapsed();
    let (server_after, client_after) = (server_ticks(&server_pids), own_ticks());
    let cores = |before: Option<u64>, after: Option<u64>| Some(cores(before?, after?, elapsed));
    CpuUse { server_cores: cores(server_before, server_after), client_cores: cores(client_before, client_after) }
}

/// Cores `pids` used together over the next `window`; `None` if one cannot be read.
pub async fn cores_over(pids: &[u32], window: Duration) -> Option<f64> {
    let started = Instant::now();
    let before = server_ticks(pids)?;
    tokio::time::sleep(window).await;
    let after = server_ticks(pids)?;
    Some(cores(before, after, started.elapsed()))
}

/// User + system ticks of all of `pids` so far; `None` if there are none or one
/// cannot be read.
fn server_ticks(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| process_ticks(&format!("/proc/{pid}/stat"))).sum()
}

fn own_ticks() -> Option<u64> {
    process_ticks("/proc/self/stat")
}

fn process_ticks(path: &str) -> Option<u64> {
    parse_ticks(&std::fs::read_to_string(path).ok()?)
}

/// utime + stime, fields 14 and 15 of a `/proc/PID/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its
/// last `)`: field 3 comes first there.
fn parse_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

fn cores(before: u64, after: u64, elapsed: Duration) -> f64 {
    after.saturating_sub(before) as f64 / TICKS_PER_SEC / elapsed.as_secs_f64().max(1e-3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_user_plus_system_even_when_the_name_holds_parentheses() {
        let stat = "4242 (shoal (node) x) S 1 4242 4242 0 -1 4194560 1500 0 0 0 730 215 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_ticks(stat), Some(945));
        assert_eq!(parse_ticks("4242 (cut short) S 1"), None);
        assert_eq!(parse_ticks("garbage"), None);
    }

    #[test]
    fn cores_are_ticks_per_second_of_wall_time() {
        assert!((cores(1_000, 1_300, Duration::from_secs(2)) - 1.5).abs() < 1e-9);
        assert_eq!(cores(500, 400, Duration::from_secs(1)), 0.0, "a counter never runs backwards");
    }

    #[test]
    fn this_process_can_be_read_and_missing_ones_cannot() {
        assert!(own_ticks().is_some());
        assert_eq!(server_ticks(&[]), None);
        assert_eq!(server_ticks(&[u32::MAX]), None);
    }
}
