//! Publish latency over time, as an SVG: one panel per run, one point per second
//! of the measurement window for the p50, the p99 and the slowest call, on a
//! logarithmic axis (a tail is often a hundred times the median). A stall shows
//! as a spike at the second it happened; a saturated system as a p99 that stays up.
//! Grey bars on the same axis give the milliseconds of each second in which the
//! whole machine was stalled on I/O, so a spike can be told to be the disk's.

use std::fmt::Write;

use super::histogram::Latency;
use super::report::RunResult;

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 220.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 30.0;
/// The latency axis, in ms: 0.1 ms to 10 s.
const MIN_MS: f64 = 0.1;
const MAX_MS: f64 = 10_000.0;

/// One series: its name, colour and value per second.
struct Series {
    name: &'static str,
    colour: &'static str,
    points: Vec<(f64, f64)>,
}

/// Per second of the window: (second, p50, p99, max) in ms, from each call's
/// (seconds into the window, latency µs).
fn per_second(timeline: &[(f64, u64)]) -> Vec<(f64, f64, f64, f64)> {
    let seconds = timeline.iter().map(|(at, _)| *at as usize).max().map_or(0, |last| last + 1);
    let mut buckets: Vec<Latency> = (0..seconds).map(|_| Latency::new()).collect();
    for (at, micros) in timeline {
        if let Some(bucket) = buckets.get_mut(*at as usize) {
            bucket.record(*micros);
        }
    }
    buckets
        .iter()
        .enumerate()
        .filter_map(|(second, bucket)| {
            let summary = bucket.summary();
            (summary.count > 0).then_some((second as f64, summary.p50, summary.p99, summary.max))
        })
        .collect()
}

fn y_of(ms: f64, top: f64) -> f64 {
    let height = PANEL_HEIGHT - TOP - BOTTOM;
    let fraction = (ms.clamp(MIN_MS, MAX_MS).log10() - MIN_MS.log10()) / (MAX_MS.log10() - MIN_MS.log10());
    top + TOP + height * (1.0 - fraction)
}

/// The SVG document for `results`.
pub fn svg(results: &[RunResult]) -> String {
    let height = PANEL_HEIGHT * results.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (index, result) in results.iter().enumerate() {
        panel(&mut out, result, index as f64 * PANEL_HEIGHT);
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, result: &RunResult, top: f64) {
    let seconds = result.workload.duration_secs.max(1) as f64;
    let plot_width = WIDTH - LEFT - RIGHT;
    let x_of = |second: f64| LEFT + plot_width * (second + 0.5) / seconds;
    let _ = writeln!(
        out,
        r#"<text x="{LEFT}" y="{}" font-size="13">{} · {} · publish latency per second (ms, log scale)</text>"#,
        top + 18.0,
        escape(&result.system),
        escape(&result.workload.name)
    );
    // Axes and gridlines at each power of ten.
    let mut ms = MIN_MS;
    while ms <= MAX_MS * 1.001 {
        let y = y_of(ms, top);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            if ms < 1.0 { format!("{ms:.1}") } else { format!("{ms:.0}") }
        );
        ms *= 10.0;
    }
    let bottom = top + PANEL_HEIGHT - BOTTOM;
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="end">seconds into the measurement window: 0–{seconds:.0}</text>"#,
        WIDTH - RIGHT,
        bottom + 18.0
    );
    // The machine's I/O stall per second, as bars from the bottom of the panel.
    let bar_width = plot_width / seconds * 0.6;
    for (second, ms) in result.io_stall_per_second_ms.iter().enumerate() {
        if *ms < MIN_MS {
            continue;
        }
        let y = y_of(*ms, top);
        let _ = writeln!(
            out,
            r##"<rect x="{:.1}" y="{y:.1}" width="{bar_width:.1}" height="{:.1}" fill="#bbb"/>"##,
            x_of(second as f64) - bar_width / 2.0,
            bottom - y
        );
    }
    if !result.io_stall_per_second_ms.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" fill="#888">I/O stall</text>"##,
            WIDTH - RIGHT - 200.0,
            top + 18.0
        );
    }
    let rows = per_second(&result.timeline);
    let series = [
        Series { name: "p50", colour: "#1f77b4", points: rows.iter().map(|r| (r.0, r.1)).collect() },
        Series { name: "p99", colour: "#ff7f0e", points: rows.iter().map(|r| (r.0, r.2)).collect() },
        Series { name: "max", colour: "#d62728", points: rows.iter().map(|r| (r.0, r.3)).collect() },
    ];
    for (n, line) in series.iter().enumerate() {
        let points: Vec<String> =
            line.points.iter().map(|(second, ms)| format!("{:.1},{:.1}", x_of(*second), y_of(*ms, top))).collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            line.colour,
            points.join(" ")
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" fill="{}">{}</text>"#,
            WIDTH - RIGHT - 120.0 + 40.0 * n as f64,
            top + 18.0,
            line.colour,
            line.name
        );
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_fall_into_the_second_they_were_meant_for() {
        let timeline = [(0.2, 1_000), (0.7, 3_000), (2.5, 50_000)];
        let rows = per_second(&timeline);
        assert_eq!(rows.len(), 2, "second 1 had no calls: {rows:?}");
        assert_eq!(rows[0].0, 0.0);
        assert!((rows[0].3 - 3.0).abs() < 0.01, "max of second 0 is 3 ms: {rows:?}");
        assert_eq!(rows[1].0, 2.0);
        assert!((rows[1].1 - 50.0).abs() < 0.1, "{rows:?}");
    }

    #[test]
    fn slower_is_higher_on_the_page_and_the_axis_is_clamped() {
        assert!(y_of(100.0, 0.0) < y_of(1.0, 0.0));
        assert_eq!(y_of(MAX_MS * 10.0, 0.0), y_of(MAX_MS, 0.0));
        assert_eq!(y_of(0.0, 0.0), y_of(MIN_MS, 0.0));
    }
}
