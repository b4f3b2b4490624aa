//! The proxy's facade and lifecycle: start, reload, drain, hold new
//! connections off, release addresses, shut down. Sockets are in
//! [`listen`](super::listen), one connection's protocol in
//! [`conn`](super::conn).
//!
//! Every listen address is bound once per worker with SO_REUSEPORT, and
//! each worker accepts and serves its own connections (see [`workers`]).
//!
//! Shutdown is designed around two `tokio_util` tools:
//! - a [`CancellationToken`] per listener (children of one root token):
//!   cancelling it stops accepting and asks every connection of that
//!   listener to finish gracefully (HTTP/1.1: the in-flight response gets
//!   `Connection: close` and idle connections close; HTTP/2: GOAWAY);
//! - a [`TaskTracker`] holding every connection task, so shutdown can wait
//!   until the last in-flight request is done (bounded by a grace period).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::Socket;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept_backoff::{self, AcceptBackoff};
use super::conn::{ConnControl, LocalCounts, serve_connection, serve_plain_connection};
use super::handler::ConnInfo;
pub use super::listen::BindError;
use super::listen::{accept_queue_len, bind_all, set_syn_drop};
use super::runtime::Runtime;
use super::sendfile::SendfileStream;
use super::tls;
use super::workers::Workers;

/// How long a VIP release waits, at least, for handshakes under way when
/// new connections were held off to complete (and be served): a LAN
/// round trip is well under a millisecond; this leaves room for a busy
/// host.
pub(crate) const HANDSHAKE_SETTLE: Duration = Duration::from_millis(10);

/// The running proxy: its current runtime and its listeners.
pub struct Server {
    runtime: Arc<ArcSwap<Runtime>>,
    workers: Workers,
    listeners: Mutex<HashMap<SocketAddr, Listening>>,
    connections: TaskTracker,
    root: CancellationToken,
    /// Bounds concurrent connections (`[http] max_connections`).
    permits: Arc<Semaphore>,
    /// Draining state, watched by every connection.
    lifecycle: watch::Sender<Lifecycle>,
    /// Why new connections are being held off (SYNs dropped), if at all.
    holds: Mutex<Holds>,
    /// Local addresses this node no longer holds (VIPs handed to a peer):
    /// connections to them are closed.
    released: watch::Sender<Arc<Vec<std::net::IpAddr>>>,
    /// Open connections per local address.
    by_local: Arc<LocalCounts>,
    /// The self-check says the workers do not serve (see
    /// `set_unresponsive`).
    unresponsive: std::sync::atomic::AtomicBool,
}

/// Why new connections are held off (see `Server::hold_new_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A planned stop or `vigil drain`: on until `undrain`.
    Drain,
    /// A VIP is being given up: each `on` is matched by one `off` once
    /// the VIP is gone. Counted, as several VRRP instances may release
    /// at once.
    Release,
}

#[derive(Debug, Default)]
struct Holds {
    drain: bool,
    releases: usize,
    /// Since when some hold is on: a handshake whose SYN came before it
    /// has had this long to complete (see `wait_released`).
    since: Option<tokio::time::Instant>,
}

impl Holds {
    fn any(&self) -> bool {
        self.drain || self.releases > 0
    }
}

/// Where the proxy is between serving and stopping (see `drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Normal service.
    Serving,
    /// Every connection is asked to go: HTTP/1.1 responses carry
    /// `Connection: close`, HTTP/2 connections get GOAWAY. New connections
    /// are still accepted (the VIP may still point here) and served the
    /// same way. Idle HTTP/1.1 connections are left alone, so a client
    /// that sends on one at that very moment is not cut off mid-request.
    Draining,
    /// Close what is left, idle keep-alive connections included.
    Closing,
}

struct Listening {
    local: SocketAddr,
    stop: CancellationToken,
    /// Duplicates of the workers' listening sockets, to attach the
    /// SYN-dropping filter to (see `hold_new_connections`).
    sockets: Vec<Socket>,
}

