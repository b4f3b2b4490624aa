//! [`Speaker`]: the runtime handle the rest of vigil holds. It owns the
//! shared receive sockets, starts one task per instance, and offers status,
//! external health, standby, reload and resignation.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::announce::FrameSender;
use super::discard::{DiscardCounters, DiscardReason, RateLimitedLog};
use super::error::VrrpError;
use super::instance::{self, Command, HookSlot, Io, Packet, ReleaseHook, Shared, TransitionRecord};
use super::instance_lock::{InstanceLock, LockKey};
use super::machine::{OWNER_PRIORITY, State};
use super::netif;
use super::packet::Version;
use super::socket::{Receiver, Sender};
use super::track::{ExternalHealth, SYNC_PREFIX, TrackStatus};
use super::vip::VipTable;
use crate::config::vrrp::{InstanceConfig, Vip, VrrpConfig};

/// A snapshot of one instance, for `/status` and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStatus {
    pub name: String,
    pub vrid: u8,
    pub interface: String,
    pub version: Version,
    pub state: State,
    pub configured_priority: u8,
    pub effective_priority: u8,
    /// The current Master's primary address (ours when Master), if known.
    pub master: Option<IpAddr>,
    pub last_transition: Option<TransitionRecord>,
    pub vips: Vec<Vip>,
    /// Why the instance is in Fault (empty otherwise).
    pub faults: Vec<String>,
    /// Active tracking entries and their effect, e.g.
    /// `external: -60 (upstream app: 1/3 up)`.
    pub tracking: Vec<String>,
    pub counters: CounterSnapshot,
    /// Whether the instance runs the death probe.
    pub death_probe: bool,
    /// Discards by reason. `vrid-errors` and envelope errors are counted
    /// per interface and family, before the packet reaches an instance,
    /// and so are shared by the instances on that interface.
    pub discards: Vec<(DiscardReason, u64)>,
}

/// Plain values of the instance counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CounterSnapshot {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub become_master: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub address_list_mismatches: u64,
    pub send_errors: u64,
    /// The death probe (`death_probe`): connections to the Master's
    /// listener, closes seen, refused attempts, and verdicts ("the
    /// Master's vigil is gone").
    pub death_probe_connected: u64,
    pub death_probe_closed: u64,
    pub death_probe_refused: u64,
    pub death_probe_verdicts: u64,
}

/// The running VRRP speaker.
#[derive(Debug, Clone)]
pub struct Speaker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: Instant,
    vips: VipTable,
    receivers: Mutex<HashMap<(u32, bool), Arc<ReceiverEntry>>>,
    instances: Mutex<BTreeMap<String, Handle>>,
    config: Mutex<VrrpConfig>,
    /// Bumped whenever an instance's own fault changes; the sync-group
    /// task recomputes group faults on every bump.
    sync_tick: Arc<watch::Sender<u64>>,
    standby: Mutex<bool>,
    sync_task: Mutex<Option<JoinHandle<()>>>,
    hook: Arc<HookSlot>,
    /// Instance locks taken before the speaker started (see
    /// [`Speaker::lock_instances`]), handed to their instances as they
    /// start.
    pending_locks: Mutex<Vec<InstanceLock>>,
}

/// One shared receive socket and its VRID routes.
#[derive(Debug)]
struct ReceiverEntry {
    routes: RwLock<HashMap<u8, mpsc::Sender<Packet>>>,
    discards: Arc<DiscardCounters>,
    task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    route: (u32, bool),
    /// Released when the instance is gone.
    _lock: InstanceLock,
}

impl Speaker {
    /// Checks capabilities, opens the sockets, removes stale VIPs left by a
    /// previous run, and starts every instance. Must be called from within
    /// a tokio runtime (the proxy's own).
    pub async fn start(config: VrrpConfig) -> Result<Speaker, VrrpError> {
        Speaker::start_locked(config, Vec::new()).await
    }

