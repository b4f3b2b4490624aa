//! Worker threads: one single-threaded tokio runtime per core, the way
//! nginx runs one worker process per core.
//!
//! Why not tokio's multi-threaded scheduler: a proxied request touches
//! three tasks (client connection, upstream connection, the request
//! itself), and on a work-stealing runtime they wake each other across
//! threads. Measured here with wrk on 2 cores, a proxied small response
//! ran at 27k req/s on the multi-threaded runtime and 41k req/s on one
//! single-threaded runtime. So each worker owns its listening sockets
//! (SO_REUSEPORT spreads connections), its connections and its share of
//! the upstream keep-alive cache, and tasks never migrate.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running the current thread (0 elsewhere).
pub fn current() -> usize {
    WORKER_INDEX.with(Cell::get)
}

/// How many workers the configuration asks for (the largest seen), so
/// that per-worker state is sized before the workers start.
static CONFIGURED: AtomicUsize = AtomicUsize::new(1);

/// Records that `count` workers will run (called as a configuration is
/// built; the count cannot change on reload).
pub fn configure(count: usize) {
    CONFIGURED.fetch_max(count.max(1), Ordering::Relaxed);
}

/// One `T` per worker, each on cache lines of its own: state that every
/// request updates (an upstream server's idle connections) would otherwise move between the workers' cores at each
/// update, the cost nginx avoids by giving each worker process its own.
/// Workers beyond the configured count share slots, which stays correct.
#[derive(Debug)]
pub struct PerWorker<T> {
    slots: Box<[CacheLine<T>]>,
}

/// 128 bytes: a cache line, and the pair that adjacent-line prefetching
/// fetches together on x86.
#[derive(Debug)]
#[repr(align(128))]
struct CacheLine<T>(T);

impl<T> PerWorker<T> {
    pub fn new(mut make: impl FnMut() -> T) -> Self {
        let count = CONFIGURED.load(Ordering::Relaxed);
        PerWorker {
            slots: (0..count).map(|_| CacheLine(make())).collect(),
        }
    }

    /// The current worker's own slot.
    pub fn get(&self) -> &T {
        &self.slots[current() % self.slots.len()].0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|s| &s.0)
    }
}

/// Running worker threads; they stop when this is dropped.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `count` worker threads, each with its own runtime.
    pub fn start(count: usize) -> io::Result<Workers> {
        let mut workers = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let (handle_tx, handle_rx) = mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("vigil-worker-{index}"))
                .spawn(move || {
                    WORKER_INDEX.with(|w| w.set(index));
                    // Started from the control thread, whose priority is
                    // raised for VRRP; client traffic runs at normal.
                    crate::privileges::normal_thread_priority();
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    // Runs every task spawned onto this worker until told to
                    // stop (or the Workers value is dropped).
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| io::Error::other("worker thread died at start"))??;
            workers.push(Worker {
                handle,
                stop: Some(stop_tx),
            });
        }
        Ok(Workers { workers })
    }

    /// Runtime handles, in worker order.
    pub fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.workers.iter().map(|w| &w.handle)
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Signal only: joining here could block a runtime thread.
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn each_worker_has_a_slot_of_its_own_on_its_own_lines() {
        configure(3);
        let per = Arc::new(PerWorker::new(|| AtomicUsize::new(0)));
        let workers = Workers::start(3).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        for handle in workers.handles() {
            let (per, done) = (per.clone(), done_tx.clone());
            handle.spawn(async move {
                per.get().fetch_add(current() + 1, Ordering::Relaxed);
                done.send(()).unwrap();
            });
        }
        for _ in 0..3 {
            done_rx.recv().unwrap();
        }
        let seen: Vec<usize> = per.iter().map(|s| s.load(Ordering::Relaxed)).collect();
        assert_eq!(seen[..3], [1, 2, 3], "worker i counted into slot i");
        // Off the workers (this thread), slot 0.
        assert_eq!(per.get().load(Ordering::Relaxed), 1);
        let at = |i: usize| per.iter().nth(i).unwrap() as *const AtomicUsize as usize;
        assert!(at(1) - at(0) >= 128 && at(0) % 128 == 0);
    }
}