impl Server {
    /// Binds every listener of `runtime` and starts serving.
    pub fn start(runtime: Runtime) -> Result<Server, BindError> {
        let max_connections = runtime.config.http.max_connections;
        let count = runtime.config.http.workers;
        let workers =
            Workers::start(count, runtime.config.http.worker_cpu_affinity).map_err(|source| {
                BindError {
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    source,
                }
            })?;
        let server = Server {
            workers,
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            listeners: Mutex::new(HashMap::new()),
            connections: TaskTracker::new(),
            root: CancellationToken::new(),
            permits: Arc::new(Semaphore::new(max_connections)),
            lifecycle: watch::channel(Lifecycle::Serving).0,
            holds: Mutex::new(Holds::default()),
            released: watch::channel(Arc::new(Vec::new())).0,
            by_local: Arc::default(),
            unresponsive: std::sync::atomic::AtomicBool::new(false),
        };
        server.sync_listeners()?;
        // Upstream names follow DNS (a task on this, the control runtime).
        tokio::spawn(super::upstream::resolve::run(
            server.runtime.clone(),
            server.root.child_token(),
        ));
        if let Some(handle) = server.workers.handles().next() {
            let metrics = server.runtime.load().metrics.clone();
            handle.spawn(super::memory::trim_after_closes(metrics));
        }
        Ok(server)
    }

    /// The runtime requests are served with now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Swaps in a new runtime and opens / closes listeners to match it.
    /// If a new address cannot be bound, the old runtime stays in place
    /// and nothing changes.
    pub fn reload(&self, runtime: Runtime) -> Result<(), BindError> {
        let new_addrs: Vec<SocketAddr> = runtime.config.listeners.iter().map(|l| l.addr).collect();
        // Bind new addresses first, so a failure leaves everything as it was.
        let mut opened = Vec::new();
        {
            let listeners = self.lock_listeners();
            for addr in &new_addrs {
                if !listeners.contains_key(addr) {
                    match bind_all(*addr, self.workers.len()) {
                        Ok(l) => opened.push((*addr, l)),
                        Err(source) => {
                            return Err(BindError {
                                addr: *addr,
                                source,
                            });
                        }
                    }
                }
            }
        }
        self.runtime.store(Arc::new(runtime));
        let mut listeners = self.lock_listeners();
        for (addr, listener) in opened {
            let l = self.spawn_listener(addr, listener);
            listeners.insert(addr, l);
        }
        listeners.retain(|addr, l| {
            let keep = new_addrs.contains(addr);
            if !keep {
                tracing::info!(%addr, "listener removed by reload");
                l.stop.cancel();
            }
            keep
        });
        Ok(())
    }

