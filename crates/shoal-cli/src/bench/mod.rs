//! `shoal bench`: an OpenMessaging-Benchmark-style load generator.
//!
//! Producers run open-loop at a fixed target rate (or closed-loop at maximum
//! throughput with `rate = 0`), and publish latency is measured from the
//! *intended* send time, so a stall cannot hide behind the requests it delayed
//! (no coordinated omission). Push consumers measure end-to-end latency from
//! the same intended time, carried in each record. Only the measurement window
//! after the warm-up counts. The same workload runs against Shoal (gRPC) and
//! NATS JetStream (R3, file-backed), and the report gives both and their ratio.

mod cpu;
mod histogram;
mod io_stall;
mod nats_driver;
mod payload;
mod plot;
mod report;
mod settle;
mod shoal_driver;
mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use rand::Rng;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::cli::BenchArgs;
use histogram::Latency;
use nats_driver::NatsDriver;
use report::RunResult;
use shoal_driver::ShoalDriver;
pub use workload::Workload;

/// Where records go.
#[derive(Clone)]
enum Target {
    Shoal(Box<ShoalDriver>),
    Nats(NatsDriver),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Shoal(_) => "shoal",
            Target::Nats(_) => "nats",
        }
    }

    async fn prepare(&mut self, workload: &Workload) -> anyhow::Result<()> {
        match self {
            Target::Shoal(d) => d.prepare(workload).await,
            Target::Nats(d) => d.prepare(workload).await,
        }
    }

    async fn for_producer(&self, index: usize) -> anyhow::Result<Target> {
        Ok(match self {
            Target::Shoal(d) => Target::Shoal(Box::new(ShoalDriver::clone(d))),
            Target::Nats(d) => Target::Nats(d.for_producer(index).await?),
        })
    }

    async fn publish(&self, records: Vec<(String, Vec<u8>)>) -> anyhow::Result<usize> {
        match self {
            Target::Shoal(d) => d.publish(records).await,
            Target::Nats(d) => d.publish(records).await,
        }
    }

    async fn consume(
        &self,
        latencies: mpsc::UnboundedSender<payload::Delivery>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        match self {
            Target::Shoal(d) => d.consume(latencies, stop).await,
            Target::Nats(d) => d.consume(latencies, stop).await,
        }
    }
}

