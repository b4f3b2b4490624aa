//! The live form of one config generation: routing tables and upstream
//! pools, built once per load and swapped in atomically.
//!
//! Everything a request needs hangs off one [`Runtime`] held in an
//! `ArcSwap`: a request loads it once and uses it to its end, so a reload
//! never tears a request between two configs.

use std::net::SocketAddr;
use std::sync::Arc;

use super::access_log::AccessLog;
use super::fast_map::FastMap;
use super::request_metrics::RequestMetrics;
use super::router::{Locations, VirtualHosts};
use super::tls::TlsListeners;
use super::upstream::UpstreamPool;
use super::upstream::checker::{self, CheckerHandle};
use crate::config::{Action, Config, VirtualServer};
use crate::metrics::Metrics;

/// One config generation, ready to serve.
#[derive(Debug)]
pub struct Runtime {
    /// Increments on every successful load (1 = the first).
    pub generation: u64,
    pub config: Arc<Config>,
    /// Virtual host tables by listen address.
    pub listeners: FastMap<SocketAddr, VirtualHosts>,
    /// Per server (same order as `config.servers`): its location table.
    pub locations: Vec<Locations>,
    pub pools: FastMap<String, Arc<Pool>>,
    /// Per server, per location (the orders of `config.servers` and their
    /// `locations`): the pool its `proxy_pass` names, found once here
    /// rather than hashed by name on every request.
    pass_pools: Vec<Vec<Option<Arc<Pool>>>>,
    pub access_log: AccessLog,
    /// TLS acceptors (certificates by SNI) by listen address.
    pub tls: TlsListeners,
    /// limit_req / limit_conn zones and the basic-auth cache.
    pub edge: super::edge::Edge,
    /// The process's metrics (the same instance in every generation).
    pub metrics: Arc<Metrics>,
    /// This generation's handles on the request series of `metrics`.
    pub request_metrics: RequestMetrics,
}

/// A pool together with its health-check task; the task stops when the
/// last runtime using the pool is gone.
#[derive(Debug)]
pub struct Pool {
    pub pool: UpstreamPool,
    _checker: Option<CheckerHandle>,
}

impl std::ops::Deref for Pool {
    type Target = UpstreamPool;
    fn deref(&self) -> &UpstreamPool {
        &self.pool
    }
}

impl Runtime {
    /// Builds generation `generation` of `config`. Pools whose settings did
    /// not change are taken over from `previous` as they are (health state,
    /// idle connections and checker); changed pools keep the state of the
    /// servers they still share. Must run inside the tokio runtime (it
    /// starts health checks).
    pub fn build(
        config: Config,
        generation: u64,
        previous: Option<&Runtime>,
        access_log: AccessLog,
        metrics: Arc<Metrics>,
    ) -> Runtime {
        let config = Arc::new(config);
        super::workers::configure(config.http.workers);
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let listeners = config
            .listeners
            .iter()
            .map(|l| (l.addr, VirtualHosts::new(l, &config.servers)))
            .collect();
        let tls = TlsListeners::build(&config, &listeners, previous.map(|p| &p.tls));
        let locations = config
            .servers
            .iter()
            .map(|s| Locations::new(&s.locations))
            .collect();
        let pools = config
            .upstreams
            .iter()
            .map(|(name, up)| {
                let old = previous.and_then(|p| p.pools.get(name));
                if let Some(old) = old.filter(|o| *o.pool.config == **up) {
                    return (name.clone(), old.clone());
                }
                let pool = UpstreamPool::new(up.clone(), old.map(|o| &o.pool));
                let checker = checker::spawn(&pool);
                (
                    name.clone(),
                    Arc::new(Pool {
                        pool,
                        _checker: checker,
                    }),
                )
            })
            .collect::<FastMap<String, Arc<Pool>>>();
        let pass_pools = config
            .servers
            .iter()
            .map(|s| {
                s.locations
                    .iter()
                    .map(|l| match &l.action {
                        Action::Proxy(pass) => pools.get(&pass.upstream).cloned(),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let edge = super::edge::Edge::build(&config, previous.map(|p| &p.edge), &metrics);
        let request_metrics = RequestMetrics::new(&config.servers);
        Runtime {
            generation,
            config,
            listeners,
            locations,
            pools,
            pass_pools,
            access_log,
            tls,
            edge,
            metrics,
            request_metrics,
        }
    }

    pub fn server(&self, index: usize) -> &Arc<VirtualServer> {
        &self.config.servers[index]
    }

    /// The pool that location `location` of server `server` proxies to
    /// (`None`: it does not proxy, or names no pool).
    pub fn pass_pool(&self, server: usize, location: usize) -> Option<&Arc<Pool>> {
        self.pass_pools.get(server)?.get(location)?.as_ref()
    }
}

/// A request's hold on the generation it is served with: see
/// [`Holds`](super::workers::Holds) for why requests share one per worker.
pub type RuntimeHold = super::workers::WorkerHold<Runtime>;

thread_local! {
    /// The calling worker's shared hold (see [`WorkerHold::shared`](super::workers::WorkerHold::shared)).
    static WORKER_HOLD: std::cell::RefCell<std::sync::Weak<RuntimeHold>> =
        const { std::cell::RefCell::new(std::sync::Weak::new()) };
}

/// A hold on the generation `current` has now.
pub fn hold(current: &arc_swap::ArcSwap<Runtime>) -> Arc<RuntimeHold> {
    // A guard takes no count on the runtime (a per-thread slot).
    let now = current.load();
    WORKER_HOLD.with(|held| RuntimeHold::shared(&mut held.borrow_mut(), &now))
}