    /// `(configured, actually bound)` addresses; they differ for port 0.
    pub fn local_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let mut v: Vec<_> = self
            .lock_listeners()
            .iter()
            .map(|(a, l)| (*a, l.local))
            .collect();
        v.sort();
        v
    }

    /// The worker runtimes (for tasks that must run on every worker).
    pub fn worker_handles(&self) -> Vec<tokio::runtime::Handle> {
        self.workers.handles().cloned().collect()
    }

    /// The CPU each worker is pinned to (`[http] worker_cpu_affinity`).
    pub fn worker_cpus(&self) -> Vec<Option<usize>> {
        self.workers.cpus()
    }

    /// Client connections open now.
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// Starts (or, with `false`, cancels) draining: see
    /// [`Lifecycle::Draining`]. Used before a VRRP resign and by
    /// `vigil drain`.
    pub fn set_draining(&self, draining: bool) {
        self.lifecycle.send_replace(if draining {
            Lifecycle::Draining
        } else {
            Lifecycle::Serving
        });
    }

    /// Holds new connections off without refusing them: every listening
    /// socket gets a BPF filter that drops incoming SYNs, so a client's
    /// connection attempt goes unanswered and TCP retries it (after about
    /// a second), by when a peer holds the VIP. Connections already open
    /// are not affected. Refusing (closing the listener, a RST) would fail
    /// the request; accepting would start a connection that the VIP move
    /// is about to cut. Undone with `false`.
    pub fn hold_new_connections(&self, hold: Hold, on: bool) {
        // Listeners first, then holds: the order `spawn_listener` takes them.
        let listeners = self.lock_listeners();
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        let was = holds.any();
        match hold {
            Hold::Drain => holds.drain = on,
            Hold::Release if on => holds.releases += 1,
            Hold::Release => holds.releases = holds.releases.saturating_sub(1),
        }
        let now = holds.any();
        if was == now {
            return;
        }
        holds.since = now.then(tokio::time::Instant::now);
        for l in listeners.values() {
            for s in &l.sockets {
                if let Err(e) = set_syn_drop(s, now) {
                    tracing::warn!(error = %e, "cannot set the SYN filter on a listener");
                }
            }
        }
    }

    /// The node gave these addresses (VIPs) up: connections to them are
    /// dead ends (the clients' packets now reach the peer), so close them
    /// now, gracefully (an in-flight response still gets out, with
    /// `Connection: close`); a client then reconnects and reaches the peer
    /// instead of sending its next request into a reset.
    pub fn release_addresses(&self, addrs: &[std::net::IpAddr]) {
        if !addrs.is_empty() {
            self.released.send_replace(Arc::new(addrs.to_vec()));
        }
    }

    /// `addrs` are gone from this node (or back for good): connections
    /// accepted for them from now on are ordinary again.
    pub fn forget_released(&self, addrs: &[std::net::IpAddr]) {
        self.released.send_if_modified(|list| {
            if !list.iter().any(|a| addrs.contains(a)) {
                return false;
            }
            *list = Arc::new(
                list.iter()
                    .filter(|a| !addrs.contains(a))
                    .copied()
                    .collect(),
            );
            true
        });
    }

    /// Waits (up to `timeout`) until no connection to `addrs` is open or
    /// on its way in. Call it with new connections held off
    /// (`hold_new_connections`): a handshake the kernel completed just
    /// before the hold sits in an accept queue, invisible to the
    /// per-address counts, and if the address went now that connection
    /// could never be answered (replies from a removed address are not
    /// routed; the client would hang until its own timeout). So this also
    /// waits for
    /// - `HANDSHAKE_SETTLE`, for a handshake whose SYN came just before the
    ///   hold to complete (its last ACK is one round trip away);
    /// - empty accept queues;
    /// - every worker to finish what it is doing (a connection taken off a
    ///   queue is counted under its address in the same poll of the accept
    ///   loop, so after that poll it shows in the counts).
    ///
    /// The settle counts from when new connections were first held off: a
    /// planned stop's drain has held them since it began, so its release
    /// waits no longer. And when the self-check says the workers do not
    /// serve (`set_unresponsive`), nothing here can close or serve
    /// anything: the wait would only delay the hand-over, so there is none.
    pub async fn wait_released(&self, addrs: &[std::net::IpAddr], timeout: Duration) {
        if self.unresponsive.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "the proxy is not serving: giving the VIPs up without waiting for its connections"
            );
            return;
        }
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        let held_since = self
            .holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .since
            .unwrap_or(start);
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return;
            }
            if now >= held_since + HANDSHAKE_SETTLE && self.queued_connections() == 0 {
                self.workers_barrier().await;
                if self.by_local.count(addrs) == 0 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Told by the self-check (`liveness`) whether the workers serve.
    pub fn set_unresponsive(&self, unresponsive: bool) {
        self.unresponsive
            .store(unresponsive, std::sync::atomic::Ordering::Relaxed);
    }

    /// Returns once every worker has run a task queued now, i.e. finished
    /// the poll it was in (workers are single-threaded runtimes).
    async fn workers_barrier(&self) {
        let done: Vec<_> = self
            .workers
            .handles()
            .map(|h| {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                h.spawn(async move {
                    let _ = tx.send(());
                });
                rx
            })
            .collect();
        for rx in done {
            let _ = rx.await;
        }
    }

    /// Closes every remaining connection gracefully (idle ones at once,
    /// busy ones after their current response).
    pub fn close_connections(&self) {
        self.lifecycle.send_replace(Lifecycle::Closing);
    }

    pub fn lifecycle(&self) -> Lifecycle {
        *self.lifecycle.borrow()
    }

    /// Waits until no client connection is open and none is waiting in a
    /// listener's accept queue (the kernel completes handshakes on its own:
    /// a connection that arrived a moment before new ones were held off
    /// must still be served), or until `timeout`; returns what is left.
    pub async fn wait_connections_closed(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = self.connections.len() + self.queued_connections();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Connections the kernel has accepted but we have not yet.
    fn queued_connections(&self) -> usize {
        self.lock_listeners()
            .values()
            .flat_map(|l| &l.sockets)
            .map(accept_queue_len)
            .sum()
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`,
    /// then drops whatever is left. Returns the connections still open
    /// when the grace period ended.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.root.cancel();
        // Our duplicates of the listening sockets would keep them open (the
        // kernel would go on completing handshakes nobody accepts).
        self.lock_listeners().clear();
        self.connections.close();
        if tokio::time::timeout(grace, self.connections.wait())
            .await
            .is_err()
        {
            let left = self.connections.len();
            tracing::warn!(
                left,
                ?grace,
                "grace period over; closing remaining connections"
            );
            return left;
        }
        0
    }

    fn sync_listeners(&self) -> Result<(), BindError> {
        let rt = self.runtime.load();
        let mut listeners = self.lock_listeners();
        for l in &rt.config.listeners {
            if listeners.contains_key(&l.addr) {
                continue;
            }
            let sockets = bind_all(l.addr, self.workers.len()).map_err(|source| BindError {
                addr: l.addr,
                source,
            })?;
            let listening = self.spawn_listener(l.addr, sockets);
            listeners.insert(l.addr, listening);
        }
        Ok(())
    }

    fn spawn_listener(&self, addr: SocketAddr, sockets: Vec<std::net::TcpListener>) -> Listening {
        let local = sockets
            .first()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or(addr);
        let stop = self.root.child_token();
        tracing::info!(%addr, %local, workers = sockets.len(), "listening");
        let dups: Vec<Socket> = sockets
            .iter()
            .filter_map(|s| s.try_clone().ok().map(Socket::from))
            .collect();
        if self.holds.lock().unwrap_or_else(|e| e.into_inner()).any() {
            for d in &dups {
                let _ = set_syn_drop(d, true);
            }
        }
        for (socket, handle) in sockets.into_iter().zip(self.workers.handles()) {
            let ctx = AcceptContext {
                addr,
                runtime: self.runtime.clone(),
                connections: self.connections.clone(),
                stop: stop.clone(),
                permits: self.permits.clone(),
                lifecycle: self.lifecycle.subscribe(),
                released: self.released.subscribe(),
                by_local: self.by_local.clone(),
            };
            handle.spawn(async move {
                // Registering with the reactor must happen on the worker.
                match TcpListener::from_std(socket) {
                    Ok(listener) => accept_loop(listener, ctx).await,
                    Err(e) => tracing::error!(%addr, error = %e, "cannot start listener"),
                }
            });
        }
        Listening {
            local,
            stop,
            sockets: dups,
        }
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Listening>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct AcceptContext {
    addr: SocketAddr,
    runtime: Arc<ArcSwap<Runtime>>,
    connections: TaskTracker,
    stop: CancellationToken,
    permits: Arc<Semaphore>,
    lifecycle: watch::Receiver<Lifecycle>,
    released: watch::Receiver<Arc<Vec<std::net::IpAddr>>>,
    by_local: Arc<LocalCounts>,
}

/// The PROXY protocol header, before anything else on the connection
/// (TLS included), within `timeout`.
async fn read_proxy_header(
    stream: &mut tokio::net::TcpStream,
    timeout: Duration,
) -> Result<super::proxy_protocol::ProxyHeader, super::proxy_protocol::ProxyHeaderError> {
    tokio::time::timeout(timeout, super::proxy_protocol::read_header(stream))
        .await
        .unwrap_or(Err(super::proxy_protocol::ProxyHeaderError::Timeout))
}

async fn accept_loop(listener: TcpListener, ctx: AcceptContext) {
    let mut backoff = AcceptBackoff::default();
    // The same instance in every generation: taken once.
    let metrics = ctx.runtime.load().metrics.clone();
    loop {
        let permit = tokio::select! {
            _ = ctx.stop.cancelled() => return,
            p = ctx.permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = ctx.stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    metrics
                        .accept_errors
                        .with_label_values(&[accept_backoff::reason(&e)])
                        .inc();
                    if accept_backoff::is_per_connection(&e) {
                        continue;
                    }
                    // EMFILE and friends: back off instead of spinning.
                    let after = backoff.failed(std::time::Instant::now());
                    if let Some(unlogged) = after.log {
                        tracing::warn!(addr = %ctx.addr, error = %e, unlogged, "accept failed; backing off");
                    }
                    drop(permit);
                    tokio::select! {
                        _ = ctx.stop.cancelled() => return,
                        _ = tokio::time::sleep(after.pause) => {}
                    }
                    continue;
                }
            },
        };
        backoff.succeeded();
        // The runtime current at accept time decides TLS and certificates,
        // so a reload applies to new connections only.
        let (tls, expect_proxy) = {
            let rt = ctx.runtime.load();
            let expect = rt
                .config
                .listeners
                .iter()
                .any(|l| l.addr == ctx.addr && l.proxy_protocol)
                .then_some(rt.config.http.proxy_protocol_timeout);
            (rt.tls.acceptor(&ctx.addr), expect)
        };
        // Boxed, and the control too: the task's future holds them until
        // they move into the connection, and a parked connection costs
        // its task (see `conn::park`).
        let conn = Box::new(ConnInfo {
            peer,
            peer_header: super::headers::addr_header(peer.ip()),
            local: stream.local_addr().unwrap_or(ctx.addr),
            listener: ctx.addr,
            tls: tls.is_some(),
            sendfile: None,
            proxy_protocol: None,
        });
        let runtime = ctx.runtime.clone();
        let mut released = ctx.released.clone();
        released.mark_unchanged();
        // Accepted while its address is being given up (the kernel
        // completed the handshake before the SYN hold): answer what the
        // client sends now, then close, before the address goes.
        let doomed = released.borrow().contains(&conn.local.ip());
        let control = Box::new(ConnControl {
            accepted: tokio::time::Instant::now(),
            doomed,
            peer,
            local_ip: conn.local.ip(),
            stop: ctx.stop.clone(),
            lifecycle: ctx.lifecycle.clone(),
            released,
            fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
            _local: ctx.by_local.register(conn.local.ip()),
        });
        metrics.connections_accepted.inc();
        metrics.connections_active.inc();
        let metrics = metrics.clone();
        ctx.connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            let mut stream = stream;
            let mut conn = conn;
            if let Some(timeout) = expect_proxy {
                match read_proxy_header(&mut stream, timeout).await {
                    Ok(header) => conn.proxy_protocol = Some(header),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "connection closed");
                        metrics
                            .proxy_protocol_errors
                            .with_label_values(&[e.reason()])
                            .inc();
                        metrics.connections_active.dec();
                        drop(permit);
                        return;
                    }
                }
            }
            match tls {
                None => {
                    let (stream, sendfile) = SendfileStream::new(stream);
                    conn.sendfile = Some(sendfile);
                    serve_plain_connection(stream, Arc::from(conn), runtime, control).await
                }
                // Boxed: the handshake and TLS connection futures are
                // large, and inline they would size every connection's
                // task, plain ones (parked at a few hundred bytes) too.
                Some(acceptor) => {
                    Box::pin(async {
                        let timeout = runtime.load().config.http.client_header_timeout;
                        let handshake = tls::handshake(
                            &acceptor,
                            stream,
                            timeout,
                            peer,
                            &control.stop,
                            &metrics,
                        );
                        if let Some(stream) = handshake.await {
                            serve_connection(stream, Arc::from(conn), runtime, control).await;
                        }
                    })
                    .await
                }
            }
            metrics.connections_active.dec();
            drop(permit);
        });
    }
}
