//! The async runtime openraft runs on: tokio, with a random generator that a
//! simulation can seed.
//!
//! openraft draws every election timeout (and a few tick offsets) from its
//! runtime's `thread_rng()`. Tokio's runtime answers with the operating system's
//! entropy, which makes two runs of the same simulated schedule elect different
//! leaders at different times. [`ShoalRuntime`] delegates everything to tokio but
//! draws from a per-thread [`StdRng`]: seeded from entropy unless the thread
//! called [`seed_thread_rng`], which the simulation does on its single thread
//! before it starts any group. Production never seeds it, so it behaves as before.
//!
//! Its watch channels wake their receivers in a fixed order (see
//! [`ordered_watch`](crate::ordered_watch)); with tokio's, which receiver runs
//! first is random, and replays of a simulated schedule diverged.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::time::Duration;

use openraft::OptionalSend;
#[allow(deprecated)] // openraft now points at the `openraft-rt-tokio` crate; this is the same type.
use openraft::impls::TokioRuntime;
use openraft::rt::AsyncRuntime;
use openraft_rand::rngs::StdRng;
use openraft_rand::{Rng, SeedableRng};

thread_local! {
    /// The generator each `thread_rng()` call forks a fresh generator from.
    static THREAD_RNG: RefCell<StdRng> = RefCell::new(openraft_rand::make_rng());
}

/// Makes every later random draw of openraft on this thread follow from `seed`.
pub fn seed_thread_rng(seed: u64) {
    THREAD_RNG.with(|rng| *rng.borrow_mut() = StdRng::seed_from_u64(seed));
}

/// Tokio, with a seedable random generator (see the module documentation).
#[derive(Debug)]
pub struct ShoalRuntime {
    tokio: TokioRuntime,
}

#[allow(deprecated)]
type Tokio = TokioRuntime;

impl AsyncRuntime for ShoalRuntime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = StdRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        THREAD_RNG.with(|rng| StdRng::seed_from_u64(rng.borrow_mut().next_u64()))
    }

    type Mpsc = <Tokio as AsyncRuntime>::Mpsc;
    type Watch = crate::ordered_watch::OrderedWatch;
    type Oneshot = <Tokio as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        ShoalRuntime { tokio: Tokio::new(threads) }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.tokio.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Tokio::spawn_blocking(f)
    }
}

#[cfg(test)]
mod tests {
    use openraft_rand::RngExt;

    use super::*;

    fn draws() -> Vec<u64> {
        (0..4).map(|_| ShoalRuntime::thread_rng().random_range(150..300)).collect()
    }

    #[test]
    fn a_seeded_thread_repeats_its_draws() {
        seed_thread_rng(42);
        let first = draws();
        seed_thread_rng(42);
        assert_eq!(draws(), first);
        seed_thread_rng(43);
        assert_ne!(draws(), first, "another seed draws differently");
    }
}
