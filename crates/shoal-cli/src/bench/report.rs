//! What a run measured, as JSON and as a table.

use serde::Serialize;

use super::cpu::CpuUse;
use super::histogram::Percentiles;
use super::workload::Workload;

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub system: String,
    pub workload: Workload,
    pub records: u64,
    pub failed: u64,
    pub records_per_sec: f64,
    pub mib_per_sec: f64,
    /// Send (intended) → acknowledged.
    pub publish_ms: Percentiles,
    /// Send (intended) → the client starts the call: how late the client itself was
    /// (building the records, waiting for a timer or a CPU). Part of `publish_ms`.
    pub late_ms: Percentiles,
    /// Each measured call: (seconds into the measurement window, publish latency
    /// µs); for `--plot`, not written to the JSON.
    #[serde(skip)]
    pub timeline: Vec<(f64, u64)>,
    /// Send (intended) → a push consumer has it, for records meant to be sent in
    /// the measurement window.
    pub end_to_end_ms: Percentiles,
    /// Cores the system under test and the benchmark used in the measurement window.
    pub cpu: CpuUse,
    /// Seconds of the window in which the whole machine was stalled on I/O
    /// (`/proc/pressure/io`, `full`); `None` where the kernel does not say.
    pub io_stall_s: Option<f64>,
    /// The same, per second of the window, in ms (empty where not measured).
    pub io_stall_per_second_ms: Vec<f64>,
    /// Publish latency of the calls in whose lifetime the machine did not stall
    /// on I/O (no 100 ms slot with 5 ms or more of full stall): the system's own
    /// tail, with the disk's stalls taken out. `None` where not measured.
    pub publish_clear_ms: Option<Percentiles>,
    /// End-to-end latency of the records in whose lifetime the machine did not
    /// stall on I/O (as `publish_clear_ms`).
    pub end_to_end_clear_ms: Option<Percentiles>,
}

/// A measured figure with two decimals, or `-` where it was not measured.
fn measured_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

pub fn print_table(results: &[RunResult]) {
    println!(
        "{:<10} {:<14} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "system",
        "workload",
        "records/s",
        "MiB/s",
        "pub p50",
        "pub p99",
        "pub p999",
        "pub max",
        "p99 clear",
        "e2e p50",
        "e2e p99",
        "e2e clear",
        "late p99",
        "srv cores",
        "cli cores",
        "io stall s"
    );
    for r in results {
        println!(
            "{:<10} {:<14} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9} {:>9.2} {:>9.2} {:>9} {:>9.2} {:>9} {:>9} {:>9}",
            r.system,
            r.workload.name,
            r.records_per_sec,
            r.mib_per_sec,
            r.publish_ms.p50,
            r.publish_ms.p99,
            r.publish_ms.p999,
            r.publish_ms.max,
            measured_cell(r.publish_clear_ms.as_ref().map(|clear| clear.p99)),
            r.end_to_end_ms.p50,
            r.end_to_end_ms.p99,
            measured_cell(r.end_to_end_clear_ms.as_ref().map(|clear| clear.p99)),
            r.late_ms.p99,
            measured_cell(r.cpu.server_cores),
            measured_cell(r.cpu.client_cores),
            measured_cell(r.io_stall_s)
        );
    }
}

/// Shoal's figures divided by the peer's, per workload (throughput: higher is
/// better; latency: lower is better).
pub fn print_ratios(shoal: &[RunResult], peer: &[RunResult]) {
    println!();
    println!(
        "{:<14} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "workload", "throughput x", "pub p50 x", "pub p99 x", "e2e p99 x", "per core x"
    );
    for s in shoal {
        let Some(p) = peer.iter().find(|p| p.workload.name == s.workload.name) else { continue };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        // Records per core of the servers (when both systems' processes were given).
        let per_core = |r: &RunResult| r.cpu.server_cores.map(|c| r.records_per_sec / c);
        let per_core_ratio = match (per_core(s), per_core(p)) {
            (Some(a), Some(b)) => format!("{:.2}", ratio(a, b)),
            _ => "-".into(),
        };
        println!(
            "{:<14} {:>14.2} {:>14.2} {:>14.2} {:>14.2} {:>14}",
            s.workload.name,
            ratio(s.records_per_sec, p.records_per_sec),
            ratio(s.publish_ms.p50, p.publish_ms.p50),
            ratio(s.publish_ms.p99, p.publish_ms.p99),
            ratio(s.end_to_end_ms.p99, p.end_to_end_ms.p99),
            per_core_ratio
        );
    }
    println!(
        "(Shoal / NATS. NATS 2.9 acknowledges a JetStream publish before it is fsynced; Shoal after a quorum has fsynced it.)"
    );
}
