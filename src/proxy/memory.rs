//! Giving memory back after a wave of connections closes or parks.
//!
//! Each connection's buffers come from glibc malloc, whose per-thread
//! arenas keep freed memory for reuse instead of returning it: after
//! 10,000 idle keep-alive connections closed, vigil's RSS stayed where the
//! peak had been (issue 13: ≈ 340 MiB after six rounds). The same goes
//! for the buffers idle connections give back when they park (see
//! `conn::park`): freed between the small blocks that stay, they would
//! still count. When the connections holding buffers (open, not parked)
//! have fallen well below their recent peak, a `malloc_trim` hands the
//! free pages back to the kernel. It runs on a blocking thread (it walks
//! the arenas), at most once per check period.

use std::time::Duration;

/// How often the connection count is looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Connections that must have gone since the peak before trimming: below
/// this, what could come back is not worth a walk over the heap.
const WORTH_TRIMMING: i64 = 128;

/// Decides when to trim, from the connection counts over time.
#[derive(Debug, Default)]
pub struct TrimPolicy {
    /// Most connections seen open since the last trim.
    open_peak: i64,
    /// Most connections seen holding buffers (open, not parked) since the
    /// last trim.
    busy_peak: i64,
}

impl TrimPolicy {
    /// `open` connections are open now, `parked` of them parked; true when
    /// a trim is due: a wave of connections closed (their tasks went) or
    /// parked (their buffers went).
    pub fn observe(&mut self, open: i64, parked: i64) -> bool {
        let busy = open - parked;
        self.open_peak = self.open_peak.max(open);
        self.busy_peak = self.busy_peak.max(busy);
        if self.open_peak - open >= WORTH_TRIMMING || self.busy_peak - busy >= WORTH_TRIMMING {
            self.open_peak = open;
            self.busy_peak = busy;
            return true;
        }
        false
    }
}

/// Watches the open and parked connection gauges and trims the heap when
/// a wave of connections has closed or parked. Runs until the runtime
/// stops.
pub async fn trim_after_closes(metrics: std::sync::Arc<crate::metrics::Metrics>) {
    let mut policy = TrimPolicy::default();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let open = metrics.connections_active.get();
        let parked = metrics.connections_parked.get();
        if policy.observe(open, parked) {
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and releases glibc's free lists.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(released, "returned free heap memory to the kernel");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_wave_has_closed() {
        let mut p = TrimPolicy::default();
        assert!(!p.observe(100, 0));
        assert!(!p.observe(10_000, 0));
        assert!(!p.observe(9_950, 0), "only 50 gone");
        assert!(p.observe(2_000, 0));
        // The new baseline is what is open now.
        assert!(!p.observe(1_900, 0));
        assert!(!p.observe(3_000, 0));
        assert!(p.observe(2_400, 0));
    }

    #[test]
    fn trims_once_a_wave_has_parked_and_again_when_it_closes() {
        let mut p = TrimPolicy::default();
        assert!(!p.observe(1_000, 0));
        assert!(!p.observe(1_000, 50), "only 50 parked");
        assert!(p.observe(1_000, 900), "a wave parked");
        // Parked connections closing free no buffers, but their tasks.
        assert!(!p.observe(950, 850));
        assert!(p.observe(100, 0), "a wave closed");
    }
}
