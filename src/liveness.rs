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

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::app::App;
use crate::config::ListenerConfig;
use crate::config::vrrp::{TrackConfig, TrackEffect};
use crate::proxy::probe::{PROBE_HEADER, probe_token};
use crate::proxy::runtime::Pool;
use crate::vrrp::ExternalHealth;

/// How often each worker proves it is alive.
const BEAT: Duration = Duration::from_millis(10);

/// Last beat of each worker, in milliseconds since `origin`.
#[derive(Debug)]
pub struct Heartbeats {
    origin: Instant,
    beats: Vec<AtomicU64>,
}

impl Heartbeats {
    /// Starts a beating task on each worker runtime.
    pub fn start(workers: &[tokio::runtime::Handle]) -> Arc<Heartbeats> {
        let hb = Arc::new(Heartbeats {
            origin: Instant::now(),
            beats: workers.iter().map(|_| AtomicU64::new(0)).collect(),
        });
        for (i, handle) in workers.iter().enumerate() {
            let weak = Arc::downgrade(&hb);
            handle.spawn(async move {
                let mut tick = tokio::time::interval(BEAT);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    let Some(hb) = weak.upgrade() else { return };
                    let now = hb.origin.elapsed().as_millis() as u64;
                    hb.beats[i].store(now, Ordering::Relaxed);
                }
            });
        }
        hb
    }

    /// The worker silent the longest, and for how long.
    pub fn stalest(&self) -> Option<(usize, Duration)> {
        let now = self.origin.elapsed().as_millis() as u64;
        self.beats
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    i,
                    Duration::from_millis(now.saturating_sub(b.load(Ordering::Relaxed))),
                )
            })
            .max_by_key(|(_, d)| *d)
    }
}

/// The proxy's verdict on itself after one round of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyVerdict {
    Healthy,
    Failing(String),
}

/// Combines one instance's tracking with the current signals. Pure, so
/// the keepalived-style arithmetic is unit-tested.
pub fn external_health(
    track: &TrackConfig,
    proxy: &ProxyVerdict,
    pool_available: impl Fn(&str) -> Option<(usize, usize)>,
) -> ExternalHealth {
    let mut delta = 0i32;
    let mut fault = false;
    let mut reasons = Vec::new();
    let mut apply = |effect: TrackEffect, failing: bool, what: String| match (effect, failing) {
        (TrackEffect::Fault, true) => {
            fault = true;
            reasons.push(what);
        }
        // keepalived: a negative weight applies while failing, a positive
        // one while healthy.
        (TrackEffect::Weight(w), true) if w < 0 => {
            delta += w;
            reasons.push(format!("{what} ({w:+})"));
        }
        (TrackEffect::Weight(w), false) if w > 0 => {
            delta += w;
        }
        _ => {}
    };
    if let Some(effect) = track.proxy {
        match proxy {
            ProxyVerdict::Healthy => apply(effect, false, String::new()),
            ProxyVerdict::Failing(why) => apply(effect, true, format!("proxy: {why}")),
        }
    }
    for (name, effect) in &track.upstreams {
        let (available, total) = pool_available(name).unwrap_or((0, 0));
        apply(
            *effect,
            available == 0,
            format!("upstream {name}: {available}/{total} servers up"),
        );
    }
    if fault {
        ExternalHealth::fault(reasons.join("; "))
    } else if delta != 0 {
        ExternalHealth::delta(delta, reasons.join("; "))
    } else {
        ExternalHealth::healthy()
    }
}

