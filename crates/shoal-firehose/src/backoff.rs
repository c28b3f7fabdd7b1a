//! The one retry rhythm of every destination: pause 200 ms, doubling to a cap
//! (30 s), for as long as the destination's `RetryOptions` allow (or forever,
//! for S3, which Firehose retries for a day and Shoal until it works).

use std::time::Duration;

use tokio::time::Instant;

const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(30);

pub struct Backoff {
    pause: Duration,
    cap: Duration,
    deadline: Option<Instant>,
}

impl Backoff {
    /// Retries until `retry_secs` have passed since now.
    pub fn for_secs(retry_secs: u64) -> Backoff {
        Backoff { pause: FIRST_PAUSE, cap: MAX_PAUSE, deadline: Some(Instant::now() + Duration::from_secs(retry_secs)) }
    }

    /// Retries without end.
    pub fn forever() -> Backoff {
        Backoff { pause: FIRST_PAUSE, cap: MAX_PAUSE, deadline: None }
    }

    /// Pauses of at most `cap`.
    pub fn capped_at(mut self, cap: Duration) -> Backoff {
        self.cap = cap;
        self
    }

    /// The pause before the next attempt.
    pub fn pause(&self) -> Duration {
        self.pause
    }

    /// Sleeps before the next attempt; `false` (without sleeping) when that
    /// attempt would start after the deadline: give up.
    pub async fn wait(&mut self) -> bool {
        if self.deadline.is_some_and(|deadline| Instant::now() + self.pause > deadline) {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(self.cap);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pauses_double_to_the_cap_and_stop_at_the_deadline() {
        let mut backoff = Backoff::forever().capped_at(Duration::from_millis(500));
        for expected in [200, 400, 500, 500] {
            assert_eq!(backoff.pause(), Duration::from_millis(expected));
            assert!(backoff.wait().await);
        }
        let mut limited = Backoff::for_secs(1);
        let mut waits = 0;
        while limited.wait().await {
            waits += 1;
        }
        // 200 + 400 ms fit in a second; the next 800 ms would not.
        assert_eq!(waits, 2);
    }
}
