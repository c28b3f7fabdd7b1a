//! Whether a data directory takes `O_DIRECT`, and how fast its disk writes with it.
//!
//! RocksDB can write flushes and compactions around the page cache. Whether that
//! helps depends on the disk: on one machine it saved the kernel's page-cache
//! copy (a third of a node's CPU under load, +30% at 1 KiB, 1.8× at 64 KiB); on
//! another, whose disk took large direct writes at a third of the speed, it made
//! every flush a queue of slow synchronous writes and stalled writers for seconds
//! (docs/performance.md). [`direct_write_mibps`] measures the disk the way a flush
//! uses it, so a node can decide at start.
//!
//! The decision has to be steady. Three nodes on one machine that probe their
//! shared disk at the same moment measured 615–1,200 MiB/s on a disk that one
//! probe alone measures at 1,030–1,360, so some nodes of one cluster chose one way
//! and some the other, differently at every start. Two things keep it steady now:
//! probes on one machine take turns ([`ProbeTurn`], a lock file in the temporary
//! directory), and a node probes its data directory once, at its first start, and
//! keeps the answer there ([`remembered_mibps`]); a restart under load does not
//! probe a busy disk again.

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
    let _turn = ProbeTurn::wait();
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

/// The file in a data directory that keeps its first probe's answer.
pub const REMEMBERED_PROBE_FILE: &str = "direct-io-probe";

/// [`direct_write_mibps`] of `dir`, measured at the directory's first start and
/// read back from [`REMEMBERED_PROBE_FILE`] ever after; `true` with it when it
/// was read back. A file that does not read as a speed is measured over. Delete the
/// file to have the disk probed again.
pub fn remembered_mibps(dir: &Path) -> std::io::Result<(Option<f64>, bool)> {
    let file = dir.join(REMEMBERED_PROBE_FILE);
    if let Some(mibps) = std::fs::read_to_string(&file).ok().as_deref().and_then(parse_remembered) {
        return Ok((Some(mibps), true));
    }
    let measured = direct_write_mibps(dir)?;
    if let Some(mibps) = measured {
        let text = format!(
            "# The fastest of {PROBE_WRITES} O_DIRECT writes of 1 MiB at this data directory's first start.\n\
             # direct_io = \"auto\" decides by it at every start; delete this file to probe again.\n\
             mibps = {mibps:.0}\n"
        );
        // Written whole, then renamed into place: a reader never sees half a file.
        // (Not synced: a crash may leave none or an empty one, which is measured over.)
        let partial = dir.join(format!("{REMEMBERED_PROBE_FILE}.partial"));
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, &file)?;
    }
    Ok((measured, false))
}

/// The speed in a remembered probe's text, if it holds one.
fn parse_remembered(text: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("mibps"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .find_map(|value| value.trim().parse::<f64>().ok())
        .filter(|mibps| mibps.is_finite() && *mibps > 0.0)
}

/// The machine's probes take turns: held while a probe writes, so that nodes
/// started together on one machine do not slow each other's measurement. An
/// advisory lock (`flock`) on a file in the temporary directory, let go when
/// dropped or when the process dies; where the file cannot be opened or locked,
/// the probe goes ahead alone.
pub struct ProbeTurn {
    _file: Option<std::fs::File>,
}

/// The lock file probes take turns on.
fn probe_turn_path() -> std::path::PathBuf {
    std::env::temp_dir().join("shoal-direct-io-probe.lock")
}

impl ProbeTurn {
    /// Waits for the machine's other probes to finish (a probe takes tens of
    /// milliseconds).
    pub fn wait() -> ProbeTurn {
        ProbeTurn::wait_on(&probe_turn_path())
    }

    fn wait_on(path: &Path) -> ProbeTurn {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).ok();
        let file = file.filter(|file| lock(file, libc::LOCK_EX));
        ProbeTurn { _file: file }
    }
}

#[cfg(unix)]
fn lock(file: &std::fs::File, operation: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor the `File` owns; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), operation) == 0 }
}

#[cfg(not(unix))]
fn lock(_file: &std::fs::File, _operation: i32) -> bool {
    false
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

    #[test]
    fn the_first_probe_is_remembered_in_the_data_directory_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (first, read_back) = remembered_mibps(dir.path()).unwrap();
        assert!(!read_back);
        let Some(first) = first else {
            // No O_DIRECT here (tmpfs): nothing to remember, and nothing is left.
            assert!(!dir.path().join(REMEMBERED_PROBE_FILE).exists());
            return;
        };
        let kept = std::fs::read_to_string(dir.path().join(REMEMBERED_PROBE_FILE)).unwrap();
        assert!(kept.contains("delete this file"), "{kept}");
        // Read back, not measured again: the same speed, to the MiB/s written.
        let (again, read_back) = remembered_mibps(dir.path()).unwrap();
        assert!(read_back);
        assert!((again.unwrap() - first).abs() <= 0.5, "{again:?} against {first}");
        // An operator's (or another machine's) answer is taken as it stands.
        std::fs::write(dir.path().join(REMEMBERED_PROBE_FILE), "mibps = 123\n").unwrap();
        assert_eq!(remembered_mibps(dir.path()).unwrap(), (Some(123.0), true));
        // Text that holds no speed is measured over and replaced.
        for garbage in ["", "mibps = fast\n", "mibps = -5\n", "mibps = NaN\n", "speed = 700\n"] {
            std::fs::write(dir.path().join(REMEMBERED_PROBE_FILE), garbage).unwrap();
            let (measured, read_back) = remembered_mibps(dir.path()).unwrap();
            assert!(!read_back && measured.is_some(), "{garbage:?}");
            assert!(remembered_mibps(dir.path()).unwrap().1, "{garbage:?} was replaced");
        }
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(REMEMBERED_PROBE_FILE)], "only the remembered answer stays");
    }

    #[test]
    fn parse_reads_the_speed_line_and_nothing_else() {
        assert_eq!(parse_remembered("# comment\nmibps = 1200\n"), Some(1200.0));
        assert_eq!(parse_remembered("  mibps=640.5"), Some(640.5));
        assert_eq!(parse_remembered("# mibps = 1\n"), None);
        assert_eq!(parse_remembered("mibps = 0\n"), None);
        assert_eq!(parse_remembered("mibps = inf\n"), None);
    }

    #[cfg(unix)]
    #[test]
    fn probes_on_one_machine_take_turns() {
        // A lock file of its own, so that other tests' probes do not hold it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe.lock");
        let turn = ProbeTurn::wait_on(&path);
        assert!(turn._file.is_some(), "the lock file opens and locks");
        // Another open file of the same lock cannot take it meanwhile...
        let other = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        assert!(!lock(&other, libc::LOCK_EX | libc::LOCK_NB));
        // ...and can once the turn is over.
        drop(turn);
        assert!(lock(&other, libc::LOCK_EX | libc::LOCK_NB));
    }
}
