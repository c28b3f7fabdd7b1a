//! Per-shard throughput limits, enforced on the shard leader with token buckets.
//!
//! Kinesis's provisioned limits by default: 1 MiB/s and 1,000 records/s in, 2 MiB/s
//! and 5 GetRecords calls/s out, and a 5-second cooldown after a call that returned
//! 10 MiB. Excess is refused with `ProvisionedThroughputExceededException` (per
//! record inside PutRecords); nothing is dropped silently. Self-hosted clusters can
//! change the rates or turn the limits off.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The limits of every shard of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThroughputLimits {
    /// Whether limits are enforced at all.
    pub enabled: bool,
    pub write_bytes_per_sec: u64,
    pub write_records_per_sec: u64,
    pub read_bytes_per_sec: u64,
    pub read_calls_per_sec: u64,
}

impl Default for ThroughputLimits {
    fn default() -> Self {
        ThroughputLimits {
            enabled: true,
            write_bytes_per_sec: 1024 * 1024,
            write_records_per_sec: 1000,
            read_bytes_per_sec: 2 * 1024 * 1024,
            read_calls_per_sec: 5,
        }
    }
}

impl ThroughputLimits {
    pub fn off() -> Self {
        ThroughputLimits { enabled: false, ..Default::default() }
    }
}

/// A bucket that refills at `rate` per second up to one second's worth.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn new(rate: u64, now: Instant) -> Self {
        TokenBucket { rate: rate as f64, tokens: rate as f64, updated: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.updated = now;
    }

    /// Whether `n` fits now. A request larger than a whole second's budget fits
    /// only into a full bucket (and then leaves it in debt), so it is slowed, not
    /// refused forever.
    fn fits(&self, n: f64) -> bool {
        if n <= self.rate { self.tokens >= n } else { self.tokens >= self.rate }
    }

    fn take(&mut self, n: f64) {
        self.tokens -= n;
    }
}

#[derive(Debug)]
struct Buckets {
    write_bytes: TokenBucket,
    write_records: TokenBucket,
    read_bytes: TokenBucket,
    read_calls: TokenBucket,
    read_cooldown_until: Option<Instant>,
}

/// The throughput state of one shard on its leader.
#[derive(Debug)]
pub struct ShardThrottle {
    limits: ThroughputLimits,
    buckets: Mutex<Buckets>,
}

/// A read that returned this much puts the shard's reads on cooldown.
const READ_COOLDOWN_BYTES: usize = 10 * 1024 * 1024;
const READ_COOLDOWN: Duration = Duration::from_secs(5);

impl ShardThrottle {
    pub fn new(limits: ThroughputLimits) -> Self {
        let now = Instant::now();
        let buckets = Buckets {
            write_bytes: TokenBucket::new(limits.write_bytes_per_sec, now),
            write_records: TokenBucket::new(limits.write_records_per_sec, now),
            read_bytes: TokenBucket::new(limits.read_bytes_per_sec, now),
            read_calls: TokenBucket::new(limits.read_calls_per_sec, now),
            read_cooldown_until: None,
        };
        ShardThrottle { limits, buckets: Mutex::new(buckets) }
    }

    /// Admits a write of `records` records and `bytes` bytes, or refuses it whole.
    pub fn admit_write(&self, bytes: usize, records: usize) -> bool {
        self.admit_write_at(bytes, records, Instant::now())
    }

    fn admit_write_at(&self, bytes: usize, records: usize, now: Instant) -> bool {
        if !self.limits.enabled {
            return true;
        }
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        b.write_bytes.refill(now);
        b.write_records.refill(now);
        let (bytes, records) = (bytes as f64, records as f64);
        if !(b.write_bytes.fits(bytes) && b.write_records.fits(records)) {
            return false;
        }
        b.write_bytes.take(bytes);
        b.write_records.take(records);
        true
    }

    /// Admits one GetRecords call, or refuses it (too many calls, bytes owed, or
    /// the cooldown after a 10 MiB read).
    pub fn admit_read(&self) -> bool {
        self.admit_read_at(Instant::now())
    }

    fn admit_read_at(&self, now: Instant) -> bool {
        if !self.limits.enabled {
            return true;
        }
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if b.read_cooldown_until.is_some_and(|until| now < until) {
            return false;
        }
        b.read_calls.refill(now);
        b.read_bytes.refill(now);
        if !b.read_calls.fits(1.0) || b.read_bytes.tokens <= 0.0 {
            return false;
        }
        b.read_calls.take(1.0);
        true
    }

    /// Charges the bytes a read returned.
    pub fn charge_read(&self, bytes: usize) {
        if !self.limits.enabled {
            return;
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        b.read_bytes.refill(now);
        b.read_bytes.take(bytes as f64);
        if bytes >= READ_COOLDOWN_BYTES {
            b.read_cooldown_until = Some(now + READ_COOLDOWN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(records: u64) -> ThroughputLimits {
        ThroughputLimits { write_records_per_sec: records, read_calls_per_sec: 5, ..Default::default() }
    }

    #[test]
    fn writes_beyond_the_rate_are_refused_until_the_bucket_refills() {
        let throttle = ShardThrottle::new(limits(100));
        let start = Instant::now();
        assert!(throttle.admit_write_at(10, 60, start));
        assert!(!throttle.admit_write_at(10, 60, start), "only 40 records of budget left");
        assert!(throttle.admit_write_at(10, 40, start));
        assert!(throttle.admit_write_at(10, 50, start + Duration::from_millis(500)), "half a second refills 50");
    }

    #[test]
    fn a_batch_larger_than_a_second_needs_a_full_bucket() {
        let throttle = ShardThrottle::new(limits(100));
        let start = Instant::now();
        assert!(throttle.admit_write_at(10, 500, start));
        assert!(!throttle.admit_write_at(10, 1, start + Duration::from_secs(1)), "still paying the debt");
        assert!(throttle.admit_write_at(10, 1, start + Duration::from_secs(6)));
    }

    #[test]
    fn reads_are_limited_by_calls_and_by_the_big_read_cooldown() {
        let throttle = ShardThrottle::new(limits(100));
        let start = Instant::now();
        assert!((0..5).all(|_| throttle.admit_read_at(start)));
        assert!(!throttle.admit_read_at(start), "a sixth call in the same second");
        assert!(throttle.admit_read_at(start + Duration::from_millis(250)));
        throttle.charge_read(READ_COOLDOWN_BYTES);
        assert!(!throttle.admit_read_at(Instant::now() + Duration::from_secs(1)));
    }

    #[test]
    fn disabled_limits_admit_everything() {
        let throttle = ShardThrottle::new(ThroughputLimits::off());
        assert!((0..10_000).all(|_| throttle.admit_write(1024 * 1024, 1000) && throttle.admit_read()));
    }
}
