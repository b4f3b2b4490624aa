//! The wait for a response head (nginx's `proxy_read_timeout` once the
//! request is out), timed by one timer that stays with the upstream
//! connection and is re-armed lazily, as nginx's timers are
//! (`NGX_TIMER_LAZY_DELAY`).
//!
//! Why: a `tokio::time::timeout` per request puts an entry into the
//! runtime's timer wheel and takes it out again, which was about 1.5 % of
//! a proxied request's user time in perf. Here a keep-alive connection
//! arms its timer about once per `read_timeout`: a wait whose deadline is
//! later than the armed one leaves the timer be, and when it fires before
//! that wait's own deadline, the wait re-arms it for its deadline. A wait
//! is therefore never cut short, and never lasts more than a timer tick
//! past its deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;

use tokio::time::{Instant, Sleep};

/// A connection's head timer. Created unarmed; the first wait that
/// pends arms it.
#[derive(Debug, Default)]
pub struct HeadTimer {
    sleep: Option<Pin<Box<Sleep>>>,
}

impl HeadTimer {
    /// Whether `deadline` has passed. Otherwise `cx` is woken at the
    /// latest at `deadline` (earlier when an older deadline fires first;
    /// the caller then simply asks again).
    pub fn expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            // Armed for a later time (read_timeout shortened by a
            // reload): that would wake this wait too late.
            sleep.as_mut().reset(deadline);
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() >= deadline {
                return true;
            }
            // An earlier wait's deadline fired: keep going to ours.
            sleep.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(futures_util::task::noop_waker_ref())
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_own_deadline_never_before() {
        let mut timer = HeadTimer::default();
        let timeout = Duration::from_millis(100);
        // Request 1 arms the timer for t=100.
        let first = Instant::now() + timeout;
        assert!(!timer.expired(&mut cx(), first));
        tokio::time::advance(Duration::from_millis(40)).await;
        // Request 2 (t=40) waits until t=140 on the same timer.
        let second = Instant::now() + timeout;
        assert!(!timer.expired(&mut cx(), second));
        tokio::time::advance(Duration::from_millis(61)).await;
        // t=101: the first deadline fired, the second has not come.
        assert!(!timer.expired(&mut cx(), second), "cut short at t=101");
        tokio::time::advance(Duration::from_millis(38)).await;
        assert!(!timer.expired(&mut cx(), second), "cut short at t=139");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(timer.expired(&mut cx(), second), "still waiting at t=141");
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_rearms_a_later_timer() {
        let mut timer = HeadTimer::default();
        // Armed for 10 s, then a wait with a 50 ms deadline (a reload
        // shortened read_timeout).
        assert!(!timer.expired(&mut cx(), Instant::now() + Duration::from_secs(10)));
        let short = Instant::now() + Duration::from_millis(50);
        assert!(!timer.expired(&mut cx(), short));
        tokio::time::advance(Duration::from_millis(51)).await;
        assert!(timer.expired(&mut cx(), short), "woken 10 s late");
    }

    #[tokio::test(start_paused = true)]
    async fn the_waiting_task_is_woken_by_the_timer() {
        let mut timer = HeadTimer::default();
        let deadline = Instant::now() + Duration::from_millis(30);
        let started = Instant::now();
        // A wait that only the timer can end; an early fire (the deadline
        // of a wait before it) must not end it either.
        assert!(!timer.expired(&mut cx(), Instant::now() + Duration::from_millis(10)));
        std::future::poll_fn(|cx| {
            if timer.expired(cx, deadline) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(30) && waited < Duration::from_millis(32),
            "{waited:?}"
        );
    }
}