/// Runs the checks and feeds the speaker until `app` is gone.
pub async fn monitor(app: Weak<App>, heartbeats: Arc<Heartbeats>) {
    let mut last: HashMap<String, ExternalHealth> = HashMap::new();
    let mut verdict = ProxyVerdict::Healthy;
    let mut healthy_streak = 0u32;
    let mut failing_streak = 0u32;
    loop {
        let (interval, timeout) = {
            let Some(app) = app.upgrade() else { return };
            let rt = app.server.runtime();
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
        let rt = app.server.runtime();

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
            if let Some(target) = probe_target(&rt.config.listeners, &app.server.local_addrs()) {
                if let Err(why) = probe(target, timeout).await {
                    failure = Some(why);
                }
            }
        }
        // Fail after two bad rounds in a row (a single scheduling hiccup on
        // a loaded host must not move the VIP), recover after three good
        // ones, so a flapping proxy does not bounce it either.
        verdict = match (failure, &verdict) {
            (Some(why), ProxyVerdict::Healthy) => {
                failing_streak += 1;
                healthy_streak = 0;
                if failing_streak >= 2 {
                    tracing::warn!(%why, "proxy self-check failed");
                    ProxyVerdict::Failing(why)
                } else {
                    ProxyVerdict::Healthy
                }
            }
            (Some(why), ProxyVerdict::Failing(_)) => {
                healthy_streak = 0;
                ProxyVerdict::Failing(why)
            }
            (None, ProxyVerdict::Failing(why)) => {
                failing_streak = 0;
                healthy_streak += 1;
                if healthy_streak >= 3 {
                    tracing::info!("proxy self-check healthy again");
                    ProxyVerdict::Healthy
                } else {
                    ProxyVerdict::Failing(why.clone())
                }
            }
            (None, ProxyVerdict::Healthy) => {
                failing_streak = 0;
                ProxyVerdict::Healthy
            }
        };

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

/// A listener this host can reach on loopback: a wildcard, a loopback or
/// a local address (not a VIP held by the peer). Plain HTTP preferred.
fn probe_target(
    listeners: &[ListenerConfig],
    bound: &[(SocketAddr, SocketAddr)],
) -> Option<ProbeTarget> {
    let mut candidates: Vec<((bool, bool), SocketAddr)> = Vec::new();
    for l in listeners {
        let Some((_, local)) = bound.iter().find(|(c, _)| *c == l.addr) else {
            continue;
        };
        let ip = match local.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip if ip.is_loopback() || is_local(ip) => ip,
            _ => continue,
        };
        candidates.push(((l.tls, l.proxy_protocol), SocketAddr::new(ip, local.port())));
    }
    // Plain first, then plain HTTP without a PROXY header expected.
    candidates.sort_by_key(|(kind, _)| *kind);
    candidates.first().map(|((_, proxy), a)| ProbeTarget {
        addr: *a,
        proxy_protocol: *proxy,
    })
}

/// True when `ip` is configured on this host (binding to it works).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Where the self-probe goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProbeTarget {
    addr: SocketAddr,
    /// The listener expects a PROXY protocol header: the probe sends a v1
    /// `UNKNOWN` one (the connection's own addresses apply).
    proxy_protocol: bool,
}

