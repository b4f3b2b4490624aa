//! The process: load the config, start the proxy and the admin API, react
//! to signals (SIGHUP reload, SIGTERM / SIGINT graceful stop).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{SignalKind, signal};

mod error;
mod handover;
mod status;

pub use error::{ReloadError, StartError, chain};

use crate::admin::{AdminListener, AdminServer};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::access_log::AccessLog;
use crate::proxy::runtime::Runtime;
use crate::proxy::server::{Hold, Server};
use crate::vrrp::{self, Speaker, VrrpError};

/// A running vigil: the proxy, the admin API, and what reload needs.
pub struct App {
    /// This process's metrics, handed down to the proxy's runtime.
    metrics: Arc<Metrics>,
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
        let metrics = Arc::new(Metrics::new());
        let runtime = Runtime::build(config, 1, None, access_log, metrics.clone());
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
            metrics: metrics.clone(),
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
        metrics.config_generation.set(1);
        app.set_vrrp_unavailable(vrrp_unavailable);
        metrics.config_last_reload_success.set(unix_now());
        Ok(app)
    }

    /// Re-reads the config file and swaps it in. A bad config (or a
    /// listener that cannot be bound) leaves the running one untouched and
    /// says why.
    pub async fn reload(self: &Arc<Self>) -> Result<u64, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let result = self.try_reload().await;
        let metrics = &self.metrics;
        match &result {
            Ok(generation) => {
                metrics.config_reloads.with_label_values(&["success"]).inc();
                metrics.config_generation.set(*generation as i64);
                metrics.config_last_reload_success.set(unix_now());
                tracing::info!(generation, "config reloaded");
            }
            Err(e) => {
                metrics.config_reloads.with_label_values(&["failure"]).inc();
                tracing::error!("reload failed, keeping the running config:\n{}", chain(e));
            }
        }
        result
    }

    async fn try_reload(self: &Arc<Self>) -> Result<u64, ReloadError> {
        // Reading and validating may resolve host names: off the runtime.
        let path = self.config_path.clone();
        let config = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(ReloadError::Task)??;
        let current = self.server.runtime();
        let access_log = if current.access_log.same_as(&config.log) {
            current.access_log.clone()
        } else {
            // Workers are only started once, so the running count sizes it.
            AccessLog::open(&config.log, current.config.http.workers)
                .map_err(ReloadError::AccessLog)?
        };
        if config.http.workers != current.config.http.workers {
            tracing::warn!(
                running = current.config.http.workers,
                configured = config.http.workers,
                "[http] workers changes take effect at the next restart"
            );
        }
        if config.http.worker_cpu_affinity != current.config.http.worker_cpu_affinity {
            tracing::warn!(
                running = ?current.config.http.worker_cpu_affinity,
                configured = ?config.http.worker_cpu_affinity,
                "[http] worker_cpu_affinity changes take effect at the next restart"
            );
        }
        // A new admin address is bound before anything changes.
        let new_admin = config.admin.as_ref().map(|a| a.listen);
        let old_admin = self.lock_admin().as_ref().map(|a| a.addr);
        let admin = if new_admin != old_admin {
            match new_admin {
                Some(addr) => Some(Some(
                    AdminServer::start(addr, Arc::downgrade(self))
                        .map_err(|source| ReloadError::Admin { addr, source })?,
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
            (Some(s), Some(v)) => s.reload(v).await?,
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
                    let why = unavailable(e)?;
                    self.set_vrrp_unavailable(Some(why));
                }
            },
            (None, None) => self.set_vrrp_unavailable(None),
        }
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let runtime = Runtime::build(
            config,
            generation,
            Some(&current),
            access_log,
            self.metrics.clone(),
        );
        self.server.reload(runtime)?;
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
        handover::drain(&self.server, grace).await;
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
        let left = handover::drain(&self.server, grace).await;
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

    /// Connects the speaker's hooks: advert lag into the metrics, and the
    /// release of a VIP's connections before it goes (`handover::release`).
    fn watch_transitions(self: &Arc<Self>) {
        let Some(speaker) = self.speaker() else {
            return;
        };
        let app = Arc::downgrade(self);
        let metrics = self.metrics.clone();
        speaker.on_advert_lag(Arc::new(move |c, lag| {
            let vrid = c.vrid.to_string();
            metrics
                .vrrp_advert_lag
                .with_label_values(&[c.name.as_str(), vrid.as_str(), c.interface.as_str()])
                .observe(lag.as_secs_f64());
        }));
        speaker.on_release(Arc::new(move |vips| {
            let app = app.clone();
            Box::pin(async move {
                if let Some(app) = app.upgrade() {
                    handover::release(app, vips).await;
                }
            })
        }));
    }

    fn set_vrrp_unavailable(&self, why: Option<String>) {
        self.metrics.vrrp_unavailable.set(i64::from(why.is_some()));
        *self
            .vrrp_unavailable
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// This process's metrics (tests read counters from it).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The admin API's handle on the process.
impl crate::admin::Control for App {
    fn render_metrics(&self) -> String {
        self.metrics.render(|m| App::refresh_metrics(self, m))
    }

    fn health(&self) -> Result<(), String> {
        App::health(self)
    }

    fn status(&self) -> serde_json::Value {
        App::status(self)
    }

    async fn reload(self: Arc<Self>) -> Result<u64, crate::admin::Refused> {
        App::reload(&self).await.map_err(|e| crate::admin::Refused {
            bad_config: e.is_config(),
            message: chain(&e),
        })
    }

    async fn drain_and_stand_by(self: Arc<Self>) -> usize {
        App::drain_and_stand_by(&self).await
    }

    fn request_stop(&self) {
        App::request_stop(self);
    }

    fn undrain(&self) {
        App::undrain(self);
    }

    fn debug_enabled(&self) -> bool {
        App::debug_enabled(self)
    }

    fn crash(&self, abort: bool) -> ! {
        App::crash(self, abort)
    }

    fn stall_workers(&self, how_long: std::time::Duration) {
        App::stall_workers(self, how_long);
    }
}

/// Liveness's handle on the process.
impl crate::liveness::Watched for App {
    fn proxy(&self) -> &Server {
        &self.server
    }

    fn speaker(&self) -> Option<Speaker> {
        App::speaker(self)
    }
}
