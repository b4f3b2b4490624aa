//! One virtual router at run time: the pure [`Machine`] driven by packets,
//! timers, tracking and commands, and the I/O its actions ask for.
//!
//! Each instance is one tokio task on the caller's runtime. That is the
//! fate sharing the design asks for: if the runtime stalls, adverts stop
//! and a peer takes over; nothing here runs on a thread of its own.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::announce::{self, FrameSender};
use super::discard::{DiscardCounters, DiscardReason, RateLimitedLog};
use super::machine::{Action, Event, Machine, Params, State, TransitionReason};
use super::netif;
use super::packet::{self, AddressList, Advertisement, Envelope, Version};
use super::receive::ReceivePolicy;
use super::socket::{self, Sender};
use super::timers::TimerRules;
use super::track::{self, Health, TrackBoard, TrackStatus};
use super::vip::VipTable;
use crate::config::vrrp::{InstanceConfig, TrackEffect, Vip};

/// A received datagram handed from the interface's receiver to the
/// instance owning its VRID.
#[derive(Debug)]
pub(crate) struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub hop_limit: u8,
    pub payload: Vec<u8>,
}

impl Packet {
    fn envelope(&self) -> Envelope<'_> {
        Envelope {
            src: self.src,
            dst: self.dst,
            hop_limit: self.hop_limit,
            payload: &self.payload,
        }
    }
}

/// Commands from the [`Speaker`](super::Speaker).
#[derive(Debug)]
pub(crate) enum Command {
    /// Resign (priority 0 if Master), remove VIPs, stop; reply when done.
    Resign(oneshot::Sender<()>),
}

/// Counters readable at any time (exported by the proxy's /metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub adverts_sent: AtomicU64,
    pub adverts_received: AtomicU64,
    pub become_master: AtomicU64,
    pub priority_zero_sent: AtomicU64,
    pub priority_zero_received: AtomicU64,
    /// v3 adverts whose address list differs from ours (logged, accepted).
    pub address_list_mismatches: AtomicU64,
    pub send_errors: AtomicU64,
}

/// The last state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    pub at: SystemTime,
    pub from: State,
    pub to: State,
    pub reason: String,
}

/// What `status()` shows besides counters.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub state: State,
    pub effective_priority: u8,
    pub master: Option<IpAddr>,
    pub last_transition: Option<TransitionRecord>,
    pub faults: Vec<String>,
    /// Every active tracking entry, e.g. `external: -60 (upstream app down)`.
    pub tracking: Vec<String>,
}

/// State shared between an instance task and the speaker handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: InstanceConfig,
    pub board: Arc<watch::Sender<TrackBoard>>,
    pub counters: Counters,
    pub discards: DiscardCounters,
    /// Discards counted before demultiplexing (VRID errors, bad IP
    /// envelopes), shared by every instance on the interface and family.
    pub interface_discards: Arc<DiscardCounters>,
    pub view: Mutex<View>,
    /// This instance's own fault (not the one its sync group imposes).
    pub own_fault: Mutex<Option<String>>,
    /// Told of every state change (the proxy closes connections to VIPs
    /// this node gives up).
    pub hook: Arc<HookSlot>,
}

/// Called with an instance's VIPs just before this node removes them (it
/// leaves Master, or finds it was frozen while Master). The proxy closes
/// its connections to those addresses while it can still reach the
/// clients from them; the removal waits for the returned future.
pub type ReleaseHook = Arc<
    dyn Fn(Vec<IpAddr>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Told how late each scheduled advert went out, by instance: the gap
/// between its Adver_Timer deadline and the send. A Backup takes over when
/// adverts are late by more than its Skew_Time plus a few intervals, so
/// this is how close a node is to a false failover (issue 15).
pub type LagHook = Arc<dyn Fn(&InstanceConfig, Duration) + Send + Sync>;

/// Where the speaker keeps its [`ReleaseHook`] and [`LagHook`], shared by
/// instances.
#[derive(Default)]
pub struct HookSlot(
    std::sync::RwLock<Option<ReleaseHook>>,
    std::sync::RwLock<Option<LagHook>>,
);

impl HookSlot {
    pub fn set(&self, hook: ReleaseHook) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    pub fn get(&self) -> Option<ReleaseHook> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_lag(&self, hook: LagHook) {
        *self.1.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    fn lag(&self, config: &InstanceConfig, lag: Duration) {
        if let Some(hook) = &*self.1.read().unwrap_or_else(|e| e.into_inner()) {
            hook(config, lag);
        }
    }
}

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookSlot")
    }
}

