//! Benchmark records carry their intended send time, so a consumer can measure
//! end-to-end latency from the moment the record *should* have been sent.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch (the clock producers and consumers share).
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// `size` bytes: the send time, then filler.
pub fn make(size: usize, sent_micros: u64) -> Vec<u8> {
    let mut data = vec![b'x'; size.max(8)];
    data[..8].copy_from_slice(&sent_micros.to_le_bytes());
    data
}

/// The send time a record carries, if it is a benchmark record.
pub fn sent_micros(data: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(..8)?.try_into().ok()?))
}
