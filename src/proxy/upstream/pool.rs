//! An upstream pool: its servers with their health and connections, and
//! the choice of a server for each attempt.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::balance::{self, HashRing, PeerView, SmoothWeighted};
use super::conn::IdleConnections;
use super::health::PassiveHealth;
use super::peer_metrics::PeerMetrics;
use crate::config::{BalanceMethod, UpstreamConfig, UpstreamServer};
use crate::proxy::tls::UpstreamConnector;
use crate::proxy::workers::{Holds, PerWorker};

/// One upstream server and its live state.
#[derive(Debug)]
pub struct Peer {
    pub server: UpstreamServer,
    /// Requests in flight, counted by each worker in a slot of its own:
    /// one count both workers wrote on every request (and that shared a
    /// cache line with the flags every pick reads) moved that line
    /// between their cores twice a request.
    active: PerWorker<AtomicU32>,
    /// Active health check verdict (true when no checks are configured).
    healthy: AtomicBool,
    passive: Mutex<PassiveHealth>,
    /// The passive record holds a failure (set and cleared under its
    /// lock): while it does not, a success, the usual outcome, and the
    /// availability check take no lock that the workers would share.
    passive_marked: AtomicBool,
    /// Passive health is ignored for a pool's only server, as nginx does:
    /// marking it down would only turn errors into "no live upstreams".
    passive_applies: bool,
    pub idle: IdleConnections,
    /// How to open TLS to this server; `None` for plain HTTP.
    pub tls: Option<UpstreamConnector>,
    pub metrics: PeerMetrics,
    /// What requests in flight hold this server by (see [`Holds`]).
    pub(super) holds: Holds<Peer>,
}

impl Peer {
    fn new(
        server: UpstreamServer,
        config: &UpstreamConfig,
        passive_applies: bool,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Self {
        let tls = tls
            .zip(server.tls_name.clone())
            .map(|(client, name)| UpstreamConnector::new(client.clone(), name));
        Self {
            passive: Mutex::new(PassiveHealth::new(server.max_fails, server.fail_timeout)),
            passive_marked: AtomicBool::new(false),
            tls,
            server,
            active: PerWorker::new(|| AtomicU32::new(0)),
            healthy: AtomicBool::new(true),
            passive_applies,
            idle: IdleConnections::new(config.keepalive, config.keepalive_timeout),
            metrics: PeerMetrics::default(),
            holds: Holds::default(),
        }
    }

    /// Requests in flight to this server, all workers together.
    pub fn active(&self) -> u32 {
        self.active
            .iter()
            .fold(0, |sum, n| sum.wrapping_add(n.load(Ordering::Relaxed)))
    }

    /// Counts a request in flight on the calling worker's slot; the slot
    /// is given back to [`Peer::request_done`].
    pub(super) fn request_started(&self) -> usize {
        let slot = crate::proxy::workers::current();
        self.active.at(slot).fetch_add(1, Ordering::Relaxed);
        slot
    }

    /// Ends what [`Peer::request_started`] counted on `slot` (the same
    /// slot whichever thread ends it, so no slot goes below zero).
    pub(super) fn request_done(&self, slot: usize) {
        self.active.at(slot).fetch_sub(1, Ordering::Relaxed);
    }

    /// May a request go to this server now?
    pub fn available(&self, now: Instant) -> bool {
        !self.server.down
            && self.healthy.load(Ordering::Relaxed)
            && (!self.passive_applies
                || !self.passive_marked.load(Ordering::Relaxed)
                || self.passive().available(now))
    }

    /// Active health verdict.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn set_healthy(&self, up: bool) {
        let was_up = self.healthy.swap(up, Ordering::Relaxed);
        if was_up && !up {
            // Going down: idle connections to a sick server are suspect.
            self.idle.clear();
        }
    }

    /// Records an attempt that failed (connect error, timeout, bad
    /// response, or a status listed in next_upstream).
    pub fn record_failure(&self, now: Instant) {
        let marked_down = {
            let mut passive = self.passive();
            self.passive_marked.store(true, Ordering::Relaxed);
            passive.failure(now)
        };
        if marked_down && self.passive_applies {
            tracing::warn!(
                server = %self.server.label,
                fail_timeout = ?self.server.fail_timeout,
                "upstream server marked unavailable after max_fails failures"
            );
        }
    }

    pub fn record_success(&self) {
        if self.passive_marked.load(Ordering::Relaxed) {
            let mut passive = self.passive();
            passive.success();
            self.passive_marked.store(false, Ordering::Relaxed);
        }
    }

