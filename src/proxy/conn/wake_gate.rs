//! Polling a future only when it asked to be.
//!
//! A connection task waits on its hyper connection and, in the same
//! `select!`, on the reasons to close it (a cancellation token, two watch
//! channels) and a parking timer. Every wake-up of the task (every read
//! and write of every request) polls all of them, and polling a waiting
//! `Notified` takes its `Notify`'s lock, a waiting `Sleep` re-registers
//! its waker: about a tenth of a proxied request's user time went there.
//! [`WakeGate`] hands the inner future a waker of its own and polls it
//! again only once that waker fired (or once it is changed through
//! [`WakeGate::changed`]), so a wake-up for the connection's traffic costs
//! each gated future one atomic load.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pin_project_lite::pin_project! {
    /// `inner`, polled only when its own waker fired since its last poll.
    pub(crate) struct WakeGate<F> {
        #[pin]
        inner: F,
        signal: Arc<Signal>,
        // `signal` as a waker, made once.
        waker: Waker,
        // The task waker last registered in `signal`, kept to compare:
        // the same task polling again needs no new registration.
        registered: Option<Waker>,
    }
}

/// What the inner future's waker sets, and the task to wake for it.
/// The task's waker stays stored after a wake (an `AtomicWaker` would
/// give it up), so the gate re-registers only when the task's waker
/// changes, never at a plain poll.
#[derive(Debug)]
struct Signal {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        // Cloned out, so the task is not woken under the lock.
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl<F> WakeGate<F> {
    pub(crate) fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            // A future has to be polled once to register its waker.
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        let waker = Waker::from(signal.clone());
        Self {
            inner,
            signal,
            waker,
            registered: None,
        }
    }

    /// The inner future, to change it (reset a `Sleep`, say): it is polled
    /// at the next poll whether or not its waker fired, since a changed
    /// future may need a poll to register for its new state.
    pub(crate) fn changed(self: Pin<&mut Self>) -> Pin<&mut F> {
        let this = self.project();
        this.signal.woken.store(true, Ordering::Release);
        this.inner
    }
}

impl<F: Future> Future for WakeGate<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake between the two is
        // then seen now or wakes the task again, never lost.
        if !this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            *this.signal.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
            *this.registered = Some(waker);
        }
        // A plain load first: the usual answer is no, and a swap would
        // be a locked instruction at every wake-up.
        if !this.signal.woken.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // Cleared before the inner future looks at its state: a wake after
        // this sets the flag again for the next poll.
        this.signal.woken.swap(false, Ordering::AcqRel);
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its polls; pending until `ready` is set, waking whoever
    /// polled it last when `ready` is set through [`Probe::finish`].
    #[derive(Default)]
    struct Probe {
        polls: AtomicUsize,
        ready: AtomicBool,
        waker: std::sync::Mutex<Option<Waker>>,
    }

    impl Probe {
        fn finish(&self) {
            self.ready.store(true, Ordering::SeqCst);
            if let Some(w) = self.waker.lock().unwrap().take() {
                w.wake();
            }
        }
    }

    fn probe_future(probe: Arc<Probe>) -> impl Future<Output = usize> {
        std::future::poll_fn(move |cx| {
            probe.polls.fetch_add(1, Ordering::SeqCst);
            if probe.ready.load(Ordering::SeqCst) {
                return Poll::Ready(7);
            }
            *probe.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    fn noop_cx_poll<F: Future>(f: Pin<&mut F>, task: &Waker) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(task))
    }

    /// Wakes of the task alone do not reach the inner future; its own
    /// wake does, and the task is woken for it.
    #[test]
    fn inner_is_polled_only_after_its_own_wake() {
        let probe = Arc::new(Probe::default());
        let task_wakes = Arc::new(Counter::default());
        let task = Waker::from(task_wakes.clone());
        let mut gate = std::pin::pin!(WakeGate::new(probe_future(probe.clone())));

        assert!(noop_cx_poll(gate.as_mut(), &task).is_pending());
        assert_eq!(
            probe.polls.load(Ordering::SeqCst),
            1,
            "first poll registers"
        );
        for _ in 0..10 {
            assert!(noop_cx_poll(gate.as_mut(), &task).is_pending());
        }
        assert_eq!(probe.polls.load(Ordering::SeqCst), 1, "task wakes filtered");

        probe.finish();
        assert_eq!(
            task_wakes.0.load(Ordering::SeqCst),
            1,
            "its wake wakes the task"
        );
        assert_eq!(noop_cx_poll(gate.as_mut(), &task), Poll::Ready(7));
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
    }

    /// After `changed`, the inner future is polled again without a wake.
    #[test]
    fn a_changed_inner_is_polled_again() {
        let probe = Arc::new(Probe::default());
        let task = Waker::from(Arc::new(Counter::default()));
        let mut gate = std::pin::pin!(WakeGate::new(probe_future(probe.clone())));
        assert!(noop_cx_poll(gate.as_mut(), &task).is_pending());
        gate.as_mut().changed();
        assert!(noop_cx_poll(gate.as_mut(), &task).is_pending());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
    }

    /// With real tokio primitives: a gated `Notified` and a gated `Sleep`
    /// still complete when their event comes, under a task that is woken
    /// for other reasons in between.
    #[tokio::test(start_paused = true)]
    async fn gated_tokio_futures_still_complete() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let gated = WakeGate::new(notify.notified());
        let other = Arc::new(tokio::sync::Notify::new());
        let (n, o) = (notify.clone(), other.clone());
        tokio::spawn(async move {
            for _ in 0..5 {
                o.notify_one();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            n.notify_waiters();
        });
        let mut gated = std::pin::pin!(gated);
        let mut woken_by_other = 0;
        loop {
            tokio::select! {
                () = gated.as_mut() => break,
                () = other.notified() => woken_by_other += 1,
            }
        }
        assert_eq!(woken_by_other, 5);

        let sleep = WakeGate::new(tokio::time::sleep(Duration::from_secs(60)));
        let mut sleep = std::pin::pin!(sleep);
        let started = tokio::time::Instant::now();
        sleep
            .as_mut()
            .changed()
            .reset(started + Duration::from_secs(1));
        sleep.await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A wake leaves the task registered: an inner future woken twice,
    /// with the gate polled in between by the same task (which then
    /// skips registering again), completes.
    #[tokio::test]
    async fn a_second_wake_reaches_the_task() {
        let first = Arc::new(tokio::sync::Notify::new());
        let second = Arc::new(tokio::sync::Notify::new());
        let (a, b) = (first.clone(), second.clone());
        let gate = WakeGate::new(async move {
            a.notified().await;
            b.notified().await;
        });
        tokio::spawn(async move {
            first.notify_one();
            // Let the gated task run and wait on the second.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            second.notify_one();
        });
        // The timer first: a timeout would poll the gate once more when
        // it fires, and so hide a lost wake.
        tokio::select! {
            biased;
            () = tokio::time::sleep(Duration::from_secs(2)) => panic!("the second wake was lost"),
            () = gate => {}
        }
    }
}
