//! Upstream servers given by name follow DNS: each name is looked up
//! again in the background, at the TTL of its answer or at the pool's
//! `resolve_interval`, and the pool follows the addresses it gets.
//!
//! - Every address a name resolves to is a server with that entry's
//!   settings (weight, max_fails, backup...).
//! - A change is applied by building the next [`Runtime`] from the
//!   running one with the new server list: pools keep the live state
//!   (passive failures, health, idle connections) of every address that
//!   stays (`UpstreamPool::new`), and nothing is reloaded from disk. The
//!   swap is a compare-and-swap: if a reload won the race, the change is
//!   worked out again on the reloaded runtime.
//! - A failed lookup (error, timeout, no address) keeps the last good
//!   addresses, is counted in `vigil_upstream_resolve_failures_total`, and
//!   is logged once when the name starts failing and once when it
//!   resolves again, never at every retry.
//!
//! The DNS servers are `[http] resolver` (nginx's `resolver`), else the
//! system's (`/etc/resolv.conf`, with its search domains, and
//! `/etc/hosts`).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, HttpSettings, UpstreamServer};
use crate::proxy::runtime::Runtime;

/// How often the running config is looked at for names that are due.
const TICK: Duration = Duration::from_millis(500);
/// Bounds for a TTL: a TTL of 0 must not become a busy loop, and a week-
/// long one should not pin an address for a week.
const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(3600);
/// A failing name is tried again this often (or at its
/// `resolve_interval`, when shorter).
const RETRY: Duration = Duration::from_secs(5);

/// One name in one pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct NameKey {
    pub(crate) upstream: String,
    pub(crate) host: String,
    pub(crate) port: u16,
}

#[derive(Debug)]
struct NameState {
    due: Instant,
    failing: bool,
}

/// Follows DNS for every named upstream server of the runtime in `swap`
/// until `stop`.
pub async fn run(swap: Arc<ArcSwap<Runtime>>, stop: CancellationToken) {
    let mut states: HashMap<NameKey, NameState> = HashMap::new();
    let mut resolver: Option<(Vec<SocketAddr>, Duration, TokioResolver)> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let rt = swap.load_full();
        let names = named_servers(&rt.config);
        states.retain(|k, _| names.contains_key(k));
        if names.is_empty() {
            continue;
        }
        let http = &rt.config.http;
        let current = resolver.as_ref().is_some_and(|(servers, timeout, _)| {
            *servers == http.resolver && *timeout == http.resolver_timeout
        });
        if !current {
            match build_resolver(http) {
                Ok(r) => resolver = Some((http.resolver.clone(), http.resolver_timeout, r)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set up the DNS resolver for upstream names");
                    continue;
                }
            }
        }
        let Some((_, timeout, dns)) = &resolver else {
            continue;
        };
        let now = Instant::now();
        let mut changes: HashMap<NameKey, Vec<IpAddr>> = HashMap::new();
        for (key, (interval, addrs)) in &names {
            let state = states.entry(key.clone()).or_insert(NameState {
                // Looked up at once: the load-time lookup gave no TTL.
                due: now,
                failing: false,
            });
            if state.due > now {
                continue;
            }
            let answer = lookup(dns, &key.host, *timeout).await;
            let after = Instant::now();
            match answer {
                Ok((found, ttl)) => {
                    if state.failing {
                        tracing::info!(upstream = %key.upstream, name = %key.host, "upstream name resolves again");
                        state.failing = false;
                    }
                    state.due = after + interval.unwrap_or_else(|| ttl.clamp(MIN_TTL, MAX_TTL));
                    if found != *addrs {
                        changes.insert(key.clone(), found.into_iter().collect());
                    }
                }
                Err(why) => {
                    rt.metrics
                        .upstream_resolve_failures
                        .with_label_values(&[key.upstream.as_str(), key.host.as_str()])
                        .inc();
                    if !state.failing {
                        tracing::warn!(
                            upstream = %key.upstream,
                            name = %key.host,
                            error = %why,
                            "upstream name lookup failed; keeping its last addresses (said once until it resolves again)"
                        );
                        state.failing = true;
                    }
                    state.due = after + interval.map_or(RETRY, |i| i.min(RETRY));
                }
            }
        }
        if changes.is_empty() {
            continue;
        }
        let mut config = apply(&rt.config, &changes);
        // Already said when the config was loaded.
        config.warnings.clear();
        let next = Runtime::build(
            config,
            rt.generation,
            Some(&rt),
            rt.access_log.clone(),
            rt.metrics.clone(),
        );
        let previous = swap.compare_and_swap(&rt, Arc::new(next));
        if Arc::ptr_eq(&previous, &rt) {
            for (key, addrs) in &changes {
                tracing::info!(
                    upstream = %key.upstream,
                    name = %key.host,
                    addresses = ?addrs,
                    "upstream name resolves to new addresses"
                );
            }
        } else {
            // A reload came first: look again on what it built.
            for key in changes.keys() {
                if let Some(s) = states.get_mut(key) {
                    s.due = Instant::now();
                }
            }
        }
    }
}

