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

use crate::config::vrrp::{InstanceConfig, TrackEffect, Vip};
use crate::vrrp::announce::{self, FrameSender};
use crate::vrrp::death_probe;
use crate::vrrp::discard::{DiscardCounters, DiscardReason, RateLimitedLog};
use crate::vrrp::machine::{Action, Event, Machine, Params, State, TransitionReason};
use crate::vrrp::netif;
use crate::vrrp::packet::{self, AddressList, Advertisement, Envelope, Version};
use crate::vrrp::receive::ReceivePolicy;
use crate::vrrp::socket::{self, Sender};
use crate::vrrp::timers::TimerRules;
use crate::vrrp::track::{self, Health, TrackBoard, TrackStatus};
use crate::vrrp::vip::VipTable;

mod freeze;
mod shared;
mod vips;

pub(crate) use self::shared::Shared;
pub use self::shared::{Counters, HookSlot, LagHook, ReleaseHook, TransitionRecord};

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

/// Commands from the [`Speaker`](crate::vrrp::Speaker).
#[derive(Debug)]
pub(crate) enum Command {
    /// Resign (priority 0 if Master), remove VIPs, stop; reply when done.
    Resign(oneshot::Sender<()>),
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
    /// The death probe's listener, bound on `source` (when the instance
    /// has `death_probe`). Dropped with the instance: that closes the
    /// Backups' connections, which is the signal.
    pub probe_listener: Option<tokio::net::TcpListener>,
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
    let mut trackers = runner.spawn_trackers();
    let mut deaths = runner.spawn_death_probe(&mut trackers);
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
            Some(from) = deaths.recv() => Wake::MasterGone(from),
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
            Wake::MasterGone(from) => {
                let within = death_probe::SKEW_WINDOW;
                runner.step(Event::MasterGone { from, within }).await;
            }
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
    /// The death probe's verdict on the Master at this address.
    MasterGone(IpAddr),
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
    /// The Master the death probe watches: set while Backup.
    probe_target: Option<watch::Sender<Option<IpAddr>>>,
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
            probe_target: None,
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

    /// Starts the death probe's listener and watch (`death_probe`), and
    /// returns where the watch's verdicts arrive (never, when it is off).
    fn spawn_death_probe(&mut self, tasks: &mut Vec<JoinHandle<()>>) -> mpsc::Receiver<IpAddr> {
        let (verdicts, deaths) = mpsc::channel(1);
        let Some(config) = self.shared.config.death_probe else {
            return deaths;
        };
        if let Some(listener) = self.io.probe_listener.take() {
            tasks.push(tokio::spawn(death_probe::listen(listener)));
        }
        let (target, targets) = watch::channel(None);
        self.probe_target = Some(target);
        tasks.push(tokio::spawn(death_probe::watch(
            config,
            self.io.source,
            self.io.ifindex,
            targets,
            verdicts,
            self.shared.counters.death_probe.clone(),
        )));
        deaths
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
        if let Some(target) = &self.probe_target {
            let watched = (self.machine.state() == State::Backup)
                .then_some(master)
                .flatten();
            target.send_if_modified(|t| std::mem::replace(t, watched) != watched);
        }
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
        let spawned = crate::privileges::shell(cmd)
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

/// Writes `status` for `source` on an instance's board.
pub(crate) fn set_track(shared: &Shared, source: &str, status: TrackStatus) {
    shared.board.send_if_modified(|b| b.set(source, status));
}
