//! Benchmark records carry their intended send time, so a consumer can measure
//! end-to-end latency from the moment the record *should* have been sent.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::{Rng, RngCore};

/// Microseconds since the Unix epoch (the clock producers and consumers share).
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Random bytes that records copy their filler from: incompressible, as real
/// payloads mostly are to the storage (a filler of one repeated byte let RocksDB's
/// LZ4 shrink Shoal's stored records to almost nothing, which NATS does not do),
/// and cheap, since a record copies a slice instead of drawing fresh random bytes.
const POOL_BYTES: usize = 4 << 20;

thread_local! {
    static POOL: Vec<u8> = {
        let mut pool = vec![0u8; POOL_BYTES];
        rand::rng().fill_bytes(&mut pool);
        pool
    };
}

/// `size` bytes: the send time, then incompressible filler from a random place
/// in the pool.
pub fn make(size: usize, sent_micros: u64) -> Vec<u8> {
    let size = size.max(8);
    let mut data = Vec::with_capacity(size);
    data.extend_from_slice(&sent_micros.to_le_bytes());
    POOL.with(|pool| {
        let mut rng = rand::rng();
        while data.len() < size {
            let take = (size - data.len()).min(pool.len());
            let from = rng.random_range(0..=pool.len() - take);
            data.extend_from_slice(&pool[from..from + take]);
        }
    });
    data
}

/// The send time a record carries, if it is a benchmark record.
pub fn sent_micros(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(..8)?.try_into().ok()?))
}

/// A record a push consumer received: when it was meant to be sent and when it
/// arrived, in µs since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub sent_micros: u64,
    pub received_micros: u64,
}

impl Delivery {
    /// The delivery of `data` received at `received_micros`, if it is a benchmark record.
    pub fn of(data: &[u8], received_micros: u64) -> Option<Delivery> {
        Some(Delivery { sent_micros: sent_micros(data)?, received_micros })
    }

    /// Intended send → received: the end-to-end latency.
    pub fn latency_micros(&self) -> u64 {
        self.received_micros.saturating_sub(self.sent_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_has_its_size_carries_its_send_time_and_does_not_repeat_itself() {
        let payload = make(1024, 42);
        assert_eq!(payload.len(), 1024);
        assert_eq!(sent_micros(&payload), Some(42));
        // Random filler: most byte values occur, and two payloads differ.
        let distinct = payload.iter().collect::<std::collections::BTreeSet<_>>().len();
        assert!(distinct > 200, "only {distinct} distinct byte values");
        assert_ne!(make(1024, 42)[8..], payload[8..]);
        // Records larger than the pool and smaller than the time stamp still work.
        assert_eq!(make(POOL_BYTES + 10, 1).len(), POOL_BYTES + 10);
        assert_eq!(make(3, 7).len(), 8);
    }

    #[test]
    fn a_delivery_measures_from_the_send_time_the_record_carries() {
        let delivery = Delivery::of(&make(64, 1_000), 1_750).unwrap();
        assert_eq!(delivery, Delivery { sent_micros: 1_000, received_micros: 1_750 });
        assert_eq!(delivery.latency_micros(), 750);
        assert_eq!(Delivery::of(&make(64, 2_000), 1_750).unwrap().latency_micros(), 0, "clocks never go negative");
        assert_eq!(Delivery::of(b"short", 1), None);
    }
}
