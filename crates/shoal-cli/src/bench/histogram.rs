//! Latency histograms (HDR, microsecond resolution) and their summaries.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // 1 µs to 10 minutes, 3 significant digits.
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid");
        Latency { histogram }
    }

    pub fn record(&mut self, micros: u64) {
        self.histogram.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn summary(&self) -> Percentiles {
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        Percentiles {
            count: self.histogram.len(),
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: self.histogram.max() as f64 / 1000.0,
        }
    }
}