fn build_resolver(http: &HttpSettings) -> Result<TokioResolver, String> {
    let mut builder = if http.resolver.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| e.to_string())?
    } else {
        let mut group = NameServerConfigGroup::new();
        for addr in &http.resolver {
            group.push(NameServerConfig::new(*addr, Protocol::Udp));
            // Truncated answers (many addresses) are asked again over TCP.
            group.push(NameServerConfig::new(*addr, Protocol::Tcp));
        }
        hickory_resolver::Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], group),
            TokioConnectionProvider::default(),
        )
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.timeout = http.resolver_timeout;
    opts.attempts = 1;
    // Every address of both families, as nginx's resolver does.
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // Each lookup must reach the DNS server: the TTL schedules them.
    opts.cache_size = 0;
    Ok(builder.build())
}

/// The addresses of `host` and how long they are valid.
async fn lookup(
    dns: &TokioResolver,
    host: &str,
    timeout: Duration,
) -> Result<(BTreeSet<IpAddr>, Duration), String> {
    let answer = tokio::time::timeout(timeout * 2, dns.lookup_ip(host))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let addrs: BTreeSet<IpAddr> = answer.iter().collect();
    if addrs.is_empty() {
        return Err("no address".into());
    }
    let ttl = answer
        .valid_until()
        .saturating_duration_since(std::time::Instant::now());
    Ok((addrs, ttl))
}

/// Every name in `config`'s pools, with the pool's `resolve_interval` and
/// the addresses it has now (none, for a name that did not resolve yet).
pub(crate) fn named_servers(
    config: &Config,
) -> HashMap<NameKey, (Option<Duration>, BTreeSet<IpAddr>)> {
    let mut out = HashMap::new();
    for (name, up) in &config.upstreams {
        for r in &up.resolve {
            let from = Some((r.host.clone(), r.port));
            let addrs = up
                .servers
                .iter()
                .filter(|s| s.resolved_from == from)
                .map(|s| s.addr.ip())
                .collect();
            let key = NameKey {
                upstream: name.clone(),
                host: r.host.clone(),
                port: r.port,
            };
            out.insert(key, (up.resolve_interval, addrs));
        }
    }
    out
}

/// `config` with the servers of each changed name replaced by one per new
/// address (copies of the entry that named it), where the first of them
/// was (at the end for a name that had none), so the order of the other
/// servers is kept.
pub(crate) fn apply(config: &Config, changes: &HashMap<NameKey, Vec<IpAddr>>) -> Config {
    let mut config = config.clone();
    for (name, up) in config.upstreams.iter_mut() {
        let mut new = (**up).clone();
        let mut changed = false;
        for r in &up.resolve {
            let key = NameKey {
                upstream: name.clone(),
                host: r.host.clone(),
                port: r.port,
            };
            let Some(addrs) = changes.get(&key) else {
                continue;
            };
            changed = true;
            let from = Some((r.host.clone(), r.port));
            let at = new
                .servers
                .iter()
                .position(|s| s.resolved_from == from)
                .unwrap_or(new.servers.len());
            new.servers.retain(|s| s.resolved_from != from);
            let fresh = addrs.iter().map(|ip| {
                let addr = SocketAddr::new(*ip, r.port);
                UpstreamServer {
                    addr,
                    label: addr.to_string(),
                    ..r.template.clone()
                }
            });
            new.servers
                .splice(at.min(new.servers.len())..at.min(new.servers.len()), fresh);
        }
        if changed {
            *up = Arc::new(new);
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"
[[server]]
listen = ["127.0.0.1:0"]
  [[server.location]]
  path = "/"
  proxy_pass = "app"

[upstream.app]
resolve_interval = "2s"
servers = [
  { addr = "127.0.0.1:9001" },
  { addr = "localhost:9002", weight = 3, max_fails = 7 },
  { addr = "127.0.0.3:9003", backup = true },
]
"#,
            Path::new("/etc/vigil/vigil.toml"),
        )
        .unwrap()
    }

    #[test]
    fn names_are_found_with_their_addresses() {
        let c = config();
        let names = named_servers(&c);
        assert_eq!(names.len(), 1, "{names:?}");
        let (key, (interval, addrs)) = names.iter().next().unwrap();
        assert_eq!(key.host, "localhost");
        assert_eq!(key.port, 9002);
        assert_eq!(*interval, Some(Duration::from_secs(2)));
        assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
    }

    #[test]
    fn apply_replaces_a_name_in_place_with_its_settings() {
        let c = config();
        let key = named_servers(&c).into_keys().next().unwrap();
        let new: Vec<IpAddr> = vec!["10.1.0.1".parse().unwrap(), "10.1.0.2".parse().unwrap()];
        let changed = apply(&c, &HashMap::from([(key, new)]));
        let servers = &changed.upstreams["app"].servers;
        let addrs: Vec<String> = servers.iter().map(|s| s.addr.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "127.0.0.1:9001",
                "10.1.0.1:9002",
                "10.1.0.2:9002",
                "127.0.0.3:9003"
            ]
        );
        assert!(
            servers[1..3]
                .iter()
                .all(|s| s.weight == 3 && s.max_fails == 7)
        );
        assert!(
            servers[1..3]
                .iter()
                .all(|s| s.resolved_from == Some(("localhost".into(), 9002)))
        );
        assert!(servers[3].backup);
        // The original is untouched.
        assert!(c.upstreams["app"].servers[1].addr.ip().is_loopback());
    }
}
