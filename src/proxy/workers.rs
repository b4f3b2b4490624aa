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
//!
//! With one worker per CPU (the default), each worker is pinned to a CPU
//! of its own, as nginx's `worker_cpu_affinity auto`: see [`cpu_plan`].

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::config::CpuAffinity;

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
/// request updates (an upstream server's idle connections) would
/// otherwise move between the workers' cores at each update, the cost
/// nginx avoids by giving each worker process its own.
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

    /// The slot of worker `index` (as [`current`] numbers them).
    pub fn at(&self, index: usize) -> &T {
        &self.slots[index % self.slots.len()].0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|s| &s.0)
    }
}

/// Holds on an `Arc<T>` that every worker's requests take: each worker's
/// requests share one [`WorkerHold`], so taking and dropping one writes counts
/// that only the worker's own core touches. Cloning the `Arc` itself on
/// every request wrote one count from every worker, and its cache line
/// moved between their cores twice a request.
#[derive(Debug)]
pub struct Holds<T> {
    slots: PerWorker<Mutex<Weak<WorkerHold<T>>>>,
}

/// A request's hold on a `T` (see [`Holds`]).
#[derive(Debug)]
pub struct WorkerHold<T>(Arc<T>);

impl<T> WorkerHold<T> {
    /// The hold on `of` that `slot` keeps, while a request still has it
    /// (weakly kept, so that nothing outlives the last request: a
    /// generation a reload replaced is freed then, not at this worker's
    /// next request), else a new one that `slot` keeps.
    pub fn shared(slot: &mut Weak<WorkerHold<T>>, of: &Arc<T>) -> Arc<WorkerHold<T>> {
        if let Some(hold) = slot.upgrade() {
            if Arc::ptr_eq(&hold.0, of) {
                return hold;
            }
        }
        let hold = Arc::new(WorkerHold(of.clone()));
        *slot = Arc::downgrade(&hold);
        hold
    }
}

impl<T> std::ops::Deref for WorkerHold<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Default for Holds<T> {
    fn default() -> Self {
        Holds {
            slots: PerWorker::new(|| Mutex::new(Weak::new())),
        }
    }
}

impl<T> Holds<T> {
    /// A hold on `of`, shared with the calling worker's other requests
    /// (see [`WorkerHold::shared`]).
    pub fn hold(&self, of: &Arc<T>) -> Arc<WorkerHold<T>> {
        let mut slot = self.slots.get().lock().unwrap_or_else(|e| e.into_inner());
        WorkerHold::shared(&mut slot, of)
    }
}

/// The CPU each worker is pinned to, if any (`Auto`): worker i to the
/// i-th of the CPUs `allowed` to this process (a container's cpuset
/// narrows them), when there is exactly one worker per allowed CPU.
///
/// Why pin: with wrk on 2 cores, the kernel's scheduler now and then
/// queued both workers on one CPU while the other ran wrk or idled;
/// `perf sched` showed a worker waiting 4–8 ms for its CPU, and every
/// connection of that worker waited with it. The proxied p99 at 64
/// connections read 4.5 ms unpinned and 2.0–2.4 ms pinned; nginx's
/// read 1.9–3.1 ms in the same runs (its workers, unpinned, slept and
/// woke about 1.5 times as often per request as vigil's, and a wake-up
/// is when the scheduler moves a task to an idle CPU).
///
/// Why only with one worker per CPU: with fewer workers than CPUs (a CPU
/// quota, a host shared with other work) the spare CPUs are where a
/// worker moves when its own is busy, and a pinned one could not.
pub fn cpu_plan(allowed: &[usize], workers: usize, mode: CpuAffinity) -> Option<Vec<usize>> {
    match mode {
        CpuAffinity::Auto if allowed.len() == workers => Some(allowed.to_vec()),
        CpuAffinity::Auto | CpuAffinity::Off => None,
    }
}

/// The CPUs the calling thread may run on.
fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain old data, sched_getaffinity writes at
    // most its size, and CPU_ISSET reads within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect())
    }
}

/// Pins the calling thread to `cpu`.
fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: as in `allowed_cpus`; CPU_SET writes within the set (a
    // CPU number past CPU_SETSIZE is not set, and the call then fails).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Running worker threads; they stop when this is dropped.
pub struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    /// The CPU it is pinned to (see [`cpu_plan`]).
    cpu: Option<usize>,
}

