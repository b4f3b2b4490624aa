//! Listening sockets and HTTP connections.
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
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handler::{self, ConnInfo};
use super::runtime::Runtime;
use super::tls;
use super::workers::Workers;
use crate::config::HttpSettings;

/// The running proxy: its current runtime and its listeners.
pub struct Server {
    runtime: Arc<ArcSwap<Runtime>>,
    workers: Workers,
    listeners: Mutex<HashMap<SocketAddr, Listening>>,
    connections: TaskTracker,
    root: CancellationToken,
    /// Bounds concurrent connections (`[http] max_connections`).
    permits: Arc<Semaphore>,
}

struct Listening {
    local: SocketAddr,
    stop: CancellationToken,
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}{}", hint(source))]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need CAP_NET_BIND_SERVICE: run as root, \
             `setcap cap_net_bind_service+ep /path/to/vigil`, or Docker \
             `--cap-add NET_BIND_SERVICE`)"
        }
        io::ErrorKind::AddrInUse => " (another process already listens there)",
        _ => "",
    }
}

impl Server {
    /// Binds every listener of `runtime` and starts serving.
    pub fn start(runtime: Runtime) -> Result<Server, BindError> {
        let max_connections = runtime.config.http.max_connections;
        let count = runtime.config.http.workers;
        let workers = Workers::start(count).map_err(|source| BindError {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let server = Server {
            workers,
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            listeners: Mutex::new(HashMap::new()),
            connections: TaskTracker::new(),
            root: CancellationToken::new(),
            permits: Arc::new(Semaphore::new(max_connections)),
        };
        server.sync_listeners()?;
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

    /// Tells every connection to finish (Connection: close / GOAWAY) while
    /// still accepting new ones; used when draining before a VRRP resign.
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`,
    /// then drops whatever is left. Returns the connections still open
    /// when the grace period ended.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.root.cancel();
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
        for (socket, handle) in sockets.into_iter().zip(self.workers.handles()) {
            let ctx = AcceptContext {
                addr,
                runtime: self.runtime.clone(),
                connections: self.connections.clone(),
                stop: stop.clone(),
                permits: self.permits.clone(),
            };
            handle.spawn(async move {
                // Registering with the reactor must happen on the worker.
                match TcpListener::from_std(socket) {
                    Ok(listener) => accept_loop(listener, ctx).await,
                    Err(e) => tracing::error!(%addr, error = %e, "cannot start listener"),
                }
            });
        }
        Listening { local, stop }
    }

    fn lock_listeners(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Listening>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens one listening socket per worker on `addr` (SO_REUSEPORT). With
/// port 0 the first socket picks the port and the others join it.
fn bind_all(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind(addr)?;
    let local = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind(local)?);
    }
    Ok(sockets)
}

/// Opens a listening socket. IP_FREEBIND lets a backup bind a VIP it does
/// not hold yet, so it serves the instant VRRP makes it master.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
        let _ = socket.set_freebind_v6(true);
    } else {
        let _ = socket.set_freebind_v4(true);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

struct AcceptContext {
    addr: SocketAddr,
    runtime: Arc<ArcSwap<Runtime>>,
    connections: TaskTracker,
    stop: CancellationToken,
    permits: Arc<Semaphore>,
}

async fn accept_loop(listener: TcpListener, ctx: AcceptContext) {
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
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(addr = %ctx.addr, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // The runtime current at accept time decides TLS and certificates,
        // so a reload applies to new connections only.
        let tls = ctx.runtime.load().tls.acceptor(&ctx.addr);
        let conn = ConnInfo {
            peer,
            listener: ctx.addr,
            tls: tls.is_some(),
        };
        let runtime = ctx.runtime.clone();
        let stop = ctx.stop.clone();
        ctx.connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve_connection(stream, conn, runtime, stop).await,
                Some(acceptor) => {
                    let timeout = runtime.load().config.http.client_header_timeout;
                    let handshake = tls::handshake(&acceptor, stream, timeout, peer, &stop);
                    if let Some(stream) = handshake.await {
                        serve_connection(stream, conn, runtime, stop).await;
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve_connection<IO>(
    stream: IO,
    conn: ConnInfo,
    runtime: Arc<ArcSwap<Runtime>>,
    stop: CancellationToken,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let settings = runtime.load().config.http.clone();
    let conn = Arc::new(conn);
    let service = service_fn(move |req| {
        let rt = runtime.load_full();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handler::handle(rt, &conn, req).await) }
    });
    let builder = http_builder(&settings);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection error");
            }
            return;
        }
        _ = stop.cancelled() => {}
    }
    connection.as_mut().graceful_shutdown();
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "connection error during shutdown");
    }
}

/// hyper settings from `[http]`.
fn http_builder(http: &HttpSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.client_header_timeout)
        .max_buf_size(http.max_header_size.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(http.max_header_size as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    if !http.http2 {
        builder = builder.http1_only();
    }
    builder
}