impl Shared {
    pub fn new(
        config: InstanceConfig,
        interface_discards: Arc<DiscardCounters>,
        hook: Arc<HookSlot>,
    ) -> Self {
        let (board, _) = watch::channel(TrackBoard::default());
        Self {
            hook,
            view: Mutex::new(View {
                state: State::Initialize,
                effective_priority: config.priority,
                master: None,
                last_transition: None,
                faults: vec![],
                tracking: vec![],
            }),
            config,
            board: Arc::new(board),
            counters: Counters::default(),
            discards: DiscardCounters::default(),
            interface_discards,
            own_fault: Mutex::new(None),
        }
    }

    pub fn view(&self) -> View {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update_view(&self, f: impl FnOnce(&mut View)) {
        f(&mut self.view.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// The I/O an instance needs, opened by the speaker before the task starts
/// so that a missing capability or interface fails `Speaker::start`.
#[derive(Debug)]
pub(crate) struct Io {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub source: IpAddr,
    pub sender: Option<Sender>,
    pub frames: Arc<FrameSender>,
    pub vips: VipTable,
}

/// Runs one instance until it is told to resign (or the speaker is gone).
pub(crate) async fn run(
    shared: Arc<Shared>,
    io: Io,
    mut packets: mpsc::Receiver<Packet>,
    mut commands: mpsc::Receiver<Command>,
    origin: Instant,
    sync_tick: Arc<watch::Sender<u64>>,
) {
    let mut runner = Runner::new(shared.clone(), io, origin, sync_tick);
    let trackers = runner.spawn_trackers();
    let mut board = shared.board.subscribe();
    runner.apply_board().await;
    runner.step(Event::Startup).await;
    let reply = loop {
        let deadline = runner.machine.next_deadline().map(|d| origin + d);
        let woke = tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                Some(Command::Resign(done)) => break Some(done),
                None => break None,
            },
            changed = board.changed() => Wake::Board(changed.is_ok()),
            // Packets before timers: after a stall, an advert that arrived
            // in time must reset the Master_Down timer before that timer is
            // taken to mean the master is gone.
            Some(p) = packets.recv() => Wake::Packet(p),
            _ = sleep_until(deadline) => Wake::Timer,
        };
        // Before anything else: were we frozen while Master? (After a
        // SIGSTOP every branch is ready at once; whichever wins, a frozen
        // Master must step back before it asserts anything.)
        for p in runner.check_freeze(&mut packets).await {
            runner.on_packet(p).await;
        }
        match woke {
            Wake::Board(true) => runner.apply_board().await,
            Wake::Board(false) => {}
            Wake::Timer => {
                runner.timer_due = deadline;
                runner.step(Event::Timer).await;
                runner.timer_due = None;
            }
            Wake::Packet(p) => runner.on_packet(p).await,
        }
    };
    runner.step(Event::Shutdown).await;
    runner.finish_yield().await;
    runner.stop_announcing();
    runner.notify(State::Initialize, true);
    for t in trackers {
        t.abort();
    }
    if let Some(done) = reply {
        let _ = done.send(());
    }
}

/// What woke the instance loop.
enum Wake {
    Board(bool),
    Timer,
    Packet(Packet),
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct Runner {
    shared: Arc<Shared>,
    io: Io,
    machine: Machine,
    policy: ReceivePolicy,
    origin: Instant,
    sync_tick: Arc<watch::Sender<u64>>,
    announcer: Option<JoinHandle<()>>,
    last_announce: Option<Instant>,
    /// When the last announcement after a yield window was scheduled.
    last_yield_announce: Option<Instant>,
    /// The deadline of the timer being handled: an advert it sends is
    /// measured against it (see [`LagHook`]).
    timer_due: Option<Instant>,
    /// A yield in progress (see `yield_vips`): a canceller and the task.
    yielding: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    faulted: bool,
    log: RateLimitedLog,
    /// When a send failure was last logged (at most one line per 10 s).
    send_error_logged: Option<std::time::Instant>,
    /// When the last advert was sent (freeze detection).
    last_advert: Option<Instant>,
}

impl Runner {
    fn new(
        shared: Arc<Shared>,
        io: Io,
        origin: Instant,
        sync_tick: Arc<watch::Sender<u64>>,
    ) -> Self {
        let c = &shared.config;
        let machine = Machine::new(Params {
            rules: match c.version {
                Version::V2 => TimerRules::V2,
                Version::V3 => TimerRules::V3,
            },
            priority: c.priority,
            advert_interval: c.advert_interval,
            preempt: c.preempt,
            preempt_delay: c.preempt_delay,
            primary_address: io.source,
        });
        let policy = ReceivePolicy {
            version: c.version,
            vrid: c.vrid,
            auth: c.auth,
            interval: c.advert_interval,
            addresses: advertised(c),
            unicast_peers: c.unicast_peers.clone(),
            unicast_ttl_check: c.unicast_ttl_check,
            own: Some(io.source),
        };
        Self {
            shared,
            io,
            machine,
            policy,
            origin,
            sync_tick,
            announcer: None,
            last_announce: None,
            last_yield_announce: None,
            yielding: None,
            timer_due: None,
            faulted: false,
            log: RateLimitedLog::new(Duration::from_secs(10)),
            send_error_logged: None,
            last_advert: None,
        }
    }

    fn name(&self) -> &str {
        &self.shared.config.name
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Starts link polling (the instance's own interface always counts as
    /// a fault when down, as in keepalived) and the health scripts.
    fn spawn_trackers(&self) -> Vec<JoinHandle<()>> {
        let c = &self.shared.config;
        let mut links = vec![(c.interface.clone(), TrackEffect::Fault)];
        links.extend(
            c.track
                .interfaces
                .iter()
                .filter(|(n, _)| *n != c.interface)
                .cloned(),
        );
        // First reading now, so an instance never starts as Backup on a
        // link that is down.
        for (name, effect) in &links {
            let status = track::status_for(
                *effect,
                netif::is_running(name),
                &format!("interface {name}"),
            );
            self.shared
                .board
                .send_if_modified(|b| b.set(&format!("interface:{name}"), status));
        }
        let mut tasks = vec![tokio::spawn(track::watch_links(
            self.shared.board.clone(),
            links,
        ))];
        for (i, s) in c.track.scripts.iter().enumerate() {
            tasks.push(tokio::spawn(track::run_script(
                self.shared.board.clone(),
                i,
                s.clone(),
            )));
        }
        tasks
    }

    /// A Master that has not sent an advert for 3 × Advertisement_Interval
    /// was stalled (SIGSTOP, a stalled runtime, a VM pause) long enough
    /// that a Backup *may* have taken over: whether one did depends on its
    /// Master_Down_Interval (3 × interval + its Skew_Time), which we cannot
    /// know. So we look: a Backup that took over advertised as Master
    /// meanwhile, and those adverts wait for us in the socket. If one came
    /// from another router, asserting mastership now with our normal
    /// priority would preempt it back and cut its fresh connections: a
    /// second outage. So step back instead: advertise priority 1 (the peer
    /// answers and we become Backup, RFC 5798 §6.4.3), and hold that for
    /// `FREEZE_HOLD` (longer when `preempt_delay` says so) before competing
    /// normally again. If none came, nobody took over (the stall was
    /// shorter than every peer's Master_Down_Interval): carry on as Master,
    /// as RFC 5798 and keepalived do. An address owner (255) keeps its
    /// priority. Returns the packets read while looking, to be handled as
    /// usual afterwards.
    async fn check_freeze(&mut self, packets: &mut mpsc::Receiver<Packet>) -> Vec<Packet> {
        if self.machine.state() != State::Master {
            return Vec::new();
        }
        let Some(last) = self.last_advert else {
            return Vec::new();
        };
        let interval = self.shared.config.advert_interval.as_duration();
        let silent = Instant::now().saturating_duration_since(last);
        if silent < interval * 3 {
            return Vec::new();
        }
        let priority = self.shared.config.priority;
        if priority == super::machine::OWNER_PRIORITY {
            return Vec::new();
        }
        let queued = read_queued(packets).await;
        let taken_over = queued.iter().any(|p| self.is_other_master(p));
        if !taken_over {
            info!(
                instance = self.name(),
                ?silent,
                "stalled while Master, but no other router took over: carrying on"
            );
            return queued;
        }
        let hold = FREEZE_HOLD.max(self.shared.config.preempt_delay);
        warn!(
            instance = self.name(),
            ?silent,
            ?hold,
            "this node was frozen while Master and a peer took over; stepping back so it keeps the VIP"
        );
        let reason = format!("frozen for {silent:?} while Master; stepping back for {hold:?}");
        // Counts as "sent" so the check does not repeat before the step.
        self.last_advert = Some(Instant::now());
        // The peer's announcements are the ones clients must keep: ours
        // stop now, not when its answer makes us Backup.
        self.stop_announcing();
        // The peer holds the VIP now: connections to it here are dead ends
        // already; let the proxy close them before the next response goes
        // out with keep-alive.
        self.release_vips().await;
        set_track(
            &self.shared,
            "freeze",
            TrackStatus::Delta(1 - i32::from(priority), reason),
        );
        self.apply_board().await;
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            if let Some(shared) = shared.upgrade() {
                set_track(&shared, "freeze", TrackStatus::Ok);
            }
        });
        queued
    }

    /// Whether `p` is a valid advert from another router that is Master
    /// (only a Master advertises; priority 0 is one resigning). Counts
    /// nothing: the packet is handled again afterwards.
    fn is_other_master(&self, p: &Packet) -> bool {
        // The policy refuses our own address (`own`).
        self.policy
            .check(&p.envelope())
            .is_ok_and(|a| a.advert.priority != super::machine::RESIGN_PRIORITY)
    }

    /// Turns the board into machine events.
    async fn apply_board(&mut self) {
        let board = self.shared.board.borrow().clone();
        let tracking = board.describe();
        self.shared.update_view(|v| v.tracking = tracking);
        let own = board.own_fault();
        let changed = {
            let mut slot = self
                .shared
                .own_fault
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let changed = *slot != own;
            *slot = own;
            changed
        };
        if changed {
            self.sync_tick.send_modify(|n| *n = n.wrapping_add(1));
        }
        match track::health(self.shared.config.priority, &board) {
            Health::Fault(reasons) => {
                if !self.faulted {
                    warn!(instance = self.name(), "fault: {}", reasons.join("; "));
                }
                self.shared.update_view(|v| v.faults = reasons);
                self.faulted = true;
                self.step(Event::FaultRaised).await;
            }
            Health::Priority(p) => {
                self.shared.update_view(|v| {
                    v.faults.clear();
                    v.effective_priority = p;
                });
                if p != self.machine.params().priority {
                    info!(
                        instance = self.name(),
                        "effective priority {} -> {p}",
                        self.machine.params().priority
                    );
                }
                self.step(Event::PriorityChanged(p)).await;
                if self.faulted {
                    self.faulted = false;
                    info!(instance = self.name(), "fault cleared");
                    self.step(Event::FaultCleared).await;
                }
            }
        }
    }

    async fn on_packet(&mut self, p: Packet) {
        match self.policy.check(&p.envelope()) {
            Err(reason) => {
                self.shared.discards.count(reason);
                if let Some(suppressed) = self.log.admit(reason, std::time::Instant::now()) {
                    warn!(
                        instance = self.name(),
                        from = %p.src,
                        "discarded VRRP packet: {reason} ({suppressed} more since the last report)"
                    );
                }
            }
            Ok(accepted) => {
                let c = &self.shared.counters;
                c.adverts_received.fetch_add(1, Ordering::Relaxed);
                if accepted.advert.priority == 0 {
                    c.priority_zero_received.fetch_add(1, Ordering::Relaxed);
                }
                if accepted.address_list_mismatch {
                    c.address_list_mismatches.fetch_add(1, Ordering::Relaxed);
                    if self
                        .log
                        .admit(DiscardReason::AddressList, std::time::Instant::now())
                        .is_some()
                    {
                        warn!(instance = self.name(), from = %p.src, "advertised addresses differ from ours (misconfiguration, RFC 5798 §7.1)");
                    }
                }
                if accepted.advert.interval != self.shared.config.advert_interval {
                    debug!(instance = self.name(), from = %p.src, "master advertises every {} (ours {})", accepted.advert.interval, self.shared.config.advert_interval);
                }
                self.step(Event::Advert {
                    from: p.src,
                    priority: accepted.advert.priority,
                    interval: accepted.advert.interval,
                })
                .await;
            }
        }
    }

    async fn step(&mut self, event: Event) {
        let actions = self.machine.step(event, self.now());
        for action in actions {
            self.execute(action).await;
        }
        let master = self.machine.master().map(|(a, _)| a);
        self.shared.update_view(|v| v.master = master);
    }

    async fn execute(&mut self, action: Action) {
        match action {
            Action::SendAdvert { priority } => self.send_advert(priority),
            Action::AddVips => {
                self.cancel_yield().await;
                for vip in self.shared.config.all_vips() {
                    if let Err(e) = self
                        .io
                        .vips
                        .add(self.io.ifindex, &self.shared.config.interface, vip)
                        .await
                    {
                        error!(
                            instance = self.name(),
                            "cannot add {}/{}: {e}", vip.addr, vip.prefix
                        );
                    }
                }
            }
            Action::ReleaseConnections => self.release_vips().await,
            Action::RemoveVips => self.remove_vips().await,
            Action::YieldVips => self.yield_vips(),
            Action::Announce => self.announce(),
            Action::AnnounceAfterYield => self.announce_after_yield(),
            Action::StopAnnouncing => self.stop_announcing(),
            Action::Transition { from, to, reason } => self.transition(from, to, reason),
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let now = Instant::now();
        self.last_advert = Some(now);
        if let Some(due) = self.timer_due.take() {
            self.shared
                .hook
                .lag(&self.shared.config, now.saturating_duration_since(due));
        }
        let c = &self.shared.config;
        let advert = Advertisement {
            version: c.version,
            vrid: c.vrid,
            priority,
            interval: c.advert_interval,
            auth: c.auth,
            addresses: advertised(c),
        };
        let destinations: Vec<IpAddr> = if c.unicast_peers.is_empty() {
            vec![socket::group(c.is_ipv6())]
        } else {
            c.unicast_peers.clone()
        };
        if self.io.sender.is_none() {
            // Reopen after an error (e.g. the IPv6 link-local address was
            // flushed while the link was down and has come back).
            match Sender::open(&c.interface, self.io.ifindex, self.io.source) {
                Ok(s) => self.io.sender = Some(s),
                Err(e) => {
                    self.shared
                        .counters
                        .send_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if self.send_error_due() {
                        warn!(instance = self.name(), "cannot open the advert socket: {e}");
                    }
                    return;
                }
            }
        }
        let Some(sender) = &self.io.sender else {
            return;
        };
        let mut failed = None;
        for dst in destinations {
            let bytes = packet::encode(&advert, sender.source, dst, c.checksum_form);
            match sender.send(&bytes, dst) {
                Ok(()) => {
                    self.shared
                        .counters
                        .adverts_sent
                        .fetch_add(1, Ordering::Relaxed);
                    if priority == 0 {
                        self.shared
                            .counters
                            .priority_zero_sent
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => failed = Some((dst, e)),
            }
        }
        if let Some((dst, e)) = failed {
            self.shared
                .counters
                .send_errors
                .fetch_add(1, Ordering::Relaxed);
            self.io.sender = None;
            // Expected while the link is down (we are in Fault then and only
            // the resign advert is attempted): debug then, warn otherwise.
            if !self.faulted && self.send_error_due() {
                warn!(instance = self.name(), "advert to {dst} failed: {e}");
            } else {
                debug!(instance = self.name(), "advert to {dst} failed: {e}");
            }
        }
    }

    /// At most one send-failure warning per 10 s.
    fn send_error_due(&mut self) -> bool {
        let now = std::time::Instant::now();
        let due = self
            .send_error_logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10));
        if due {
            self.send_error_logged = Some(now);
        }
        due
    }

    /// Lets the proxy close connections to our VIPs (see [`ReleaseHook`]).
    async fn release_vips(&self) {
        if let Some(hook) = self.shared.hook.get() {
            let vips: Vec<IpAddr> = self.shared.config.all_vips().map(|v| v.addr).collect();
            hook(vips).await;
        }
    }

    /// The addresses, once [`Action::ReleaseConnections`] has closed the
    /// connections to them (their FINs still leave from the VIP).
    async fn remove_vips(&mut self) {
        let vips: Vec<Vip> = self.shared.config.all_vips().cloned().collect();
        remove_all(&self.io.vips, self.io.ifindex, &vips, self.name()).await;
    }

    /// Lets go of the VIPs for a live Master that took over: the proxy
    /// closes its connections to them now, and the addresses go once that
    /// Master announces them ([`YIELD_WINDOW`]), in a task of its own so
    /// that adverts keep being heard meanwhile.
    fn yield_vips(&mut self) {
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
    async fn cancel_yield(&mut self) {
        if let Some((cancel, task)) = self.yielding.take() {
            let _ = cancel.send(());
            let _ = task.await;
        }
    }

    /// Lets a yield in progress finish (at shutdown: its addresses must go).
    async fn finish_yield(&mut self) {
        if let Some((_cancel, task)) = self.yielding.take() {
            let _ = task.await;
        }
    }

    /// Gratuitous ARP / unsolicited NA bursts for every VIP, then refreshes
    /// while Master. A repeated request within a second does not restart
    /// the burst.
    fn announce(&mut self) {
        let now = Instant::now();
        if self.announcing_since_within_a_second(self.last_announce, now) {
            return;
        }
        self.start_announcer(now);
    }

    /// Whether the announcer runs and `since` (when it was last asked to
    /// start a burst of some kind) is less than a second ago.
    fn announcing_since_within_a_second(&self, since: Option<Instant>, now: Instant) -> bool {
        let running = self.announcer.as_ref().is_some_and(|h| !h.is_finished());
        running && since.is_some_and(|t| now - t < Duration::from_secs(1))
    }

    /// The announcement, [`YIELD_WINDOW`] from now: the other Master (one
    /// we preempted, or met in a dual-master moment) is alive and lets go
    /// of the VIPs on hearing our advert. While Master, a burst already
    /// scheduled this way within the last second stands (a peer that keeps
    /// advertising a lower priority, one-way partition, must not postpone
    /// it forever nor make us flood).
    fn announce_after_yield(&mut self) {
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
    fn start_announcer(&mut self, first: Instant) {
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

    fn stop_announcing(&mut self) {
        if let Some(h) = self.announcer.take() {
            h.abort();
        }
    }

    fn transition(&mut self, from: State, to: State, reason: TransitionReason) {
        info!(
            instance = self.name(),
            vrid = self.shared.config.vrid,
            "{} -> {} ({})",
            from.name(),
            to.name(),
            reason.describe()
        );
        if to == State::Master {
            self.shared
                .counters
                .become_master
                .fetch_add(1, Ordering::Relaxed);
        }
        self.shared.update_view(|v| {
            v.state = to;
            v.last_transition = Some(TransitionRecord {
                at: SystemTime::now(),
                from,
                to,
                reason: reason.describe().to_owned(),
            });
        });
        if to != State::Initialize {
            self.notify(to, false);
        }
    }

    /// Runs the notify command for `state` (`stop` when shutting down),
    /// detached, with the facts in the environment.
    fn notify(&self, state: State, stopping: bool) {
        let n = &self.shared.config.notify;
        let (cmd, word) = match (state, stopping) {
            (_, true) => (n.stop.as_ref(), "STOP"),
            (State::Master, _) => (n.master.as_ref(), "MASTER"),
            (State::Backup, _) => (n.backup.as_ref(), "BACKUP"),
            (State::Fault, _) => (n.fault.as_ref(), "FAULT"),
            (State::Initialize, _) => (None, "INIT"),
        };
        let Some(cmd) = cmd else { return };
        let spawned = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .env("VIGIL_INSTANCE", &self.shared.config.name)
            .env("VIGIL_STATE", word)
            .env("VIGIL_PRIORITY", self.machine.params().priority.to_string())
            .stdin(std::process::Stdio::null())
            .spawn();
        match spawned {
            // Reap it in the background so it never becomes a zombie.
            Ok(mut child) => {
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            Err(e) => warn!(
                instance = self.name(),
                "notify {word} command failed to start: {e}"
            ),
        }
    }
}

/// The advertised address list (RFC 5798 §5.2.9: one family).
pub(crate) fn advertised(c: &InstanceConfig) -> AddressList {
    if c.is_ipv6() {
        AddressList::V6(
            c.vips
                .iter()
                .filter_map(|v| match v.addr {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                })
                .collect(),
        )
    } else {
        AddressList::V4(
            c.vips
                .iter()
                .filter_map(|v| match v.addr {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                })
                .collect(),
        )
    }
}

/// Removes `vips` from the interface, logging (not stopping at) failures.
async fn remove_all(table: &VipTable, ifindex: u32, vips: &[Vip], instance: &str) {
    for vip in vips {
        if let Err(e) = table.remove(ifindex, vip).await {
            error!(instance, "cannot remove {}/{}: {e}", vip.addr, vip.prefix);
        }
    }
}

/// How long a live Master is given to let go of the VIPs before we
/// announce them (see [`Action::AnnounceAfterYield`]). A vigil peer's
/// release holds new connections, closes the open ones (waiting up to
/// 100 ms for them, after a 10 ms handshake settle) and then removes the
/// addresses: 200 ms covers that with margin for a loaded host. Clients
/// that reach the old Master after it removed the VIP and before our
/// burst lose nothing: their SYN (the only thing they can send, every
/// connection being closed) is retried by TCP after a second.
pub(crate) const YIELD_WINDOW: Duration = Duration::from_millis(200);

/// After a stall, frames due this soon are skipped too: `check_freeze`
/// reads the queued adverts (up to `QUEUED_READ` at a time) and may step
/// back meanwhile.
const STALL_SETTLE: Duration = Duration::from_millis(25);

/// A gratuitous ARP frame this late is skipped (see `start_announcer`).
/// Loaded hosts wake timers a few ms late; a freeze wakes them hundreds
/// of ms late.
const LATE_FRAME: Duration = Duration::from_millis(50);

/// After a stall, how long the receive task is given to hand over what
/// the kernel queued meanwhile (it runs as soon as the process does; the
/// wait adds to the stall, so it stays short).
const QUEUED_READ: Duration = Duration::from_millis(5);

/// The packets queued for an instance, read until none arrives for
/// [`QUEUED_READ`] (at most 64: a stalled second's worth at 20 ms adverts
/// from a few routers).
async fn read_queued(packets: &mut mpsc::Receiver<Packet>) -> Vec<Packet> {
    let mut out = Vec::new();
    while out.len() < 64 {
        match tokio::time::timeout(QUEUED_READ, packets.recv()).await {
            Ok(Some(p)) => out.push(p),
            Ok(None) | Err(_) => break,
        }
    }
    out
}

/// How long a node that was frozen while Master stays out of the election
/// (see `check_freeze`).
const FREEZE_HOLD: Duration = Duration::from_secs(60);

/// Writes `status` for `source` on an instance's board.
pub(crate) fn set_track(shared: &Shared, source: &str, status: TrackStatus) {
    shared.board.send_if_modified(|b| b.set(source, status));
}