/// One self-probe request; the handler answers it with 204 before routing.
async fn probe(to: ProbeTarget, timeout: Duration) -> Result<(), String> {
    let target = to.addr;
    let attempt = async {
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("self-probe cannot connect to {target}: {e}"))?;
        let request = format!(
            "{}GET / HTTP/1.1\r\nHost: vigil-probe\r\n{PROBE_HEADER}: {}\r\nConnection: close\r\n\r\n",
            if to.proxy_protocol {
                "PROXY UNKNOWN\r\n"
            } else {
                ""
            },
            probe_token()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("self-probe write to {target}: {e}"))?;
        let mut head = [0u8; 12];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|e| format!("self-probe read from {target}: {e}"))?;
        if &head[..] == b"HTTP/1.1 204" {
            Ok(())
        } else {
            Err(format!(
                "self-probe to {target} answered {:?}",
                String::from_utf8_lossy(&head)
            ))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "self-probe to {target}: no answer within {timeout:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(proxy: Option<TrackEffect>, upstreams: &[(&str, TrackEffect)]) -> TrackConfig {
        TrackConfig {
            proxy,
            upstreams: upstreams.iter().map(|(n, e)| (n.to_string(), *e)).collect(),
            probe_interval: Duration::from_millis(200),
            probe_timeout: Duration::from_millis(400),
            ..TrackConfig::default()
        }
    }

    #[test]
    fn keepalived_weight_semantics() {
        let t = track(
            Some(TrackEffect::Weight(-30)),
            &[
                ("app", TrackEffect::Weight(-50)),
                ("bonus", TrackEffect::Weight(10)),
            ],
        );
        let all_up = |_: &str| Some((2, 2));
        let h = external_health(&t, &ProxyVerdict::Healthy, all_up);
        assert_eq!(
            h,
            ExternalHealth::delta(10, ""),
            "positive weight while healthy"
        );
        let app_down = |n: &str| Some(if n == "app" { (0, 2) } else { (1, 1) });
        let h = external_health(&t, &ProxyVerdict::Healthy, app_down);
        assert_eq!(h.priority_delta, -40);
        assert!(
            h.reason.contains("upstream app: 0/2 servers up"),
            "{}",
            h.reason
        );
        let h = external_health(
            &t,
            &ProxyVerdict::Failing("worker 1 stuck".into()),
            app_down,
        );
        assert_eq!(h.priority_delta, -70);
        assert!(h.reason.contains("proxy: worker 1 stuck"));
        assert!(!h.fault);
    }

    #[test]
    fn fault_wins_over_weights() {
        let t = track(
            Some(TrackEffect::Fault),
            &[("app", TrackEffect::Weight(-50))],
        );
        let h = external_health(&t, &ProxyVerdict::Failing("no answer".into()), |_| {
            Some((0, 1))
        });
        assert!(h.fault);
        assert!(h.reason.contains("proxy: no answer") && h.reason.contains("upstream app"));
        let h = external_health(&t, &ProxyVerdict::Healthy, |_| Some((1, 1)));
        assert_eq!(h, ExternalHealth::healthy());
        // No tracking at all: always healthy.
        let h = external_health(
            &track(None, &[]),
            &ProxyVerdict::Failing("x".into()),
            |_| None,
        );
        assert_eq!(h, ExternalHealth::healthy());
    }

    #[test]
    fn probe_targets_prefer_reachable_plain_listeners() {
        let l = |addr: &str, tls: bool| ListenerConfig {
            addr: addr.parse().unwrap(),
            servers: vec![0],
            default_server: 0,
            tls,
            proxy_protocol: false,
        };
        let listeners = [
            l("0.0.0.0:443", true),
            l("192.0.2.99:80", false),
            l("0.0.0.0:8080", false),
        ];
        let bound: Vec<(SocketAddr, SocketAddr)> =
            listeners.iter().map(|l| (l.addr, l.addr)).collect();
        // 192.0.2.99 is not on this host (a VIP held elsewhere): skipped.
        let at = |a: &str, proxy_protocol: bool| {
            Some(ProbeTarget {
                addr: a.parse().unwrap(),
                proxy_protocol,
            })
        };
        assert_eq!(
            probe_target(&listeners, &bound),
            at("127.0.0.1:8080", false)
        );
        assert_eq!(
            probe_target(&listeners[..2], &bound[..2]),
            at("127.0.0.1:443", false)
        );
        // A listener expecting PROXY headers comes after a plain one, and
        // is probed with a header when it is the only one.
        let mut with_proxy = listeners.to_vec();
        with_proxy[2].proxy_protocol = true;
        assert_eq!(
            probe_target(&with_proxy, &bound),
            at("127.0.0.1:8080", true)
        );
        with_proxy.push(l("127.0.0.1:9000", false));
        let bound: Vec<(SocketAddr, SocketAddr)> =
            with_proxy.iter().map(|l| (l.addr, l.addr)).collect();
        assert_eq!(
            probe_target(&with_proxy, &bound),
            at("127.0.0.1:9000", false)
        );
        assert_eq!(probe_target(&listeners[1..2], &bound[1..2]), None);
    }
}
