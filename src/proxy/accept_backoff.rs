//! What a listener does when `accept` fails: most failures are about the
//! process, not the connection (EMFILE: out of file descriptors; ENFILE:
//! the system is), and retrying at once would spin a core and flood the log
//! while nothing changes (issue 13 saw 40 lines a second). So the listener
//! pauses, longer each time up to a cap, and logs at most once a second
//! with the count of failures it did not log. The pause is short enough
//! that connections in the backlog are served soon after fds free up.
//!
//! Pure logic (time is passed in); the accept loop does the sleeping.

use std::io;
use std::time::{Duration, Instant};

/// First pause after a failure.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause: fds freed by closing connections are used this soon.
const MAX_PAUSE: Duration = Duration::from_millis(200);
/// At most one log line per this long.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Backoff and log throttling for one accept loop.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    pause: Option<Duration>,
    last_log: Option<Instant>,
    unlogged: u64,
}

/// What to do after a failed accept.
#[derive(Debug, PartialEq, Eq)]
pub struct AfterFailure {
    /// Sleep this long before accepting again.
    pub pause: Duration,
    /// Log now, mentioning this many earlier failures that were not logged;
    /// `None`: stay quiet.
    pub log: Option<u64>,
}

impl AcceptBackoff {
    /// A failed accept at `now`.
    pub fn failed(&mut self, now: Instant) -> AfterFailure {
        let pause = self.pause.map_or(FIRST_PAUSE, |p| (p * 2).min(MAX_PAUSE));
        self.pause = Some(pause);
        let log = match self.last_log {
            Some(at) if now.duration_since(at) < LOG_EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        };
        AfterFailure { pause, log }
    }

    /// A successful accept: the next failure starts with a short pause.
    pub fn succeeded(&mut self) {
        self.pause = None;
    }
}

/// Errors about the one connection being accepted (it was reset while
/// queued, say): skip it and accept the next at once.
pub fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO | libc::EPERM | libc::EINTR)
    )
}

/// The metric label for an accept error.
pub fn reason(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EMFILE) => "emfile",
        Some(libc::ENFILE) => "enfile",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_a_cap_and_reset_on_success() {
        let mut b = AcceptBackoff::default();
        let now = Instant::now();
        let pauses: Vec<_> = (0..8).map(|_| b.failed(now).pause).collect();
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert_eq!(pauses[1], FIRST_PAUSE * 2);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*pauses.last().unwrap(), MAX_PAUSE);
        b.succeeded();
        assert_eq!(b.failed(now).pause, FIRST_PAUSE);
    }

    #[test]
    fn logs_once_per_second_with_the_suppressed_count() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.failed(t0).log, Some(0));
        let quiet = (1..40)
            .map(|i| b.failed(t0 + Duration::from_millis(i * 20)).log)
            .filter(Option::is_some)
            .count();
        assert_eq!(quiet, 0, "logged within the second");
        assert_eq!(b.failed(t0 + Duration::from_millis(1001)).log, Some(39));
    }

    #[test]
    fn reasons_name_fd_exhaustion() {
        assert_eq!(
            reason(&io::Error::from_raw_os_error(libc::EMFILE)),
            "emfile"
        );
        assert_eq!(
            reason(&io::Error::from_raw_os_error(libc::ENFILE)),
            "enfile"
        );
        assert_eq!(
            reason(&io::Error::from_raw_os_error(libc::ECONNABORTED)),
            "other"
        );
    }
}
