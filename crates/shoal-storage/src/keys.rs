//! Key layout: fixed-width big-endian fields, so byte order is numeric order and a
//! group's keys form one contiguous range.

pub fn group_prefix(group: u64) -> [u8; 8] {
    group.to_be_bytes()
}

/// `group | n`: Raft log indexes, arrival times.
pub fn group_u64(group: u64, n: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8..].copy_from_slice(&n.to_be_bytes());
    key
}

/// `group | a | b`: arrival index entries.
pub fn group_u64_u64(group: u64, a: u64, b: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8..16].copy_from_slice(&a.to_be_bytes());
    key[16..].copy_from_slice(&b.to_be_bytes());
    key
}

/// `group | log index | offset`: a record.
pub fn record(group: u64, log_index: u64, offset: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..8].copy_from_slice(&group.to_be_bytes());
    key[8..16].copy_from_slice(&log_index.to_be_bytes());
    key[16..].copy_from_slice(&offset.to_be_bytes());
    key
}

/// `group | name`: small named values.
pub fn group_named(group: u64, name: &str) -> Vec<u8> {
    let mut key = group.to_be_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// The exclusive upper bound of every key of `group`.
pub fn group_end(group: u64) -> [u8; 8] {
    match group.checked_add(1) {
        Some(next) => next.to_be_bytes(),
        None => [0xff; 8],
    }
}

/// Reads a big-endian u64 at `at`, if the key is long enough.
pub fn read_u64(key: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = key.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Reads a big-endian u32 at `at`, if the key is long enough.
pub fn read_u32(key: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = key.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_numeric_order() {
        assert!(group_u64(1, 255) < group_u64(1, 256));
        assert!(group_u64(1, u64::MAX).as_slice() < group_end(1).as_slice());
        assert!(record(7, 1, u32::MAX) < record(7, 2, 0));
        assert!(record(7, u64::MAX, u32::MAX).as_slice() < group_end(7).as_slice());
        assert_eq!(read_u64(&group_u64(3, 99), 8), Some(99));
        assert_eq!(read_u32(&record(3, 9, 4), 16), Some(4));
    }
}