impl Workers {
    /// Starts `count` worker threads, each with its own runtime, pinned
    /// to CPUs as `affinity` and [`cpu_plan`] say.
    pub fn start(count: usize, affinity: CpuAffinity) -> io::Result<Workers> {
        let count = count.max(1);
        let plan = match allowed_cpus() {
            Ok(allowed) => cpu_plan(&allowed, count, affinity),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the CPUs vigil may run on; workers are not pinned");
                None
            }
        };
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let (handle_tx, handle_rx) = mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let cpu = plan.as_ref().and_then(|p| p.get(index).copied());
            std::thread::Builder::new()
                .name(format!("vigil-worker-{index}"))
                .spawn(move || {
                    WORKER_INDEX.with(|w| w.set(index));
                    // First in, so dropped last: after the runtime and
                    // its tasks have freed what they hold.
                    let _spare_blocks = crate::spare_blocks::enable_on_this_thread();
                    // Started from the control thread, whose priority is
                    // raised for VRRP; client traffic runs at normal.
                    crate::privileges::normal_thread_priority();
                    let cpu = cpu.filter(|&cpu| match pin_current_thread(cpu) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(worker = index, cpu, error = %e, "cannot pin the worker to its CPU; it runs unpinned");
                            false
                        }
                    });
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
                    let _ = handle_tx.send(Ok((runtime.handle().clone(), cpu)));
                    // Runs every task spawned onto this worker until told to
                    // stop (or the Workers value is dropped).
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                })?;
            let (handle, cpu) = handle_rx
                .recv()
                .map_err(|_| io::Error::other("worker thread died at start"))??;
            workers.push(Worker {
                handle,
                stop: Some(stop_tx),
                cpu,
            });
        }
        let workers = Workers { workers };
        if plan.is_some() {
            tracing::info!(cpus = ?workers.cpus(), "workers pinned one per CPU");
        }
        Ok(workers)
    }

    /// The CPU each worker is pinned to, in worker order.
    pub fn cpus(&self) -> Vec<Option<usize>> {
        self.workers.iter().map(|w| w.cpu).collect()
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
        let workers = Workers::start(3, CpuAffinity::Off).unwrap();
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

    #[test]
    fn a_workers_requests_share_one_hold_while_any_has_it() {
        let (a, b) = (Arc::new(1), Arc::new(2));
        let mut slot = Weak::new();
        let first = WorkerHold::shared(&mut slot, &a);
        let second = WorkerHold::shared(&mut slot, &a);
        assert!(Arc::ptr_eq(&first, &second), "one hold for both");
        assert_eq!(Arc::strong_count(&a), 2, "one count on the value");
        drop((first, second));
        assert_eq!(Arc::strong_count(&a), 1, "kept weakly: released");
        let again = WorkerHold::shared(&mut slot, &a);
        assert_eq!(**again, 1);
        // Another value (a reload's new generation): a new hold, and the
        // old one lives on with the requests that have it.
        let other = WorkerHold::shared(&mut slot, &b);
        assert_eq!((**again, **other), (1, 2));
        assert_eq!(Arc::strong_count(&a), 2);
        drop(again);
        assert_eq!(Arc::strong_count(&a), 1);
    }

    #[test]
    fn holds_are_per_worker() {
        configure(2);
        let value = Arc::new(7);
        let holds = Arc::new(Holds::default());
        let workers = Workers::start(2, CpuAffinity::Off).unwrap();
        let (tx, rx) = mpsc::channel();
        for handle in workers.handles() {
            let (holds, value, tx) = (holds.clone(), value.clone(), tx.clone());
            handle.spawn(async move {
                let (h1, h2) = (holds.hold(&value), holds.hold(&value));
                assert!(Arc::ptr_eq(&h1, &h2));
                tx.send(h1).unwrap();
            });
        }
        let (x, y) = (rx.recv().unwrap(), rx.recv().unwrap());
        assert!(!Arc::ptr_eq(&x, &y), "each worker has its own");
        assert_eq!((**x, **y), (7, 7));
    }

    #[test]
    fn workers_are_pinned_only_one_per_allowed_cpu() {
        use CpuAffinity::{Auto, Off};
        // One worker per allowed CPU: worker i on the i-th, whatever the
        // CPU numbers (a container's cpuset).
        assert_eq!(cpu_plan(&[0, 1], 2, Auto), Some(vec![0, 1]));
        assert_eq!(cpu_plan(&[2, 3, 6], 3, Auto), Some(vec![2, 3, 6]));
        assert_eq!(cpu_plan(&[5], 1, Auto), Some(vec![5]));
        // Fewer or more workers than CPUs, or off: the scheduler decides.
        for allowed in [&[][..], &[0], &[0, 1], &[0, 1, 2, 3]] {
            for workers in 1..=5 {
                assert_eq!(cpu_plan(allowed, workers, Off), None);
                if allowed.len() != workers {
                    assert_eq!(
                        cpu_plan(allowed, workers, Auto),
                        None,
                        "{allowed:?} {workers}"
                    );
                }
            }
        }
    }

    /// Each worker runs on its planned CPU alone (checked from inside the
    /// worker threads, against the kernel's own record).
    #[test]
    fn auto_pins_each_worker_to_its_own_cpu() {
        let allowed = allowed_cpus().unwrap();
        let workers = Workers::start(allowed.len(), CpuAffinity::Auto).unwrap();
        let planned: Vec<Option<usize>> = allowed.iter().copied().map(Some).collect();
        assert_eq!(workers.cpus(), planned);
        let (tx, rx) = mpsc::channel();
        for handle in workers.handles() {
            let tx = tx.clone();
            handle.spawn(async move {
                tx.send((current(), allowed_cpus().unwrap())).unwrap();
            });
        }
        let mut seen: Vec<_> = (0..allowed.len()).map(|_| rx.recv().unwrap()).collect();
        seen.sort();
        for (index, cpus) in seen {
            assert_eq!(cpus, vec![allowed[index]], "worker {index}");
        }
        // Off: each worker may run anywhere the process may.
        let free = Workers::start(allowed.len(), CpuAffinity::Off).unwrap();
        assert!(free.cpus().iter().all(Option::is_none));
        let (tx, rx) = mpsc::channel();
        for handle in free.handles() {
            let tx = tx.clone();
            handle.spawn(async move { tx.send(allowed_cpus().unwrap()).unwrap() });
        }
        for _ in 0..allowed.len() {
            assert_eq!(rx.recv().unwrap(), allowed);
        }
    }
}
