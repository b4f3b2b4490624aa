//! The process: load the config, start the proxy and the admin API, react
//! to signals (SIGHUP reload, SIGTERM / SIGINT graceful stop).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use crate::admin::{AdminListener, AdminServer};
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::proxy::access_log::AccessLog;
use crate::proxy::runtime::Runtime;
use crate::proxy::server::{BindError, Hold, Server};
use crate::vrrp::{self, Speaker, VrrpError};

/// Why vigil could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Bind(#[from] BindError),
    #[error("{0}")]
    AccessLog(std::io::Error),
    #[error("cannot start the admin listener on {addr}: {source}")]
    Admin {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("VRRP: {0}")]
    Vrrp(#[from] VrrpError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// A running vigil: the proxy, the admin API, and what reload needs.
pub struct App {
    config_path: PathBuf,
    pub server: Server,
    generation: AtomicU64,
    started: SystemTime,
    admin: Mutex<Option<AdminServer>>,
    /// The VRRP speaker, when the config has `[vrrp]`.
    vrrp: Mutex<Option<Speaker>>,
    /// Why `[vrrp]` is configured but not running (a missing capability).
    vrrp_unavailable: Mutex<Option<String>>,
    /// One reload at a time (SIGHUP and the admin API may race).
    reloading: tokio::sync::Mutex<()>,
    heartbeats: Arc<crate::liveness::Heartbeats>,
    /// Asks `run_until_signal` to stop (from `POST /drain`).
    stop_requested: tokio::sync::Notify,
    /// `vigil drain --no-exit` is in effect.
    standby: std::sync::atomic::AtomicBool,
}

impl App {
    /// Loads `config_path` and starts everything it configures.
    pub async fn start(config_path: &Path) -> Result<Arc<App>, StartError> {
        let config = Config::load(config_path)?;
        App::start_with(config_path, config).await
    }

    /// Starts from an already loaded config (must run inside tokio: the
    /// control runtime, which also runs VRRP and the admin API).
    pub async fn start_with(config_path: &Path, config: Config) -> Result<Arc<App>, StartError> {
        let admin_addr = config.admin.as_ref().map(|a| a.listen);
        let vrrp_config = config.vrrp.clone();
        // One vigil per host: the VRRP instance locks and the admin
        // address are taken before anything is bound or changed, so a
        // second `vigil run` stops here without disturbing the first.
        let instance_locks = match &vrrp_config {
            Some(v) => Speaker::lock_instances(v)?,
            None => Vec::new(),
        };
        let admin_listener = match admin_addr {
            Some(addr) => Some(
                AdminListener::bind(addr).map_err(|source| StartError::Admin { addr, source })?,
            ),
            None => None,
        };
        let access_log =
            AccessLog::open(&config.log, config.http.workers).map_err(StartError::AccessLog)?;
        let runtime = Runtime::build(config, 1, None, access_log);
        // Listeners first: with IP_FREEBIND they bind the VIP before VRRP
        // may make this node master, so it serves from the first instant.
        let server = Server::start(runtime)?;
        let (speaker, vrrp_unavailable) = match vrrp_config {
            Some(v) => match Speaker::start_locked(v, instance_locks).await {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(unavailable(e)?)),
            },
            None => (None, None),
        };
        let heartbeats = crate::liveness::Heartbeats::start(&server.worker_handles());
        let app = Arc::new(App {
            heartbeats: heartbeats.clone(),
            stop_requested: tokio::sync::Notify::new(),
            standby: std::sync::atomic::AtomicBool::new(false),
            config_path: config_path.to_owned(),
            server,
            generation: AtomicU64::new(1),
            started: SystemTime::now(),
            admin: Mutex::new(None),
            vrrp: Mutex::new(speaker),
            vrrp_unavailable: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        });
        if let Some(bound) = admin_listener {
            let addr = bound.addr();
            let admin = AdminServer::serve(bound, Arc::downgrade(&app))
                .map_err(|source| StartError::Admin { addr, source })?;
            *app.lock_admin() = Some(admin);
        }
        app.watch_transitions();
        tokio::spawn(crate::liveness::monitor(Arc::downgrade(&app), heartbeats));
        let metrics = crate::metrics::get();
        metrics.config_generation.set(1);
        app.set_vrrp_unavailable(vrrp_unavailable);
        metrics.config_last_reload_success.set(unix_now());
        Ok(app)
    }

    /// Re-reads the config file and swaps it in. A bad config (or a
    /// listener that cannot be bound) leaves the running one untouched and
    /// says why.
    pub async fn reload(self: &Arc<Self>) -> Result<u64, String> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.try_reload().await;
        let metrics = crate::metrics::get();
        match &result {
            Ok(generation) => {
                metrics.config_reloads.with_label_values(&["success"]).inc();
                metrics.config_generation.set(*generation as i64);
                metrics.config_last_reload_success.set(unix_now());
                tracing::info!(generation, "config reloaded");
            }
            Err(e) => {
                metrics.config_reloads.with_label_values(&["failure"]).inc();
                tracing::error!("reload failed, keeping the running config:\n{e}");
            }
        }
        result
    }

    async fn try_reload(self: &Arc<Self>) -> Result<u64, String> {
        // Reading and validating may resolve host names: off the runtime.
        let path = self.config_path.clone();
        let config = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| format!("reload task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let current = self.server.runtime();
        let access_log = if current.access_log.same_as(&config.log) {
            current.access_log.clone()
        } else {
            // Workers are only started once, so the running count sizes it.
            AccessLog::open(&config.log, current.config.http.workers).map_err(|e| e.to_string())?
        };
        if config.http.workers != current.config.http.workers {
            tracing::warn!(
                running = current.config.http.workers,
                configured = config.http.workers,
                "[http] workers changes take effect at the next restart"
            );
        }
        // A new admin address is bound before anything changes.
        let new_admin = config.admin.as_ref().map(|a| a.listen);
        let old_admin = self.lock_admin().as_ref().map(|a| a.addr);
        let admin = if new_admin != old_admin {
            match new_admin {
                Some(addr) => Some(Some(
                    AdminServer::start(addr, Arc::downgrade(self))
                        .map_err(|e| format!("cannot start the admin listener on {addr}: {e}"))?,
                )),
                None => Some(None),
            }
        } else {
            None
        };
        // VRRP: instances whose settings did not change keep running with
        // no transition.
        let speaker = self.speaker();
        match (&speaker, config.vrrp.clone()) {
            (Some(s), Some(v)) => s.reload(v).await.map_err(|e| format!("VRRP: {e}"))?,
            (Some(s), None) => {
                s.resign_all().await;
                *self.lock_vrrp() = None;
            }
            (None, Some(v)) => match Speaker::start(v).await {
                Ok(s) => {
                    *self.lock_vrrp() = Some(s);
                    self.set_vrrp_unavailable(None);
                    self.watch_transitions();
                }
                // Still (or newly) without the capability: as at start.
                Err(e) => {
                    let why = unavailable(e).map_err(|e| format!("VRRP: {e}"))?;
                    self.set_vrrp_unavailable(Some(why));
                }
            },
            (None, None) => self.set_vrrp_unavailable(None),
        }
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let runtime = Runtime::build(config, generation, Some(&current), access_log);
        self.server.reload(runtime).map_err(|e| e.to_string())?;
        if let Some(admin) = admin {
            *self.lock_admin() = admin;
        }
        self.generation.store(generation, Ordering::Relaxed);
        Ok(generation)
    }

    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP, then stops
    /// gracefully.
    pub async fn run_until_signal(self: Arc<Self>) -> Result<(), StartError> {
        let mut term = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
        let mut usr1 = signal(SignalKind::user_defined1()).map_err(StartError::Signals)?;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: draining, then resigning"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: draining, then resigning"); break; }
                _ = hup.recv() => { let _ = self.reload().await; }
                _ = usr1.recv() => { self.reopen_logs(); }
                _ = self.stop_requested.notified() => { tracing::info!("drain requested: draining, then resigning"); break; }
            }
        }
        self.stop().await;
        Ok(())
    }

    /// Planned stop: drain, then resign, then exit.
    ///
    /// 1. Drain: every connection is told to go (HTTP/1.1 responses carry
    ///    `Connection: close`, HTTP/2 gets GOAWAY) while new connections are
    ///    still served, since the VIP still points here.
    /// 2. When the connections are gone (bounded by `shutdown_timeout`),
    ///    resign: priority-0 adverts make the peer take over after its
    ///    Skew_Time, and the VIPs are removed.
    /// 3. Close what is left and stop.
    pub async fn stop(&self) {
        let grace = self.server.runtime().config.http.shutdown_timeout;
        self.drain(grace).await;
        let speaker = self.lock_vrrp().take();
        if let Some(speaker) = speaker {
            speaker.resign_all().await;
        }
        self.server.close_connections();
        self.server.shutdown(grace).await;
        self.lock_admin().take();
        // Last: the requests that just finished are in the workers' buffers.
        self.server.runtime().access_log.flush().await;
    }

    /// `SIGUSR1` (logrotate's `postrotate`, as for nginx): the access log
    /// file is opened again by name; what was buffered goes to the old one.
    pub fn reopen_logs(&self) {
        tracing::info!("SIGUSR1: reopening the access log");
        self.server.runtime().access_log.reopen();
    }

    /// Empties the proxy before the VIP moves. Busy connections are told
    /// to close after their current response (`Connection: close`,
    /// GOAWAY) and new ones are held off (SYNs dropped, retried by TCP and
    /// answered by whoever holds the VIP then). Connections still idle
    /// after a second are closed; whatever is busy gets until `grace`.
    /// Returns the connections left open.
    async fn drain(&self, grace: std::time::Duration) -> usize {
        let settle = grace.min(std::time::Duration::from_secs(1));
        let started = std::time::Instant::now();
        self.server.set_draining(true);
        self.server.hold_new_connections(Hold::Drain, true);
        tracing::info!(
            connections = self.server.connections(),
            "draining; new connections held off"
        );
        let mut left = self.server.wait_connections_closed(settle).await;
        if left > 0 {
            self.server.close_connections();
            left = self.server.wait_connections_closed(grace - settle).await;
        }
        if left > 0 {
            tracing::warn!(
                left,
                ?grace,
                "drain timeout: going on with connections open"
            );
        } else {
            tracing::info!(took = ?started.elapsed(), "drained");
        }
        left
    }

    /// `vigil drain`: the planned stop of [`stop`](Self::stop), run by
    /// `run_until_signal` (which then exits).
    pub fn request_stop(&self) {
        self.stop_requested.notify_one();
    }

    /// `vigil drain --no-exit`: drain the connections, then give up the
    /// VIP and stay out of VRRP elections (every instance in Fault) while
    /// the process keeps running, for maintenance. `/healthz` says so.
    pub async fn drain_and_stand_by(&self) -> usize {
        self.standby.store(true, Ordering::Relaxed);
        let grace = self.server.runtime().config.http.shutdown_timeout;
        let left = self.drain(grace).await;
        if let Some(speaker) = self.speaker() {
            speaker.set_standby(true);
        }
        left
    }

    /// `vigil undrain`: back to normal service and VRRP elections.
    pub fn undrain(&self) {
        self.standby.store(false, Ordering::Relaxed);
        self.server.set_draining(false);
        self.server.hold_new_connections(Hold::Drain, false);
        if let Some(speaker) = self.speaker() {
            speaker.set_standby(false);
        }
    }

    /// `[admin] debug = true`.
    pub fn debug_enabled(&self) -> bool {
        self.server
            .runtime()
            .config
            .admin
            .as_ref()
            .is_some_and(|a| a.debug)
    }

    /// Test hook: blocks every worker thread for `how_long`, as a wedged
    /// event loop would (`POST /debug/stall`, only with `[admin] debug`).
    pub fn stall_workers(&self, how_long: std::time::Duration) {
        tracing::warn!(?how_long, "debug: stalling every worker");
        for handle in self.server.worker_handles() {
            handle.spawn(async move { std::thread::sleep(how_long) });
        }
    }

    /// Test hook: dies the way a bug would, with no cleanup (`POST
    /// /debug/crash`, only with `[admin] debug`): a panic as under
    /// `panic = "abort"`, or a plain abort (SIGABRT).
    pub fn crash(&self, abort: bool) -> ! {
        tracing::error!(abort, "debug: crash requested");
        if abort {
            std::process::abort();
        }
        vrrp::guardian::abort_on_panic();
        panic!("debug: crash requested through /debug/crash");
    }

    /// The bound admin address, if the admin API runs.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.lock_admin().as_ref().map(|a| a.local)
    }

    /// Ok while serving; the reason when not (for `/healthz`).
    pub fn health(&self) -> Result<(), String> {
        use crate::proxy::server::Lifecycle;
        if self.standby.load(Ordering::Relaxed) {
            return Err("drained (standby): run `vigil undrain` to serve again".into());
        }
        if self.server.lifecycle() != Lifecycle::Serving {
            return Err("draining".into());
        }
        if let Some(speaker) = self.speaker() {
            let faults: Vec<String> = speaker
                .status()
                .into_iter()
                .filter(|i| i.state == vrrp::State::Fault)
                .map(|i| format!("VRRP instance {} in FAULT: {}", i.name, i.faults.join(", ")))
                .collect();
            if !faults.is_empty() {
                return Err(faults.join("; "));
            }
        }
        Ok(())
    }

    /// Copies scrape-time state (pool health, connection counts, log
    /// drops) into the metrics registry.
    pub fn refresh_metrics(&self, m: &Metrics) {
        let rt = self.server.runtime();
        m.upstream_server_up.reset();
        for (name, pool) in &rt.pools {
            // Every configured pool has its retry series from the start.
            m.upstream_retries.with_label_values(&[name.as_str()]);
            let now = std::time::Instant::now();
            for peer in &pool.peers {
                m.upstream_server_up
                    .with_label_values(&[name.as_str(), peer.server.label.as_str()])
                    .set(i64::from(peer.available(now)));
            }
        }
        crate::metrics::mirror_counter_single(&m.access_log_dropped, rt.access_log.dropped());
        m.vrrp_state.reset();
        m.vrrp_priority.reset();
        for i in self.speaker().map(|s| s.status()).unwrap_or_default() {
            let vrid = i.vrid.to_string();
            let labels = [i.name.as_str(), vrid.as_str(), i.interface.as_str()];
            let state = match i.state {
                vrrp::State::Initialize => 0,
                vrrp::State::Backup => 1,
                vrrp::State::Master => 2,
                vrrp::State::Fault => 3,
            };
            m.vrrp_state.with_label_values(&labels).set(state);
            // Present (at zero) before the first advert.
            m.vrrp_advert_lag.with_label_values(&labels);
            m.vrrp_priority
                .with_label_values(&labels)
                .set(i64::from(i.effective_priority));
            use crate::metrics::mirror_counter;
            mirror_counter(&m.vrrp_become_master, &labels, i.counters.become_master);
            mirror_counter(&m.vrrp_adverts_sent, &labels, i.counters.adverts_sent);
            mirror_counter(
                &m.vrrp_adverts_received,
                &labels,
                i.counters.adverts_received,
            );
            for (reason, count) in &i.discards {
                let l = [labels[0], labels[1], labels[2], reason.name()];
                mirror_counter(&m.vrrp_packets_discarded, &l, *count);
            }
        }
    }

    /// The `/status` document.
    pub fn status(&self) -> serde_json::Value {
        let rt = self.server.runtime();
        let now = std::time::Instant::now();
        let listeners: Vec<_> = self
            .server
            .local_addrs()
            .into_iter()
            .map(|(configured, local)| {
                let l = rt.config.listeners.iter().find(|l| l.addr == configured);
                json!({
                    "listen": configured.to_string(),
                    "bound": local.to_string(),
                    "tls": l.is_some_and(|l| l.tls),
                    "servers": l.map(|l| l.servers.iter().map(|&s| rt.config.servers[s].label.clone()).collect::<Vec<_>>()).unwrap_or_default(),
                })
            })
            .collect();
        let upstreams: Vec<_> = rt
            .pools
            .iter()
            .map(|(name, pool)| {
                let servers: Vec<_> = pool
                    .peers
                    .iter()
                    .map(|p| {
                        json!({
                            "addr": p.server.label,
                            "up": p.available(now),
                            "health_check": if pool.config.health_check.is_some() {
                                if p.is_healthy() { "up" } else { "down" }
                            } else { "off" },
                            "active_requests": p.active.load(Ordering::Relaxed),
                            "idle_connections": p.idle.len(),
                            "weight": p.server.weight,
                            "backup": p.server.backup,
                            "down": p.server.down,
                        })
                    })
                    .collect();
                json!({
                    "name": name,
                    "balance": format!("{:?}", pool.config.balance).to_lowercase(),
                    "available": pool.available_count(),
                    "servers": servers,
                })
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config": self.config_path.display().to_string(),
            "generation": rt.generation,
            "uptime_seconds": self.started.elapsed().map(|d| d.as_secs()).unwrap_or(0),
            "workers": rt.config.http.workers,
            "worker_max_lag_ms": self.heartbeats.stalest().map_or(0, |(_, d)| d.as_millis() as u64),
            "connections_active": self.server.connections(),
            "listeners": listeners,
            "upstreams": upstreams,
            "state": match self.server.lifecycle() {
                _ if self.standby.load(Ordering::Relaxed) => "standby",
                crate::proxy::server::Lifecycle::Serving => "serving",
                crate::proxy::server::Lifecycle::Draining => "draining",
                crate::proxy::server::Lifecycle::Closing => "closing",
            },
            "vrrp_unavailable": self.vrrp_unavailable.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            "vrrp": self.speaker().map(|s| s.status()).unwrap_or_default().iter().map(vrrp_status).collect::<Vec<_>>(),
            "guardian": self.speaker().and_then(|s| s.guardian()).map(|g| json!({
                "pid": g.pid,
                "restarts": g.restarts,
                "vips_held": g.held,
            })),
        })
    }

    /// Before an instance removes its VIPs, connections to them are closed
    /// (see `Server::release_addresses`), while the FINs can still leave
    /// from those addresses; the removal waits up to 100 ms for that.
    /// Meanwhile new connections are held off: one accepted now could not
    /// be answered once the VIP is gone (replies from a removed address
    /// are not routed), and would hang until the client's timeout. A held
    /// SYN is retried by the client's TCP a second later and reaches
    /// the new master.
    fn watch_transitions(self: &Arc<Self>) {
        let Some(speaker) = self.speaker() else {
            return;
        };
        let app = Arc::downgrade(self);
        speaker.on_advert_lag(Arc::new(|c, lag| {
            let vrid = c.vrid.to_string();
            crate::metrics::get()
                .vrrp_advert_lag
                .with_label_values(&[c.name.as_str(), vrid.as_str(), c.interface.as_str()])
                .observe(lag.as_secs_f64());
        }));
        speaker.on_release(Arc::new(move |vips| {
            let app = app.clone();
            Box::pin(async move {
                let Some(app) = app.upgrade() else { return };
                app.server.hold_new_connections(Hold::Release, true);
                app.server.release_addresses(&vips);
                app.server
                    .wait_released(&vips, std::time::Duration::from_millis(100))
                    .await;
                // The VIPs are removed as soon as this returns; lift the
                // hold once they surely are (and should one come back, its
                // connections are ordinary ones).
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    app.server.forget_released(&vips);
                    app.server.hold_new_connections(Hold::Release, false);
                });
            })
        }));
    }

    fn set_vrrp_unavailable(&self, why: Option<String>) {
        crate::metrics::get()
            .vrrp_unavailable
            .set(i64::from(why.is_some()));
        *self
            .vrrp_unavailable
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// The VRRP speaker, if `[vrrp]` is configured.
    pub fn speaker(&self) -> Option<Speaker> {
        self.lock_vrrp().clone()
    }

    fn lock_vrrp(&self) -> std::sync::MutexGuard<'_, Option<Speaker>> {
        self.vrrp.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_admin(&self) -> std::sync::MutexGuard<'_, Option<AdminServer>> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A speaker that could not start for lack of a capability (a container
/// started without `--cap-add`, a unit without the ambient capabilities):
/// the proxy is fine, so it serves on the node's own addresses and the peer
/// keeps the VIP. Said loudly, in /status and as a metric to alert on,
/// rather than a restart loop that serves nothing. Any other error stands.
fn unavailable(e: VrrpError) -> Result<String, VrrpError> {
    if !e.is_missing_capability() {
        return Err(e);
    }
    tracing::error!("VRRP unavailable, serving as a plain proxy without the VIP: {e}");
    Ok(e.to_string())
}

fn vrrp_status(i: &vrrp::InstanceStatus) -> serde_json::Value {
    let state = match i.state {
        vrrp::State::Initialize => "init",
        vrrp::State::Backup => "backup",
        vrrp::State::Master => "master",
        vrrp::State::Fault => "fault",
    };
    json!({
        "name": i.name,
        "vrid": i.vrid,
        "interface": i.interface,
        "version": format!("{:?}", i.version),
        "state": state,
        "priority": i.configured_priority,
        "effective_priority": i.effective_priority,
        "master": i.master.map(|a| a.to_string()),
        "last_transition": i.last_transition.as_ref().map(|t| json!({
            "at": crate::proxy::access_log::iso_time(t.at),
            "from": format!("{:?}", t.from).to_lowercase(),
            "to": format!("{:?}", t.to).to_lowercase(),
            "reason": t.reason,
        })),
        "last_transition_reason": i.last_transition.as_ref().map(|t| t.reason.clone()),
        "vips": i.vips.iter().map(|v| format!("{}/{}", v.addr, v.prefix)).collect::<Vec<_>>(),
        "faults": i.faults,
        "tracking": i.tracking,
        "counters": {
            "adverts_sent": i.counters.adverts_sent,
            "adverts_received": i.counters.adverts_received,
            "become_master": i.counters.become_master,
            "priority_zero_sent": i.counters.priority_zero_sent,
            "priority_zero_received": i.counters.priority_zero_received,
        },
        "discards": i.discards.iter().filter(|(_, n)| *n > 0).map(|(r, n)| (r.name().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
    })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
