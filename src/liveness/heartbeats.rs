//! Worker heartbeats: each worker runtime proves it still runs its tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
                let mut tick = tokio::time::interval(BEAT);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let Some(hb) = weak.upgrade() else { return };
                    let now = hb.origin.elapsed().as_millis() as u64;
                    hb.beats[i].store(now, Ordering::Relaxed);
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
