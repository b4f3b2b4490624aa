//! A timer for "no progress for this long" on a stream polled by hand
//! (request bodies, upstream response bodies): armed when the stream
//! pends, disarmed when data arrives, expired when the stream stayed quiet
//! for the whole timeout.
//!
//! The sleep is allocated on the first wait and re-armed afterwards, so a
//! body arriving in many chunks does not cost a timer per chunk.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

#[derive(Debug)]
pub struct StallTimer {
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl StallTimer {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            sleep: None,
            armed: false,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The stream made progress.
    pub fn progress(&mut self) {
        self.armed = false;
    }

    /// The stream is pending: arms the timer if it is not running, and
    /// tells whether the stream has now been quiet for the whole timeout
    /// (registering the waker otherwise).
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if !self.armed {
            sleep.as_mut().reset(Instant::now() + timeout);
            self.armed = true;
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_a_full_quiet_timeout() {
        let mut timer = StallTimer::new(Duration::from_millis(100));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(!timer.expired(&mut cx));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert!(!timer.expired(&mut cx));
        // Data arrived: the next wait starts a fresh timeout.
        timer.progress();
        assert!(!timer.expired(&mut cx));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert!(!timer.expired(&mut cx), "only 60 ms since the progress");
        tokio::time::advance(Duration::from_millis(50)).await;
        assert!(timer.expired(&mut cx));
    }
}