    /// Takes the instance lock of every instance of `config`: what a
    /// process does first, before it binds or changes anything, so that a
    /// second vigil on the same host stops before it can disturb the one
    /// running (see [`instance_lock`](super::instance_lock)).
    pub fn lock_instances(config: &VrrpConfig) -> Result<Vec<InstanceLock>, VrrpError> {
        config
            .instances
            .iter()
            .map(|c| InstanceLock::acquire(lock_key(c)))
            .collect()
    }

    /// [`start`](Self::start) with locks already taken by
    /// [`lock_instances`](Self::lock_instances).
    pub async fn start_locked(
        config: VrrpConfig,
        locks: Vec<InstanceLock>,
    ) -> Result<Speaker, VrrpError> {
        netif::check_capabilities()?;
        let (sync_tick, _) = watch::channel(0u64);
        let speaker = Speaker {
            inner: Arc::new(Inner {
                origin: Instant::now(),
                vips: VipTable::new()?.with_guardian(
                    super::guardian::Guardian::start_if_enabled().map_err(|e| VrrpError::Io {
                        context: "start the VIP guardian".into(),
                        source: e,
                    })?,
                ),
                receivers: Mutex::new(HashMap::new()),
                instances: Mutex::new(BTreeMap::new()),
                config: Mutex::new(config.clone()),
                sync_tick: Arc::new(sync_tick),
                standby: Mutex::new(false),
                sync_task: Mutex::new(None),
                hook: Arc::new(HookSlot::default()),
                pending_locks: Mutex::new(locks),
            }),
        };
        for c in &config.instances {
            if let Err(e) = speaker.start_instance(c.clone()).await {
                speaker.resign_all().await;
                return Err(e);
            }
        }
        let task = tokio::spawn(sync_groups(Arc::downgrade(&speaker.inner)));
        *lock(&speaker.inner.sync_task) = Some(task);
        Ok(speaker)
    }

    /// Registers `hook`, called before any instance removes its VIPs (the
    /// proxy closes its connections to them first).
    pub fn on_release(&self, hook: ReleaseHook) {
        self.inner.hook.set(hook);
    }

    /// Registers `hook`, told how late each scheduled advert went out.
    pub fn on_advert_lag(&self, hook: instance::LagHook) {
        self.inner.hook.set_lag(hook);
    }

    /// The crash guardian, when this process has one.
    pub fn guardian(&self) -> Option<super::guardian::GuardianStatus> {
        self.inner.vips.guardian().map(|g| g.status())
    }

    /// A snapshot of every instance.
    pub fn status(&self) -> Vec<InstanceStatus> {
        lock(&self.inner.instances)
            .values()
            .map(|h| snapshot(&h.shared))
            .collect()
    }

    /// Sets the health reported by the proxy for `instance`. Takes effect
    /// at once: a changed priority is advertised immediately.
    pub fn set_external(&self, instance: &str, health: ExternalHealth) -> Result<(), VrrpError> {
        let instances = lock(&self.inner.instances);
        let h = instances
            .get(instance)
            .ok_or_else(|| VrrpError::UnknownInstance(instance.to_owned()))?;
        instance::set_track(&h.shared, "external", health.status());
        Ok(())
    }

    /// Standby ("drain --no-exit"): every instance goes to Fault — a Master
    /// resigns with priority 0 and removes its VIPs, and no instance takes
    /// the VIP until standby is lifted, while adverts are still received
    /// (status keeps showing who the Master is). This is what keepalived
    /// users get from a `track_file`/`track_script` with weight 0; staying
    /// Backup would not do, since a Backup still takes over when the Master
    /// fails.
    pub fn set_standby(&self, standby: bool) {
        *lock(&self.inner.standby) = standby;
        let status = if standby {
            TrackStatus::Fault("standby (drain)".into())
        } else {
            TrackStatus::Ok
        };
        for h in lock(&self.inner.instances).values() {
            instance::set_track(&h.shared, "standby", status.clone());
        }
    }

    /// Resigns every instance (priority-0 advert if Master, VIPs removed)
    /// and stops them. Used on SIGTERM after the proxy has drained.
    pub async fn resign_all(&self) {
        let handles: Vec<Handle> = std::mem::take(&mut *lock(&self.inner.instances))
            .into_values()
            .collect();
        let waits: Vec<_> = handles.into_iter().map(|h| self.stop_instance(h)).collect();
        for w in waits {
            w.await;
        }
        if let Some(t) = lock(&self.inner.sync_task).take() {
            t.abort();
        }
        for (_, r) in lock(&self.inner.receivers).drain() {
            if let Some(t) = lock(&r.task).take() {
                t.abort();
            }
        }
    }