    fn passive(&self) -> std::sync::MutexGuard<'_, PassiveHealth> {
        self.passive.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a hash-based method hashes.
#[derive(Debug, Clone, Copy)]
pub enum PickKey<'a> {
    None,
    Client(IpAddr),
    Bytes(&'a [u8]),
}

/// A `[upstream.<name>]` with live state.
#[derive(Debug)]
pub struct UpstreamPool {
    pub config: Arc<UpstreamConfig>,
    pub peers: Vec<Arc<Peer>>,
    primaries: Vec<usize>,
    backups: Vec<usize>,
    /// One turn for all workers, so that round robin is exact across
    /// connections (nginx's workers keep one each unless the upstream has
    /// a `zone`; tried per worker here, it spread consecutive requests on
    /// different workers unevenly, and no CPU saving showed on 2 cores).
    chooser: Mutex<Chooser>,
    ring: Option<HashRing>,
}

#[derive(Debug)]
struct Chooser {
    primary: SmoothWeighted,
    backup: SmoothWeighted,
    rng: fastrand::Rng,
    /// The group being chosen from, refilled for each pick: kept here so
    /// that a pick allocates nothing.
    views: Vec<PeerView>,
}

impl UpstreamPool {
    /// Builds a pool, keeping the live state (health, idle connections) of
    /// servers that `previous` already had with identical settings.
    pub fn new(config: Arc<UpstreamConfig>, previous: Option<&UpstreamPool>) -> Self {
        let single = config.servers.len() == 1;
        // One client config per pool, so TLS sessions resume across its
        // connections.
        let client = config
            .tls
            .as_ref()
            .map(crate::proxy::tls::upstream::client_config);
        // Idle connections were made with the old TLS settings; a peer is
        // only taken over when they did not change.
        let previous = previous.filter(|p| p.config.tls == config.tls);
        let peers: Vec<Arc<Peer>> = config
            .servers
            .iter()
            .map(|s| {
                previous
                    .and_then(|p| p.peers.iter().find(|old| old.server == *s))
                    .filter(|old| old.idle_settings_match(&config))
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Peer::new(s.clone(), &config, !single, client.as_ref()))
                    })
            })
            .collect();
        let primaries: Vec<usize> = (0..peers.len())
            .filter(|&i| !peers[i].server.backup)
            .collect();
        let backups: Vec<usize> = (0..peers.len())
            .filter(|&i| peers[i].server.backup)
            .collect();
        let ring = match config.balance {
            BalanceMethod::Hash(_) => {
                Some(HashRing::new(primaries.iter().map(|&i| {
                    (peers[i].server.label.as_str(), peers[i].server.weight)
                })))
            }
            _ => None,
        };
        Self {
            chooser: Mutex::new(Chooser {
                primary: SmoothWeighted::new(primaries.len()),
                backup: SmoothWeighted::new(backups.len()),
                rng: fastrand::Rng::new(),
                views: Vec::with_capacity(primaries.len().max(backups.len())),
            }),
            config,
            peers,
            primaries,
            backups,
            ring,
        }
    }

    /// Chooses a server for the next attempt, skipping `tried` ones;
    /// backups only when no primary is eligible. `None`: nothing left.
    #[cfg(test)]
    pub fn pick(&self, tried: &[usize], key: PickKey<'_>) -> Option<usize> {
        self.pick_at(tried, key, Instant::now())
    }

    /// [`Pool::pick`] as of `now` (the caller's clock reading, one per
    /// attempt: it also dates the attempt).
    pub fn pick_at(&self, tried: &[usize], key: PickKey<'_>, now: Instant) -> Option<usize> {
        let weighs_load = matches!(
            self.config.balance,
            BalanceMethod::LeastConn | BalanceMethod::RandomTwo
        );
        let view = |group: &[usize], views: &mut Vec<PeerView>| {
            views.clear();
            views.extend(group.iter().map(|&i| PeerView {
                weight: self.peers[i].server.weight,
                // Only the methods that weigh load read it: a sum over
                // the workers' slots.
                active: if weighs_load {
                    self.peers[i].active()
                } else {
                    0
                },
                eligible: !tried.contains(&i) && self.peers[i].available(now),
            }));
        };
        let mut chooser = self.chooser.lock().unwrap_or_else(|e| e.into_inner());
        let Chooser {
            primary,
            backup,
            rng,
            views,
        } = &mut *chooser;
        view(&self.primaries, views);
        let primaries = &views[..];
        let choice = match (&self.config.balance, key) {
            (BalanceMethod::RoundRobin, _) => primary.pick(primaries),
            (BalanceMethod::LeastConn, _) => balance::least_conn(primaries, primary),
            (BalanceMethod::RandomTwo, _) => balance::random_two(primaries, rng),
            (BalanceMethod::IpHash, PickKey::Client(ip)) => {
                balance::ip_hash(primaries, ip).or_else(|| primary.pick(primaries))
            }
            (BalanceMethod::Hash(_), PickKey::Bytes(k)) => {
                self.ring.as_ref().and_then(|r| r.pick(primaries, k))
            }
            // A hash method without its key (cannot happen from the
            // request path): spread by round robin.
            (BalanceMethod::IpHash | BalanceMethod::Hash(_), _) => primary.pick(primaries),
        };
        if let Some(i) = choice {
            return Some(self.primaries[i]);
        }
        view(&self.backups, views);
        let backups = &views[..];
        let choice = match self.config.balance {
            BalanceMethod::LeastConn => balance::least_conn(backups, backup),
            BalanceMethod::RandomTwo => balance::random_two(backups, rng),
            _ => backup.pick(backups),
        };
        choice.map(|i| self.backups[i])
    }

    /// How many servers (primaries or backups) can take requests now. The
    /// VRRP tracker lowers the priority when this reaches zero.
    pub fn available_count(&self) -> usize {
        let now = Instant::now();
        self.peers.iter().filter(|p| p.available(now)).count()
    }

    /// Upper bound of attempts per request (nginx proxy_next_upstream_tries).
    pub fn max_tries(&self) -> usize {
        match self.config.tries {
            0 => self.peers.len(),
            n => n as usize,
        }
    }
}

