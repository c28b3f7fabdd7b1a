//! The event trace of one run: what was injected, who led which term, what was
//! acknowledged, each stamped with virtual time. Its digest tells whether two runs
//! of the same seed did exactly the same thing; its tail explains a failure.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// Events kept for a failure report.
const TAIL: usize = 60;

#[derive(Clone)]
pub struct Trace {
    inner: Arc<Mutex<Inner>>,
    start: Instant,
}

struct Inner {
    /// Print every event as it happens (`SHOAL_SIM_TRACE=1`).
    print: bool,
    /// FNV-1a over every event, in order.
    digest: u64,
    events: u64,
    tail: VecDeque<String>,
}

impl Trace {
    pub fn new() -> Trace {
        let print = std::env::var_os("SHOAL_SIM_TRACE").is_some();
        let inner = Inner { print, digest: 0xcbf2_9ce4_8422_2325, events: 0, tail: VecDeque::new() };
        Trace { inner: Arc::new(Mutex::new(inner)), start: Instant::now() }
    }

    /// Virtual milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    pub fn record(&self, event: impl Into<String>) {
        let event = format!("{:>7}ms {}", self.now_ms(), event.into());
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for byte in event.bytes().chain([b'\n']) {
            inner.digest = (inner.digest ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        inner.events += 1;
        if inner.print {
            println!("  {event}");
        }
        if inner.tail.len() == TAIL {
            inner.tail.pop_front();
        }
        inner.tail.push_back(event);
    }

    /// Folds `bytes` (e.g. a message on the wire) into the digest without keeping
    /// an event, so the digest covers every byte exchanged.
    pub fn absorb(&self, bytes: &[u8]) {
        let now = self.now_ms().to_be_bytes();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for byte in now.iter().chain(bytes) {
            inner.digest = (inner.digest ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn digest(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).digest
    }

    pub fn events(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).events
    }

    /// The last events, one a line.
    pub fn tail(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tail.iter().map(|e| format!("    {e}\n")).collect()
    }
}
