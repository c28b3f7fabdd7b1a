//! Whether a data directory takes `O_DIRECT`, and how fast its disk writes with it.
//!
//! RocksDB can write flushes and compactions around the page cache. Whether that
//! helps depends on the disk: on one machine it saved the kernel's page-cache
//! copy (a third of a node's CPU under load, +30% at 1 KiB, 1.8× at 64 KiB); on
//! another, whose disk took large direct writes at a third of the speed, it made
//! every flush a queue of slow synchronous writes and stalled writers for seconds
//! (docs/performance.md). [`direct_write_mibps`] measures the disk the way a flush
//! uses it, so a node can decide at start.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Bytes per probe write: RocksDB's flush buffer (`writable_file_max_buffer_size`).
const PROBE_WRITE: usize = 1024 * 1024;
/// Probe writes: 32 MiB in all, a few tens of milliseconds on a fast disk.
const PROBE_WRITES: usize = 32;
/// `O_DIRECT` buffers must be aligned to the logical block size (4 KiB covers it).
const ALIGN: usize = 4096;

/// Whether files in `dir` can be opened with `O_DIRECT` (tmpfs, for one, refuses it).
#[cfg(target_os = "linux")]
pub fn supports_direct_io(dir: &Path) -> bool {
    let probe = dir.join(".direct-io-probe");
    let opened = open_direct(&probe);
    let _ = std::fs::remove_file(&probe);
    opened.is_ok()
}

#[cfg(not(target_os = "linux"))]
pub fn supports_direct_io(_dir: &Path) -> bool {
    false
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path)
}

/// How fast the disk under `dir` takes a sequential 1 MiB `O_DIRECT` write, in
/// MiB/s: the fastest of 32 (then synced and removed), so that other writers of
/// the same disk — other nodes probing it at the same moment, the kernel writing
/// back dirty pages — slow some of them but not the answer. `None` where the
/// file system refuses `O_DIRECT`.
#[cfg(target_os = "linux")]
pub fn direct_write_mibps(dir: &Path) -> std::io::Result<Option<f64>> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(".direct-io-speed-probe");
    let Ok(mut file) = open_direct(&probe) else { return Ok(None) };
    // An aligned slice inside an ordinary buffer (no allocator tricks needed).
    let buffer = vec![0x5au8; PROBE_WRITE + ALIGN];
    let start = buffer.as_ptr().align_offset(ALIGN);
    let block =
        buffer.get(start..start + PROBE_WRITE).ok_or_else(|| std::io::Error::other("unaligned probe buffer"))?;
    let mut fastest = f64::MAX;
    let written = (0..PROBE_WRITES)
        .try_for_each(|_| {
            let began = Instant::now();
            file.write_all(block)?;
            fastest = fastest.min(began.elapsed().as_secs_f64());
            Ok(())
        })
        .and_then(|()| file.sync_all());
    drop(file);
    let _ = std::fs::remove_file(&probe);
    match written {
        Ok(()) => Ok(Some(PROBE_WRITE as f64 / (1024.0 * 1024.0) / fastest.max(1e-6))),
        // Some file systems open O_DIRECT files but refuse the writes.
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn direct_write_mibps(_dir: &Path) -> std::io::Result<Option<f64>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_measures_or_declines_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        match direct_write_mibps(dir.path()).unwrap() {
            Some(speed) => {
                assert!(speed > 0.0);
                assert!(supports_direct_io(dir.path()));
            }
            None => assert!(!supports_direct_io(dir.path()) || cfg!(not(target_os = "linux"))),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "probe files are removed");
    }
}
