//! The proxy's own health, turned into VRRP priority (issue: "one fate").
//!
//! Three signals, checked every `probe_interval` on the control runtime:
//!
//! - **worker heartbeats**: each worker thread's runtime bumps a timestamp
//!   every few milliseconds; a worker silent for longer than
//!   `probe_timeout` is wedged (a blocked event loop, a stuck thread);
//! - **self-probe**: a real HTTP request through one of our own listeners
//!   (accept, parse, route, respond), answered by the handler without
//!   touching an upstream; no answer within `probe_timeout` fails;
//! - **upstream pools**: a tracked pool with no available server.
//!
//! What a failure does is the instance's `[vrrp.instance.track]`
//! (keepalived semantics: Fault, or a priority weight). The result goes to
//! the speaker at once, which re-advertises, so a preempting peer takes
//! over without waiting for a timeout. When the whole process stops
//! (SIGSTOP, or the control runtime itself stalls), adverts stop with it.

mod heartbeats;
mod probe;
mod verdict;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

pub use heartbeats::Heartbeats;
pub use verdict::{ProxyVerdict, Streaks, external_health};

use crate::config::vrrp::TrackConfig;
use crate::proxy::runtime::Pool;
use crate::proxy::server::Server;
use crate::vrrp::{ExternalHealth, Speaker};

/// What liveness watches and whom it tells: the proxy, and the speaker
/// of the moment (a reload may start or stop it).
pub trait Watched: Send + Sync + 'static {
    fn proxy(&self) -> &Server;
    fn speaker(&self) -> Option<Speaker>;
}

/// Runs the checks and feeds the speaker until `app` is gone.
pub async fn monitor(app: Weak<impl Watched>, heartbeats: Arc<Heartbeats>) {
    let mut last: HashMap<String, ExternalHealth> = HashMap::new();
    let mut streaks = Streaks::default();
    loop {
        let (interval, timeout) = {
            let Some(app) = app.upgrade() else { return };
            let rt = app.proxy().runtime();
            let tracks: Vec<&TrackConfig> = rt
                .config
                .vrrp
                .iter()
                .flat_map(|v| v.instances.iter().map(|i| &i.track))
                .filter(|t| t.proxy.is_some() || !t.upstreams.is_empty())
                .collect();
            let interval = tracks.iter().map(|t| t.probe_interval).min();
            let timeout = tracks.iter().map(|t| t.probe_timeout).min();
            (interval, timeout)
        };
        let (Some(interval), Some(timeout)) = (interval, timeout) else {
            // Nothing tracks the proxy (now); look again later.
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let before = Instant::now();
        tokio::time::sleep(interval).await;
        let Some(app) = app.upgrade() else { return };
        if before.elapsed() > interval + timeout {
            // The control thread itself did not run (SIGSTOP, a VM pause):
            // the whole process was frozen, workers included, and their
            // heartbeats say nothing about the proxy now. VRRP handles the
            // freeze (see `check_freeze`); look again next round.
            continue;
        }
        let rt = app.proxy().runtime();

        // Proxy: heartbeats, then a real request.
        let mut failure = None;
        if let Some((worker, silent)) = heartbeats.stalest() {
            if silent > timeout {
                // No duration in the text: the reason must stay the same
                // while the condition lasts (it is compared and logged on
                // change).
                failure = Some(format!("worker {worker} unresponsive for over {timeout:?}"));
            }
        }
        if failure.is_none() {
            if let Some(target) =
                probe::probe_target(&rt.config.listeners, &app.proxy().local_addrs())
            {
                if let Err(why) = probe::probe(target, timeout).await {
                    failure = Some(why);
                }
            }
        }
        let was_healthy = *streaks.verdict() == ProxyVerdict::Healthy;
        let verdict = streaks.observe(failure).clone();
        // Before the speaker hears of it: the release that follows must
        // not wait for workers that do not run.
        app.proxy()
            .set_unresponsive(verdict != ProxyVerdict::Healthy);
        match (&verdict, was_healthy) {
            (ProxyVerdict::Failing(why), true) => tracing::warn!(%why, "proxy self-check failed"),
            (ProxyVerdict::Healthy, false) => tracing::info!("proxy self-check healthy again"),
            _ => {}
        }

        let Some(speaker) = app.speaker() else {
            continue;
        };
        let pools = &rt.pools;
        let available = |name: &str| -> Option<(usize, usize)> {
            pools
                .get(name)
                .map(|p: &Arc<Pool>| (p.available_count(), p.peers.len()))
        };
        for instance in rt.config.vrrp.iter().flat_map(|v| &v.instances) {
            let health = external_health(&instance.track, &verdict, available);
            if last.get(&instance.name) != Some(&health) {
                if health != ExternalHealth::healthy() {
                    tracing::warn!(instance = %instance.name, reason = %health.reason, delta = health.priority_delta, fault = health.fault, "tracking lowers VRRP priority");
                } else if last.contains_key(&instance.name) {
                    tracing::info!(instance = %instance.name, "tracking healthy again");
                }
                if speaker.set_external(&instance.name, health.clone()).is_ok() {
                    last.insert(instance.name.clone(), health);
                }
            }
        }
    }
}