pub async fn run(endpoint: &str, args: BenchArgs) -> anyhow::Result<()> {
    let mut workloads = match &args.workload {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            let file: WorkloadFile = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            file.workload
        }
        None => vec![Workload::default()],
    };
    for workload in &mut workloads {
        args.apply(workload);
        workload.validate()?;
    }
    let mut shoal_results = Vec::new();
    let mut nats_results = Vec::new();
    let targets: Vec<&str> = match args.target.as_str() {
        "both" => vec!["shoal", "nats"],
        other => vec![other],
    };
    for workload in &workloads {
        for target in &targets {
            let mut driver = match *target {
                "shoal" => {
                    Target::Shoal(Box::new(ShoalDriver::connect(endpoint, &args.stream, !args.via_entry_node).await?))
                }
                "nats" => Target::Nats(NatsDriver::connect(&args.nats).await?),
                other => anyhow::bail!("unknown target {other}: shoal, nats or both"),
            };
            let earlier: Vec<(String, f64)> = match *target {
                "nats" => &nats_results,
                _ => &shoal_results,
            }
            .iter()
            .map(|r: &RunResult| (r.workload.name.clone(), r.records_per_sec))
            .collect();
            let workload = workload.with_rate_from(&earlier)?;
            match workload.rate {
                0 => eprintln!("== {} on {}", workload.name, driver.name()),
                rate => eprintln!("== {} on {} at {rate} records/s", workload.name, driver.name()),
            }
            // The previous run's writes, written back now rather than during this run.
            settle::settle_disk().await;
            let server_pids = if *target == "nats" { args.nats_pids.clone() } else { args.shoal_pids.clone() };
            let result = run_one(&mut driver, &workload, server_pids, Duration::from_secs(args.settle_secs)).await?;
            report::print_table(std::slice::from_ref(&result));
            if *target == "nats" { nats_results.push(result) } else { shoal_results.push(result) }
        }
    }
    println!();
    let all: Vec<RunResult> = shoal_results.iter().chain(nats_results.iter()).cloned().collect();
    report::print_table(&all);
    if !shoal_results.is_empty() && !nats_results.is_empty() {
        report::print_ratios(&shoal_results, &nats_results);
    }
    if let Some(path) = &args.output {
        std::fs::write(path, serde_json::to_vec_pretty(&all)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("results written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, plot::svg(&all)).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("latency over time plotted in {}", path.display());
    }
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadFile {
    workload: Vec<Workload>,
}

/// What the producers measured.
#[derive(Default)]
struct Measured {
    /// Each measured call: (seconds into the measurement window, publish latency
    /// µs); the publish percentiles and the plot both come from it.
    timeline: Vec<(f64, u64)>,
    /// Intended send time → the call's task starts sending (the client's own delay).
    late: Latency,
    records: u64,
    failed: u64,
}

async fn run_one(
    target: &mut Target,
    workload: &Workload,
    server_pids: Vec<u32>,
    settle: Duration,
) -> anyhow::Result<RunResult> {
    target.prepare(workload).await?;
    settle::settle_servers(&server_pids, settle).await;
    let (stop_tx, stop) = watch::channel(false);
    let (latency_tx, mut latency_rx) = mpsc::unbounded_channel();
    if workload.consumers > 0 {
        target.consume(latency_tx, stop.clone()).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(workload.warmup_secs);
    // The window on the wall clock, which the records' send times are on.
    let window_micros = {
        let from = payload::now_micros() + workload.warmup_secs * 1_000_000;
        from..from + workload.duration_secs * 1_000_000
    };
    let end = measure_from + Duration::from_secs(workload.duration_secs);
    let acked = Arc::new(AtomicU64::new(0));
    let cpu = tokio::spawn(cpu::measure(server_pids, measure_from, end));
    let io_stall = tokio::spawn(io_stall::measure(measure_from, end));
    let mut producers = Vec::new();
    for index in 0..workload.producers as usize {
        let target = target.for_producer(index).await?;
        producers.push(tokio::spawn(produce(target, workload.clone(), start, measure_from, end, acked.clone())));
    }
    // Live progress, once a second.
    let progress = {
        let acked = acked.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                let now = acked.load(Ordering::Relaxed);
                eprintln!("  {:>6.0} s  {:>10} records/s acknowledged", start.elapsed().as_secs_f64(), now - last);
                last = now;
            }
        })
    };
    let mut measured = Measured::default();
    for producer in producers {
        let part = producer.await.context("a producer panicked")??;
        measured.late.merge(&part.late);
        measured.timeline.extend(part.timeline);
        measured.records += part.records;
        measured.failed += part.failed;
    }
    let cpu = cpu.await.unwrap_or_default();
    let io_stalls = io_stall.await.ok().flatten();
    // Give consumers a moment to receive the last records.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    progress.abort();
    // Records meant to be sent in the window, as for publish latency.
    let mut end_to_end = Latency::new();
    let mut end_to_end_clear = Latency::new();
    while let Ok(delivery) = latency_rx.try_recv() {
        if !window_micros.contains(&delivery.sent_micros) {
            continue;
        }
        end_to_end.record(delivery.latency_micros());
        let at = (delivery.sent_micros - window_micros.start) as f64 / 1e6;
        if io_stalls.as_ref().is_some_and(|stalls| stalls.met_none(at, delivery.latency_micros())) {
            end_to_end_clear.record(delivery.latency_micros());
        }
    }
    let mut publish = Latency::new();
    for (_, micros) in &measured.timeline {
        publish.record(*micros);
    }
    // The calls in whose lifetime the machine did not stall on I/O.
    let publish_clear_ms = io_stalls.as_ref().map(|stalls| {
        let mut clear = Latency::new();
        for &(at, micros) in &measured.timeline {
            if stalls.met_none(at, micros) {
                clear.record(micros);
            }
        }
        clear.summary()
    });
    let seconds = workload.duration_secs as f64;
    Ok(RunResult {
        system: target.name().into(),
        workload: workload.clone(),
        records: measured.records,
        failed: measured.failed,
        records_per_sec: measured.records as f64 / seconds,
        mib_per_sec: (measured.records as f64 * workload.record_bytes as f64) / seconds / (1024.0 * 1024.0),
        publish_ms: publish.summary(),
        late_ms: measured.late.summary(),
        timeline: measured.timeline,
        end_to_end_ms: end_to_end.summary(),
        cpu,
        io_stall_s: io_stalls.as_ref().map(io_stall::IoStalls::total_secs),
        io_stall_per_second_ms: io_stalls.as_ref().map(io_stall::IoStalls::per_second_ms).unwrap_or_default(),
        publish_clear_ms,
        end_to_end_clear_ms: io_stalls.as_ref().map(|_| end_to_end_clear.summary()),
    })
}

fn batch(workload: &Workload, intended_micros: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = rand::rng();
    (0..workload.batch)
        .map(|_| {
            (format!("k{}", rng.random_range(0..workload.keys)), payload::make(workload.record_bytes, intended_micros))
        })
        .collect()
}

/// One producer: open loop at its share of the rate, or closed loop.
async fn produce(
    target: Target,
    workload: Workload,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Measured> {
    let results: Arc<std::sync::Mutex<Measured>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(if workload.rate == 0 { workload.in_flight as usize } else { 10_000 }));
    let per_producer = workload.rate as f64 / f64::from(workload.producers);
    let interval = if workload.rate == 0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(f64::from(workload.batch) / per_producer)
    };
    // Spread producers' schedules over one interval.
    let mut next = start + interval.mul_f64(rand::rng().random_range(0.0..1.0));
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < end {
        let permit = in_flight.clone().acquire_owned().await?;
        let intended = if workload.rate == 0 {
            Instant::now()
        } else {
            tokio::time::sleep_until(next).await;
            let intended = next;
            next += interval;
            intended
        };
        let intended_micros = payload::now_micros().saturating_sub(intended.elapsed().as_micros() as u64);
        let records = batch(&workload, intended_micros);
        let (target, results, acked) = (target.clone(), results.clone(), acked.clone());
        tasks.spawn(async move {
            let count = records.len() as u64;
            let late = intended.elapsed();
            let outcome = target.publish(records).await;
            let latency = intended.elapsed();
            drop(permit);
            let failed = match outcome {
                Ok(failed) => failed as u64,
                Err(_) => count,
            };
            acked.fetch_add(count - failed, Ordering::Relaxed);
            if intended >= measure_from {
                let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                results.late.record(late.as_micros() as u64);
                let at = intended.duration_since(measure_from).as_secs_f64();
                results.timeline.push((at, latency.as_micros() as u64));
                results.records += count - failed;
                results.failed += failed;
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let measured = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(measured)
}
