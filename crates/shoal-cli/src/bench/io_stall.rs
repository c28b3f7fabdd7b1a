//! When, and how long, the whole machine was stalled on I/O during a run's
//! measurement window: Linux's pressure stall information (`/proc/pressure/io`,
//! the `full` line: time in which every task that was not idle waited for I/O),
//! read every [`SLOT`].
//!
//! On a machine whose servers share one disk, a slow `fdatasync` stalls every
//! replica at once, and a few such moments set a run's p99 (docs/performance.md,
//! nineteenth session). Reported beside each run, the total tells a reader
//! whether the disk under the system stalled at all; the slots say when, so that
//! each call can be told apart by whether a stall fell within its lifetime
//! ([`IoStalls::overlaps`]): the p99 of the calls that met none is the system's
//! own tail.

use std::time::Duration;

use tokio::time::Instant;

const PRESSURE: &str = "/proc/pressure/io";

/// How often the pressure is read: short against the tail being explained (tens
/// of ms), long against the cost of reading a `/proc` file.
pub const SLOT: Duration = Duration::from_millis(100);

/// A slot counts as stalled when the whole machine waited on I/O for at least
/// this long in it: one slow `fdatasync` of a replica stalls the others' quorum
/// for about that long, while a slot's scattered sub-millisecond waits do not.
const STALLED_SLOT_MICROS: u64 = 5_000;

/// The full I/O stall of each [`SLOT`] of a measurement window.
#[derive(Debug, Clone, Default)]
pub struct IoStalls {
    /// Stalled µs per slot, slot 0 starting at the window's start.
    pub slot_micros: Vec<u64>,
}

impl IoStalls {
    /// Seconds of full stall in the whole window.
    pub fn total_secs(&self) -> f64 {
        self.slot_micros.iter().sum::<u64>() as f64 / 1e6
    }

    /// Whether a stalled slot overlaps `[from, until]` (seconds into the window).
    pub fn overlaps(&self, from: f64, until: f64) -> bool {
        let slot = SLOT.as_secs_f64();
        let first = (from.max(0.0) / slot) as usize;
        let last = (until.max(0.0) / slot) as usize;
        self.slot_micros.iter().take(last.saturating_add(1)).skip(first).any(|&micros| micros >= STALLED_SLOT_MICROS)
    }

    /// Whether a call (or record) meant at `at` seconds into the window, which took
    /// `latency_micros`, met no stalled slot in its lifetime.
    pub fn met_none(&self, at: f64, latency_micros: u64) -> bool {
        !self.overlaps(at, at + latency_micros as f64 / 1e6)
    }

    /// Stalled ms in each second of the window (for the plot).
    pub fn per_second_ms(&self) -> Vec<f64> {
        let per_second = (1.0 / SLOT.as_secs_f64()).round().max(1.0) as usize;
        self.slot_micros.chunks(per_second).map(|slots| slots.iter().sum::<u64>() as f64 / 1000.0).collect()
    }
}

/// Reads the pressure every [`SLOT`] between `from` and `until`; `None` where
/// the kernel does not report pressure (not Linux, or PSI off).
pub async fn measure(from: Instant, until: Instant) -> Option<IoStalls> {
    tokio::time::sleep_until(from).await;
    let mut last = read_full_stall_micros()?;
    let mut stalls = IoStalls::default();
    let mut tick = tokio::time::interval_at(from + SLOT, SLOT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while tick.tick().await <= until {
        let now = read_full_stall_micros()?;
        stalls.slot_micros.push(now.saturating_sub(last));
        last = now;
    }
    Some(stalls)
}

fn read_full_stall_micros() -> Option<u64> {
    full_stall_micros(&std::fs::read_to_string(PRESSURE).ok()?)
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

    #[test]
    fn a_call_met_a_stall_only_if_a_stalled_slot_falls_within_its_lifetime() {
        // Slots of 100 ms: 0.3–0.4 s stalled 40 ms, 0.7–0.8 s only 2 ms (below the bar).
        let stalls = IoStalls { slot_micros: vec![0, 0, 0, 40_000, 0, 0, 0, 2_000, 0, 0, 0, 0] };
        assert!(stalls.overlaps(0.25, 0.31), "ends inside the stalled slot");
        assert!(stalls.overlaps(0.39, 0.5), "starts inside it");
        assert!(stalls.overlaps(0.0, 1.0), "spans it");
        assert!(!stalls.overlaps(0.0, 0.29), "ends before it");
        assert!(!stalls.overlaps(0.41, 0.9), "a 2 ms slot is not a stall");
        assert!(!stalls.overlaps(5.0, 6.0), "after the last slot");
        assert!(!stalls.met_none(0.25, 60_000) && stalls.met_none(0.25, 40_000), "0.25 s + 60 ms reaches 0.3 s");
        assert!((stalls.total_secs() - 0.042).abs() < 1e-9);
        assert_eq!(stalls.per_second_ms(), vec![42.0, 0.0]);
    }
}
