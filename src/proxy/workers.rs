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
