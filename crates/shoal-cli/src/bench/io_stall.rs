//! How long the whole machine was stalled on I/O during a run's measurement
//! window: Linux's pressure stall information (`/proc/pressure/io`, the `full`
//! line: time in which every task that was not idle waited for I/O).
//!
//! On a machine whose servers share one disk, a slow `fdatasync` stalls every
//! replica at once, and a few such moments set a run's p99 (docs/performance.md,
//! nineteenth session). Reported beside each run, they tell a reader whether a
//! tail came from the system under test or from the disk under it.

use tokio::time::Instant;

const PRESSURE: &str = "/proc/pressure/io";

/// Seconds of full I/O stall between `from` and `until`; `None` where the kernel
/// does not report pressure (not Linux, or PSI off).
pub async fn measure(from: Instant, until: Instant) -> Option<f64> {
    tokio::time::sleep_until(from).await;
    let before = full_stall_micros(&std::fs::read_to_string(PRESSURE).ok()?)?;
    tokio::time::sleep_until(until).await;
    let after = full_stall_micros(&std::fs::read_to_string(PRESSURE).ok()?)?;
    Some(after.saturating_sub(before) as f64 / 1e6)
}

/// The `total=` (µs) of the `full` line of a pressure file.
fn full_stall_micros(pressure: &str) -> Option<u64> {
    let line = pressure.lines().find(|line| line.starts_with("full "))?;
    line.split_whitespace().find_map(|field| field.strip_prefix("total="))?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_line_total_is_read() {
        let pressure = "some avg10=21.85 avg60=10.17 avg300=9.27 total=383443278\n\
                        full avg10=21.63 avg60=10.06 avg300=8.45 total=260252280\n";
        assert_eq!(full_stall_micros(pressure), Some(260_252_280));
        assert_eq!(full_stall_micros("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"), None);
        assert_eq!(full_stall_micros("full avg10=0.00 total=x\n"), None);
    }
}
