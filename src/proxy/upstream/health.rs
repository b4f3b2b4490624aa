//! Server health: passive (nginx max_fails / fail_timeout, from real
//! traffic) and active (periodic HTTP checks with rise / fall).
//!
//! Both are pure state machines fed with `now`; the pool owns them behind
//! a lock and the checker task only feeds results in.

use std::time::{Duration, Instant};

/// nginx's passive health: `max_fails` failures within `fail_timeout` make
/// the server unavailable for `fail_timeout`; after that one request is let
/// through as a probe, and a success clears the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveHealth {
    max_fails: u32,
    fail_timeout: Duration,
    fails: u32,
    /// When the current failure window started.
    window_start: Option<Instant>,
    down_until: Option<Instant>,
}

impl PassiveHealth {
    pub fn new(max_fails: u32, fail_timeout: Duration) -> Self {
        Self {
            max_fails,
            fail_timeout,
            fails: 0,
            window_start: None,
            down_until: None,
        }
    }

    /// May requests be sent now?
    pub fn available(&self, now: Instant) -> bool {
        self.down_until.is_none_or(|until| now >= until)
    }

    /// Records a failed attempt; returns true if this marked it down.
    pub fn failure(&mut self, now: Instant) -> bool {
        if self.max_fails == 0 {
            return false;
        }
        let window_over = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= self.fail_timeout);
        if window_over {
            self.fails = 0;
            self.window_start = Some(now);
        }
        self.fails += 1;
        if self.fails >= self.max_fails {
            let was_up = self.available(now);
            self.down_until = Some(now + self.fail_timeout);
            // Start a fresh window for the probe after the pause.
            self.fails = 0;
            self.window_start = None;
            return was_up;
        }
        false
    }

    /// Records a success: the record is cleared.
    pub fn success(&mut self) {
        self.fails = 0;
        self.window_start = None;
        self.down_until = None;
    }
}

/// Active health: `fall` consecutive failed checks mark a server down,
/// `rise` consecutive good ones mark it up again. Servers start up, so a
/// fresh vigil serves at once; the first check runs immediately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHealth {
    rise: u32,
    fall: u32,
    up: bool,
    streak: u32,
}

/// A change of an active health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    WentUp,
    WentDown,
}

impl ActiveHealth {
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            up: true,
            streak: 0,
        }
    }

    /// A state that starts down (a reload keeping a known-bad server out).
    pub fn down(rise: u32, fall: u32) -> Self {
        Self {
            up: false,
            ..Self::new(rise, fall)
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Feeds one check result.
    pub fn record(&mut self, ok: bool) -> Option<Transition> {
        if ok == self.up {
            // Agrees with the current state: no streak towards a change.
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.streak < needed {
            return None;
        }
        self.up = ok;
        self.streak = 0;
        Some(if ok {
            Transition::WentUp
        } else {
            Transition::WentDown
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn passive_max_fails_within_fail_timeout() {
        let t0 = Instant::now();
        let mut h = PassiveHealth::new(3, 10 * S);
        assert!(!h.failure(t0));
        assert!(!h.failure(t0 + S));
        assert!(h.available(t0 + S));
        assert!(h.failure(t0 + 2 * S), "third failure marks it down");
        assert!(!h.available(t0 + 3 * S));
        assert!(!h.available(t0 + 11 * S));
        assert!(h.available(t0 + 12 * S), "back after fail_timeout");
        h.success();
        assert!(h.available(t0 + 12 * S));
    }

    #[test]
    fn passive_failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut h = PassiveHealth::new(2, 10 * S);
        assert!(!h.failure(t0));
        assert!(!h.failure(t0 + 11 * S), "window restarted");
        assert!(h.available(t0 + 12 * S));
        assert!(h.failure(t0 + 12 * S));
    }

    #[test]
    fn passive_probe_failure_keeps_it_down() {
        let t0 = Instant::now();
        let mut h = PassiveHealth::new(1, 10 * S);
        assert!(h.failure(t0));
        let probe = t0 + 10 * S;
        assert!(h.available(probe));
        h.failure(probe);
        assert!(!h.available(probe + S));
    }

    #[test]
    fn passive_max_fails_zero_never_marks_down() {
        let t0 = Instant::now();
        let mut h = PassiveHealth::new(0, 10 * S);
        for i in 0..100 {
            assert!(!h.failure(t0 + i * S));
        }
        assert!(h.available(t0));
    }

    #[test]
    fn active_rise_and_fall() {
        let mut h = ActiveHealth::new(2, 3);
        assert!(h.is_up());
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None, "a success resets the streak");
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(Transition::WentDown));
        assert!(!h.is_up());
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(Transition::WentUp));
        assert!(h.is_up());
    }
}
