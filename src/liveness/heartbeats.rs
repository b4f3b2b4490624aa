//! Worker heartbeats: each worker runtime proves it still runs its tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::time::sleep_until;

/// How often each worker proves it is alive.
const BEAT: Duration = Duration::from_millis(10);

/// Last beat of each worker, in milliseconds since `origin`.
#[derive(Debug)]
pub struct Heartbeats {
    origin: Instant,
    beats: Vec<AtomicU64>,
}

impl Heartbeats {
    /// Starts a beating task on each worker runtime.
    pub fn start(workers: &[tokio::runtime::Handle]) -> Arc<Heartbeats> {
        let hb = Arc::new(Heartbeats {
            origin: Instant::now(),
            beats: workers.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        for (i, handle) in workers.iter().enumerate() {
            let weak = Arc::downgrade(&hb);
            handle.spawn(async move {
                // Two timers, re-armed in turn, each one beat after the
                // other. tokio wakes its driver (a write to its eventfd)
                // whenever a timer is armed earlier than every other one
                // pending; with one timer, that was every beat of a
                // worker with no sooner timer: 100 system calls a second
                // per worker. The timer re-armed here is always later
                // than the other, still pending.
                let start = tokio::time::Instant::now();
                let mut due = [start + BEAT, start + 2 * BEAT];
                let mut timers = due.map(|t| Box::pin(sleep_until(t)));
                for k in (0..2).cycle() {
                    timers[k].as_mut().await;
                    let Some(hb) = weak.upgrade() else { return };
                    let now = hb.origin.elapsed().as_millis() as u64;
                    hb.beats[i].store(now, Ordering::Relaxed);
                    // After a stall the other timer is past due: it fires
                    // at once, and beats missed are skipped.
                    due[k] = due[1 - k].max(tokio::time::Instant::now()) + BEAT;
                    timers[k].as_mut().reset(due[k]);
                }
            });
        }
        hb
    }

    /// The worker silent the longest, and for how long.
    pub fn stalest(&self) -> Option<(usize, Duration)> {
        let now = self.origin.elapsed().as_millis() as u64;
        self.beats
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    i,
                    Duration::from_millis(now.saturating_sub(b.load(Ordering::Relaxed))),
                )
            })
            .max_by_key(|(_, d)| *d)
    }
}