    /// Applies a new configuration: unchanged instances keep running with
    /// no transition; changed ones are restarted; removed ones resign;
    /// added ones start.
    pub async fn reload(&self, new: VrrpConfig) -> Result<(), VrrpError> {
        let old = lock(&self.inner.config).clone();
        let mut stopping = Vec::new();
        {
            let mut instances = lock(&self.inner.instances);
            let keep: Vec<String> = instances
                .iter()
                .filter(|(name, h)| {
                    new.instances
                        .iter()
                        .any(|c| &c.name == *name && *c == h.shared.config)
                })
                .map(|(n, _)| n.clone())
                .collect();
            let names: Vec<String> = instances.keys().cloned().collect();
            for name in names {
                if !keep.contains(&name) {
                    if let Some(h) = instances.remove(&name) {
                        info!(instance = %name, "reload: stopping (removed or changed)");
                        stopping.push(h);
                    }
                }
            }
        }
        for h in stopping {
            self.stop_instance(h).await;
        }
        *lock(&self.inner.config) = new.clone();
        let mut first_error = None;
        for c in &new.instances {
            let running = lock(&self.inner.instances).contains_key(&c.name);
            if !running {
                info!(instance = %c.name, "reload: starting");
                if let Err(e) = self.start_instance(c.clone()).await {
                    warn!(instance = %c.name, "reload: cannot start: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        if old.sync_groups != new.sync_groups {
            self.inner.sync_tick.send_modify(|n| *n = n.wrapping_add(1));
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn start_instance(&self, config: InstanceConfig) -> Result<(), VrrpError> {
        // The lock first: what follows removes "stale" VIPs, which would
        // be another live speaker's.
        let key = lock_key(&config);
        let taken = {
            let mut pending = lock(&self.inner.pending_locks);
            let at = pending.iter().position(|l| *l.key() == key);
            at.map(|i| pending.swap_remove(i))
        };
        let instance_lock = match taken {
            Some(l) => l,
            None => InstanceLock::acquire(key)?,
        };
        let info = netif::lookup(&config.interface)?;
        let ipv6 = config.is_ipv6();
        // Stale VIPs: a previous run killed with SIGKILL leaves its VIPs
        // behind (keepalived does too). Remove them before electing, except
        // for the address owner, whose addresses are its own.
        if config.priority != OWNER_PRIORITY {
            for vip in config.all_vips() {
                if self
                    .inner
                    .vips
                    .is_present(info.index, vip.addr)
                    .await
                    .unwrap_or(false)
                {
                    warn!(instance = %config.name, "removing stale VIP {}/{} left on {}", vip.addr, vip.prefix, config.interface);
                    self.inner.vips.remove(info.index, vip).await?;
                }
            }
        }
        let info = netif::lookup(&config.interface)?;
        let vip_addrs: Vec<IpAddr> = config.all_vips().map(|v| v.addr).collect();
        let source = config
            .unicast_src_ip
            .or_else(|| info.source_address(ipv6, &vip_addrs))
            .ok_or_else(|| VrrpError::Interface {
                name: config.interface.clone(),
                reason: if ipv6 {
                    "has no IPv6 link-local address to send adverts from (is it up?)".into()
                } else {
                    "has no IPv4 address to send adverts from".into()
                },
            })?;
        let receiver = self.receiver(&config.interface, info.index, ipv6)?;
        let io = Io {
            ifindex: info.index,
            mac: info.mac,
            source,
            sender: Some(Sender::open(&config.interface, info.index, source)?),
            frames: Arc::new(FrameSender::open(info.index)?),
            vips: self.inner.vips.clone(),
            probe_listener: match config.death_probe {
                None => None,
                Some(probe) => Some(
                    super::death_probe::bind_listener(source, info.index, probe.port).map_err(
                        |e| VrrpError::Io {
                            context: format!(
                                "vrrp.instance {:?}: listen on the death probe's TCP port {source}:{}",
                                config.name, probe.port
                            ),
                            source: e,
                        },
                    )?,
                ),
            },
        };
        let (packets_tx, packets_rx) = mpsc::channel(64);
        let (commands_tx, commands_rx) = mpsc::channel(4);
        let shared = Arc::new(Shared::new(
            config.clone(),
            receiver.discards.clone(),
            self.inner.hook.clone(),
        ));
        if *lock(&self.inner.standby) {
            instance::set_track(
                &shared,
                "standby",
                TrackStatus::Fault("standby (drain)".into()),
            );
        }
        write(&receiver.routes).insert(config.vrid, packets_tx);
        let task = tokio::spawn(instance::run(
            shared.clone(),
            io,
            packets_rx,
            commands_rx,
            self.inner.origin,
            self.inner.sync_tick.clone(),
        ));
        info!(
            instance = %config.name,
            interface = %config.interface,
            vrid = config.vrid,
            version = config.version.number(),
            %source,
            "VRRP instance started"
        );
        lock(&self.inner.instances).insert(
            config.name.clone(),
            Handle {
                shared,
                commands: commands_tx,
                task,
                route: (info.index, ipv6),
                _lock: instance_lock,
            },
        );
        Ok(())
    }

    /// Resigns one instance and waits (bounded) for it to finish.
    fn stop_instance(&self, h: Handle) -> impl std::future::Future<Output = ()> + use<> {
        let receivers = lock(&self.inner.receivers);
        if let Some(r) = receivers.get(&h.route) {
            write(&r.routes).remove(&h.shared.config.vrid);
        }
        drop(receivers);
        async move {
            let (tx, rx) = oneshot::channel();
            if h.commands.send(Command::Resign(tx)).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
            }
            h.task.abort();
        }
    }

    fn receiver(
        &self,
        ifname: &str,
        ifindex: u32,
        ipv6: bool,
    ) -> Result<Arc<ReceiverEntry>, VrrpError> {
        let mut receivers = lock(&self.inner.receivers);
        if let Some(r) = receivers.get(&(ifindex, ipv6)) {
            return Ok(r.clone());
        }
        let socket = Receiver::open(ifname, ifindex, ipv6)?;
        let entry = Arc::new(ReceiverEntry {
            routes: RwLock::new(HashMap::new()),
            discards: Arc::new(DiscardCounters::default()),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(receive_loop(
            socket,
            Arc::downgrade(&entry),
            ifname.to_owned(),
        ));
        *lock(&entry.task) = Some(task);
        receivers.insert((ifindex, ipv6), entry.clone());
        Ok(entry)
    }
}

/// Reads one interface's VRRP packets and hands each to the instance that
/// owns its VRID.
async fn receive_loop(socket: Receiver, entry: std::sync::Weak<ReceiverEntry>, ifname: String) {
    let mut buf = vec![0u8; 65536];
    let log = RateLimitedLog::new(Duration::from_secs(10));
    loop {
        let got = match socket.recv(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                warn!(interface = %ifname, "VRRP receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(entry) = entry.upgrade() else { return };
        let env = match got {
            Ok(env) => env,
            Err(reason) => {
                entry.discards.count(reason);
                if let Some(n) = log.admit(reason, std::time::Instant::now()) {
                    warn!(interface = %ifname, "discarded VRRP packet: {reason} ({n} more since the last report)");
                }
                continue;
            }
        };
        // Shorter than a VRRP header (8 bytes): not even a VRID to route by.
        if env.payload.len() < 8 {
            entry.discards.count(DiscardReason::PacketLength);
            if let Some(n) = log.admit(DiscardReason::PacketLength, std::time::Instant::now()) {
                debug!(interface = %ifname, from = %env.src, "VRRP packet of {} bytes ({n} more)", env.payload.len());
            }
            continue;
        }
        let vrid = env.payload.get(1).copied();
        let route = vrid.and_then(|v| read(&entry.routes).get(&v).cloned());
        let Some(route) = route else {
            // RFC 5798 §7.1: "MUST verify that the VRID is configured on the
            // receiving interface". Routine on a shared LAN, hence debug.
            entry.discards.count(DiscardReason::Vrid);
            if let Some(n) = log.admit(DiscardReason::Vrid, std::time::Instant::now()) {
                debug!(interface = %ifname, from = %env.src, "VRRP packet for VRID {vrid:?} not configured here ({n} more)");
            }
            continue;
        };
        let packet = Packet {
            src: env.src,
            dst: env.dst,
            hop_limit: env.hop_limit,
            payload: env.payload.to_vec(),
        };
        // A full queue means the instance is far behind; dropping is what
        // the network would do.
        let _ = route.try_send(packet);
    }
}

/// Keeps sync groups together: while any member is in Fault on its own
/// account, every other member is put in Fault too (keepalived
/// `vrrp_sync_group` semantics).
async fn sync_groups(inner: std::sync::Weak<Inner>) {
    let Some(mut tick) = inner.upgrade().map(|i| i.sync_tick.subscribe()) else {
        return;
    };
    loop {
        {
            let Some(inner) = inner.upgrade() else { return };
            let config = lock(&inner.config).clone();
            let instances = lock(&inner.instances);
            for h in instances.values() {
                let name = &h.shared.config.name;
                let mut status = TrackStatus::Ok;
                let mut key = format!("{SYNC_PREFIX}-");
                if let Some(group) = config.group_of(name) {
                    key = format!("{SYNC_PREFIX}{}", group.name);
                    let faulted = group.instances.iter().filter(|m| *m != name).find_map(|m| {
                        let other = instances.get(m)?;
                        let fault = lock(&other.shared.own_fault).clone()?;
                        Some(format!("sync group {}: {m} in fault ({fault})", group.name))
                    });
                    if let Some(why) = faulted {
                        status = TrackStatus::Fault(why);
                    }
                }
                // Clear entries of groups the instance no longer belongs to.
                h.shared.board.send_if_modified(|b| {
                    let stale: Vec<String> =
                        b.0.keys()
                            .filter(|k| k.starts_with(SYNC_PREFIX) && **k != key)
                            .cloned()
                            .collect();
                    let mut changed = false;
                    for k in stale {
                        changed |= b.set(&k, TrackStatus::Ok);
                    }
                    changed | b.set(&key, status.clone())
                });
            }
        }
        if tick.changed().await.is_err() {
            return;
        }
    }
}

fn snapshot(shared: &Shared) -> InstanceStatus {
    let view = shared.view();
    let c = &shared.config;
    let n = &shared.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let discards = DiscardReason::ALL
        .iter()
        .map(|&r| (r, shared.discards.get(r) + shared.interface_discards.get(r)))
        .collect();
    InstanceStatus {
        name: c.name.clone(),
        vrid: c.vrid,
        interface: c.interface.clone(),
        version: c.version,
        state: view.state,
        configured_priority: c.priority,
        effective_priority: view.effective_priority,
        master: view.master,
        last_transition: view.last_transition,
        vips: c.all_vips().copied().collect(),
        faults: view.faults,
        tracking: view.tracking,
        death_probe: c.death_probe.is_some(),
        counters: CounterSnapshot {
            adverts_sent: get(&n.adverts_sent),
            adverts_received: get(&n.adverts_received),
            become_master: get(&n.become_master),
            priority_zero_sent: get(&n.priority_zero_sent),
            priority_zero_received: get(&n.priority_zero_received),
            address_list_mismatches: get(&n.address_list_mismatches),
            send_errors: get(&n.send_errors),
            death_probe_connected: get(&n.death_probe.connected),
            death_probe_closed: get(&n.death_probe.closed),
            death_probe_refused: get(&n.death_probe.refused),
            death_probe_verdicts: get(&n.death_probe.verdicts),
        },
        discards,
    }
}

/// Locks, ignoring poisoning: the data stays consistent because every
/// critical section here is a plain read or replace.
fn lock_key(c: &InstanceConfig) -> LockKey {
    LockKey {
        interface: c.interface.clone(),
        vrid: c.vrid,
        ipv6: c.is_ipv6(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}