impl Peer {
    fn idle_settings_match(&self, config: &UpstreamConfig) -> bool {
        self.idle.settings() == (config.keepalive, config.keepalive_timeout)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn pool(upstream: &str) -> UpstreamPool {
        let text = format!(
            "[[server]]\nlisten = [\"8080\"]\n[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n[upstream.u]\n{upstream}"
        );
        let c = Config::parse(&text, Path::new("/t.toml")).unwrap();
        UpstreamPool::new(c.upstreams["u"].clone(), None)
    }

    #[test]
    fn backups_only_when_primaries_are_out() {
        let p = pool(
            "servers = [{ addr = \"127.0.0.1:1\" }, { addr = \"127.0.0.1:2\" }, { addr = \"127.0.0.1:3\", backup = true }]",
        );
        for _ in 0..10 {
            assert_ne!(p.pick(&[], PickKey::None), Some(2));
        }
        assert_eq!(p.pick(&[0, 1], PickKey::None), Some(2), "primaries tried");
        p.peers[0].record_failure(Instant::now());
        p.peers[1].set_healthy(false);
        assert_eq!(p.pick(&[], PickKey::None), Some(2), "primaries down");
        assert_eq!(p.available_count(), 1);
        assert_eq!(p.pick(&[2], PickKey::None), None);
    }

    #[test]
    fn single_server_is_never_passively_down() {
        let p = pool("servers = [{ addr = \"127.0.0.1:1\" }]");
        for _ in 0..5 {
            p.peers[0].record_failure(Instant::now());
        }
        assert_eq!(p.pick(&[], PickKey::None), Some(0));
    }

    #[test]
    fn a_success_clears_the_passive_record() {
        let p = pool(
            "servers = [{ addr = \"127.0.0.1:1\", max_fails = 2 }, { addr = \"127.0.0.1:2\" }]",
        );
        let (a, now) = (&p.peers[0], Instant::now());
        // A success with nothing recorded changes nothing.
        a.record_success();
        assert!(a.available(now));
        // One failure, then a success: the count starts again, so one
        // more failure does not reach max_fails.
        a.record_failure(now);
        assert!(a.available(now));
        a.record_success();
        a.record_failure(now);
        assert!(a.available(now), "the success cleared the first failure");
        // Two in a row mark it down, until a success.
        a.record_failure(now);
        assert!(!a.available(now));
        assert_eq!(p.pick(&[], PickKey::None), Some(1));
        a.record_success();
        assert!(a.available(now));
    }

    #[test]
    fn down_servers_are_never_picked() {
        let p =
            pool("servers = [{ addr = \"127.0.0.1:1\", down = true }, { addr = \"127.0.0.1:2\" }]");
        for _ in 0..10 {
            assert_eq!(p.pick(&[], PickKey::None), Some(1));
        }
    }

    #[test]
    fn reload_keeps_state_of_unchanged_servers() {
        let a = pool("servers = [{ addr = \"127.0.0.1:1\" }, { addr = \"127.0.0.1:2\" }]");
        a.peers[0].set_healthy(false);
        let text = "[[server]]\nlisten = [\"8080\"]\n[[server.location]]\npath = \"/\"\nproxy_pass = \"u\"\n[upstream.u]\nservers = [{ addr = \"127.0.0.1:1\" }, { addr = \"127.0.0.1:3\" }]";
        let c = Config::parse(text, Path::new("/t.toml")).unwrap();
        let b = UpstreamPool::new(c.upstreams["u"].clone(), Some(&a));
        assert!(Arc::ptr_eq(&a.peers[0], &b.peers[0]));
        assert!(!b.peers[0].is_healthy());
        assert!(b.peers[1].is_healthy());
    }

    #[test]
    fn hash_pool_is_sticky() {
        let p = pool(
            "balance = \"hash\"\nhash_key = \"$request_uri\"\nservers = [{ addr = \"127.0.0.1:1\" }, { addr = \"127.0.0.1:2\" }, { addr = \"127.0.0.1:3\" }]",
        );
        let first = p.pick(&[], PickKey::Bytes(b"/cart")).unwrap();
        for _ in 0..10 {
            assert_eq!(p.pick(&[], PickKey::Bytes(b"/cart")), Some(first));
        }
        let second = p.pick(&[first], PickKey::Bytes(b"/cart")).unwrap();
        assert_ne!(second, first, "a retry goes elsewhere");
    }
}
