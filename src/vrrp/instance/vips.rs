//! Giving the VIPs up (release hook, removal, the yield window) and
//! announcing them (gratuitous ARP / unsolicited NA bursts).

use super::freeze::STALL_SETTLE;
use super::*;

/// How long a live Master is given to let go of the VIPs before we
/// announce them (see [`Action::AnnounceAfterYield`]). A vigil peer's
/// release holds new connections, closes the open ones (waiting up to
/// 100 ms for them, after a 10 ms handshake settle) and then removes the
/// addresses: 200 ms covers that with margin for a loaded host. Clients
/// that reach the old Master after it removed the VIP and before our
/// burst lose nothing: their SYN (the only thing they can send, every
/// connection being closed) is retried by TCP after a second.
const YIELD_WINDOW: Duration = Duration::from_millis(200);

/// A gratuitous ARP frame this late is skipped (see `start_announcer`).
/// Loaded hosts wake timers a few ms late; a freeze wakes them hundreds
/// of ms late.
const LATE_FRAME: Duration = Duration::from_millis(50);

/// Removes `vips` from the interface, logging (not stopping at) failures.
async fn remove_all(table: &VipTable, ifindex: u32, vips: &[Vip], instance: &str) {
    for vip in vips {
        if let Err(e) = table.remove(ifindex, vip).await {
            error!(instance, "cannot remove {}/{}: {e}", vip.addr, vip.prefix);
        }
    }
}

impl Runner {
    /// Lets the proxy close connections to our VIPs (see [`ReleaseHook`]).
    pub(super) async fn release_vips(&self) {
        if let Some(hook) = self.shared.hook.get() {
            let vips: Vec<IpAddr> = self.shared.config.all_vips().map(|v| v.addr).collect();
            hook(vips).await;
        }
    }

    /// The addresses, once [`Action::ReleaseConnections`] has closed the
    /// connections to them (their FINs still leave from the VIP).
    pub(super) async fn remove_vips(&mut self) {
        let vips: Vec<Vip> = self.shared.config.all_vips().cloned().collect();
        remove_all(&self.io.vips, self.io.ifindex, &vips, self.name()).await;
    }

    /// Lets go of the VIPs for a live Master that took over: the proxy
    /// closes its connections to them now, and the addresses go once that
    /// Master announces them ([`YIELD_WINDOW`]), in a task of its own so
    /// that adverts keep being heard meanwhile.
    pub(super) fn yield_vips(&mut self) {
        let until = Instant::now() + YIELD_WINDOW;
        let hook = self.shared.hook.get();
        let vips: Vec<Vip> = self.shared.config.all_vips().cloned().collect();
        let table = self.io.vips.clone();
        let ifindex = self.io.ifindex;
        let name = self.shared.config.name.clone();
        let (cancel, mut cancelled) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Some(hook) = hook {
                hook(vips.iter().map(|v| v.addr).collect()).await;
            }
            tokio::select! {
                biased;
                _ = &mut cancelled => return,
                _ = tokio::time::sleep_until(until) => {}
            }
            remove_all(&table, ifindex, &vips, &name).await;
        });
        self.yielding = Some((cancel, task));
    }

    /// Stops a yield before it removes the addresses (we are taking them
    /// back), and waits for its task: it may be removing them right now.
    pub(super) async fn cancel_yield(&mut self) {
        if let Some((cancel, task)) = self.yielding.take() {
            let _ = cancel.send(());
            let _ = task.await;
        }
    }

    /// Lets a yield in progress finish (at shutdown: its addresses must go).
    pub(super) async fn finish_yield(&mut self) {
        if let Some((_cancel, task)) = self.yielding.take() {
            let _ = task.await;
        }
    }

    /// Gratuitous ARP / unsolicited NA bursts for every VIP, then refreshes
    /// while Master. A repeated request within a second does not restart
    /// the burst.
    pub(super) fn announce(&mut self) {
        let now = Instant::now();
        if self.announcing_since_within_a_second(self.last_announce, now) {
            return;
        }
        self.start_announcer(now);
    }

    /// Whether the announcer runs and `since` (when it was last asked to
    /// start a burst of some kind) is less than a second ago.
    pub(super) fn announcing_since_within_a_second(
        &self,
        since: Option<Instant>,
        now: Instant,
    ) -> bool {
        let running = self.announcer.as_ref().is_some_and(|h| !h.is_finished());
        running && since.is_some_and(|t| now - t < Duration::from_secs(1))
    }

    /// The announcement, [`YIELD_WINDOW`] from now: the other Master (one
    /// we preempted, or met in a dual-master moment) is alive and lets go
    /// of the VIPs on hearing our advert. While Master, a burst already
    /// scheduled this way within the last second stands (a peer that keeps
    /// advertising a lower priority, one-way partition, must not postpone
    /// it forever nor make us flood).
    pub(super) fn announce_after_yield(&mut self) {
        let now = Instant::now();
        // Not announcing: we have just become Master, and must.
        if self.announcing_since_within_a_second(self.last_yield_announce, now) {
            return;
        }
        self.last_yield_announce = Some(now);
        self.start_announcer(now + YIELD_WINDOW);
    }

    /// (Re)starts the announcer with its first burst at `first`. Frames
    /// whose time passed while the process was stopped are skipped rather
    /// than sent late: after a freeze (SIGSTOP, a VM pause) the timers of
    /// every frame due in the meantime fire at once, and those frames
    /// would pull clients to a node that is about to step back (see
    /// `check_freeze`). A wake-up more than [`LATE_FRAME`] late marks every
    /// frame due until then, and [`STALL_SETTLE`] after, as stale.
    pub(super) fn start_announcer(&mut self, first: Instant) {
        self.stop_announcing();
        self.last_announce = Some(Instant::now());
        let garp = self.shared.config.garp.clone();
        let frames: Vec<Vec<u8>> = self
            .shared
            .config
            .all_vips()
            .map(|v| announce::frame_for(self.io.mac, v.addr))
            .collect();
        let sender = self.io.frames.clone();
        let name = self.shared.config.name.clone();
        self.announcer = Some(tokio::spawn(async move {
            let mut start = first;
            // Frames due before this were queued while we were stopped.
            let mut stale_before: Option<Instant> = None;
            loop {
                for offset in announce::burst_offsets(&garp) {
                    let due = start + offset;
                    tokio::time::sleep_until(due).await;
                    let now = Instant::now();
                    if now.saturating_duration_since(due) > LATE_FRAME {
                        // Also hold what falls due while the instance
                        // looks at what happened during the stall (it may
                        // step back and stop us).
                        stale_before = Some(now + STALL_SETTLE);
                    }
                    if stale_before.is_some_and(|t| due <= t) {
                        debug!(instance = %name, "announcement skipped: {:?} late", now - due);
                        continue;
                    }
                    for f in &frames {
                        if let Err(e) = sender.send(f) {
                            debug!(instance = %name, "announcement failed: {e}");
                        }
                    }
                }
                if garp.refresh.is_zero() {
                    return;
                }
                start += garp.refresh.max(garp.delay);
                tokio::time::sleep_until(start).await;
            }
        }));
    }

    pub(super) fn stop_announcing(&mut self) {
        if let Some(h) = self.announcer.take() {
            h.abort();
        }
    }
}
