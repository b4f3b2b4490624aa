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
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept_backoff::{self, AcceptBackoff};
use super::handler::{self, ConnInfo};
use super::runtime::Runtime;
use super::sendfile::SendfileStream;
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
    /// Draining state, watched by every connection.
    lifecycle: watch::Sender<Lifecycle>,
    /// Why new connections are being held off (SYNs dropped), if at all.
    holds: Mutex<Holds>,
    /// Local addresses this node no longer holds (VIPs handed to a peer):
    /// connections to them are closed.
    released: watch::Sender<Arc<Vec<std::net::IpAddr>>>,
    /// Open connections per local address.
    by_local: Arc<LocalCounts>,
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
            lifecycle: watch::channel(Lifecycle::Serving).0,
            holds: Mutex::new(Holds::default()),
            released: watch::channel(Arc::new(Vec::new())).0,
            by_local: Arc::default(),
        };
        server.sync_listeners()?;
        if let Some(handle) = server.workers.handles().next() {
            handle.spawn(super::memory::trim_after_closes());
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

    /// Waits (up to `timeout`) until no connection to `addrs` is open.
    pub async fn wait_released(&self, addrs: &[std::net::IpAddr], timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.by_local.count(addrs) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
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

/// A listening socket's accept queue length: Linux reports it in
/// `tcpi_unacked` of TCP_INFO for sockets in LISTEN state.
fn accept_queue_len(socket: &Socket) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `len`
    // bytes into it and the fd is valid while `socket` lives.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if rc == 0 {
            info.tcpi_unacked as usize
        } else {
            0
        }
    }
}

/// Attaches (or removes) a classic BPF program on a listening socket that
/// drops TCP segments with the SYN flag: new handshakes go unanswered. The
/// listener also sees the last ACK of handshakes already under way, which
/// must pass, or a connection the client believes open would never reach
/// the accept queue. Established connections have sockets of their own
/// (with the filter they had when created: none), so they keep working.
fn set_syn_drop(socket: &Socket, drop: bool) -> io::Result<()> {
    if drop {
        // For TCP the filter runs with the data pointer at the TCP header,
        // whose byte 13 holds the flags; SYN is 0x02.
        const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
        const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
        const RET_K: u16 = 0x06; // BPF_RET | BPF_K
        socket.attach_filter(&[
            socket2::SockFilter::new(LD_B_ABS, 0, 0, 13),
            socket2::SockFilter::new(JSET_K, 0, 1, 0x02),
            socket2::SockFilter::new(RET_K, 0, 0, 0), // SYN: drop
            socket2::SockFilter::new(RET_K, 0, 0, u32::MAX), // else: keep
        ])
    } else {
        match socket.detach_filter() {
            // ENOENT: no filter was attached.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
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
    lifecycle: watch::Receiver<Lifecycle>,
    released: watch::Receiver<Arc<Vec<std::net::IpAddr>>>,
    by_local: Arc<LocalCounts>,
}

async fn accept_loop(listener: TcpListener, ctx: AcceptContext) {
    let mut backoff = AcceptBackoff::default();
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
                    crate::metrics::get()
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
        let tls = ctx.runtime.load().tls.acceptor(&ctx.addr);
        let conn = ConnInfo {
            peer,
            peer_header: super::headers::addr_header(peer.ip()),
            local: stream.local_addr().unwrap_or(ctx.addr),
            listener: ctx.addr,
            tls: tls.is_some(),
            sendfile: None,
        };
        let runtime = ctx.runtime.clone();
        let mut released = ctx.released.clone();
        released.mark_unchanged();
        // Accepted while its address is being given up (the kernel
        // completed the handshake before the SYN hold): answer what the
        // client sends now, then close, before the address goes.
        let doomed = released.borrow().contains(&conn.local.ip());
        let control = ConnControl {
            accepted: tokio::time::Instant::now(),
            doomed,
            stop: ctx.stop.clone(),
            lifecycle: ctx.lifecycle.clone(),
            released,
            fd: std::os::fd::AsRawFd::as_raw_fd(&stream),
            _local: ctx.by_local.register(conn.local.ip()),
        };
        let metrics = crate::metrics::get();
        metrics.connections_accepted.inc();
        metrics.connections_active.inc();
        ctx.connections.spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                None => {
                    let (stream, sendfile) = SendfileStream::new(stream);
                    let conn = ConnInfo {
                        sendfile: Some(sendfile),
                        ..conn
                    };
                    serve_connection(stream, conn, runtime, control).await
                }
                Some(acceptor) => {
                    let timeout = runtime.load().config.http.client_header_timeout;
                    let handshake = tls::handshake(&acceptor, stream, timeout, peer, &control.stop);
                    if let Some(stream) = handshake.await {
                        serve_connection(stream, conn, runtime, control).await;
                    }
                }
            }
            metrics.connections_active.dec();
            drop(permit);
        });
    }
}

/// What a connection task watches besides its own traffic.
struct ConnControl {
    /// When it was accepted: `client_header_timeout` runs from here until
    /// the first request head is in.
    accepted: tokio::time::Instant,
    /// Its local address was already released when it was accepted.
    doomed: bool,
    /// The listener is going away (shutdown, reload removed it).
    stop: CancellationToken,
    lifecycle: watch::Receiver<Lifecycle>,
    /// Addresses this node gave up.
    released: watch::Receiver<Arc<Vec<std::net::IpAddr>>>,
    /// The client socket, to ask the kernel for bytes not read yet.
    fd: std::os::fd::RawFd,
    /// Counts this connection under its local address while it lives.
    _local: LocalAddrGuard,
}

/// How long a connection that has not sent its first request yet is given
/// to send it when the connection is asked to close: well inside the 100 ms
/// a VIP release waits for connections, so the answer still gets out.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(40);

/// Waits (polling FIONREAD: hyper owns the socket's readiness) until the
/// client has sent something, or `grace` has passed.
async fn await_first_bytes(fd: std::os::fd::RawFd, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while unread_bytes(fd) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Bytes the client sent that nobody has read yet (FIONREAD).
fn unread_bytes(fd: std::os::fd::RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int; the fd belongs to the connection
    // whose task calls this, so it is open.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc == 0 { n.max(0) as usize } else { 0 }
}

/// Open connections per local address (to know when the connections to a
/// VIP being given up are gone).
#[derive(Debug, Default)]
pub struct LocalCounts(std::sync::Mutex<HashMap<std::net::IpAddr, usize>>);

impl LocalCounts {
    fn register(self: &Arc<Self>, ip: std::net::IpAddr) -> LocalAddrGuard {
        *self.lock().entry(ip).or_default() += 1;
        LocalAddrGuard {
            counts: self.clone(),
            ip,
        }
    }

    fn count(&self, ips: &[std::net::IpAddr]) -> usize {
        let counts = self.lock();
        ips.iter().filter_map(|ip| counts.get(ip)).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<std::net::IpAddr, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct LocalAddrGuard {
    counts: Arc<LocalCounts>,
    ip: std::net::IpAddr,
}

impl Drop for LocalAddrGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection<IO>(
    stream: IO,
    conn: ConnInfo,
    runtime: Arc<ArcSwap<Runtime>>,
    mut control: ConnControl,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use std::sync::atomic::Ordering::Relaxed;
    let local_ip = conn.local.ip();
    let peer = conn.peer;
    let settings = runtime.load().config.http.clone();
    let conn = Arc::new(conn);
    // Set by the service once the first request shows the protocol: an
    // HTTP/2 connection is told to go with GOAWAY, an HTTP/1.1 one with
    // `Connection: close` on its next response.
    let is_h2 = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // HTTP/1.1: the next response closes the connection.
    let close_after = Arc::new(std::sync::atomic::AtomicBool::new(control.doomed));
    // A request has reached the service on this connection.
    let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let service = {
        let lifecycle = control.lifecycle.clone();
        let is_h2 = is_h2.clone();
        let close_after = close_after.clone();
        let served = served.clone();
        service_fn(move |req: http::Request<hyper::body::Incoming>| {
            served.store(true, Relaxed);
            let rt = runtime.load_full();
            let conn = conn.clone();
            let h2 = req.version() == http::Version::HTTP_2;
            if h2 {
                is_h2.store(true, Relaxed);
            }
            let lifecycle = lifecycle.clone();
            let close_after = close_after.clone();
            // Boxed: the request future is a few KB; hyper moves the
            // service future into place for every request, and a box
            // makes that move a pointer copy.
            Box::pin(async move {
                let mut response = handler::handle(rt, &conn, req).await;
                let closing =
                    *lifecycle.borrow() != Lifecycle::Serving || close_after.load(Relaxed);
                if !h2 && closing {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(response)
            })
        })
    };
    let builder = http_builder(&settings);
    let stream = super::h2_flood::FloodGuard::new(stream);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // hyper's own header timeout starts only once it knows the protocol
    // (HTTP/1 vs the HTTP/2 preface): a connection that never sends a byte
    // would be kept forever and hold an fd (issue 13: 2,200 silent
    // connections exhausted a 2,000-fd limit). nginx's
    // client_header_timeout runs from accept; so does this.
    let first_request = tokio::time::sleep_until(control.accepted + settings.client_header_timeout);
    tokio::pin!(first_request);
    let mut first_request_due = true;
    loop {
        let close = tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection error");
                }
                return;
            }
            () = first_request.as_mut(), if first_request_due => {
                first_request_due = false;
                if served.load(Relaxed) {
                    continue;
                }
                tracing::debug!(peer = %peer, "no request within client_header_timeout; closing");
                return;
            }
            _ = control.stop.cancelled() => true,
            changed = control.released.changed() => {
                changed.is_ok() && control.released.borrow_and_update().contains(&local_ip)
            }
            changed = control.lifecycle.changed() => match changed {
                Err(_) => true,
                Ok(()) => {
                    let state = *control.lifecycle.borrow_and_update();
                    state == Lifecycle::Closing
                        || (state == Lifecycle::Draining && is_h2.load(Relaxed))
                }
            },
        };
        if !close {
            continue;
        }
        // hyper counts a connection whose next request is still in the
        // socket buffer as idle and would close it unread (a reset for the
        // client). Answer that request first, with `Connection: close`.
        if !is_h2.load(Relaxed) && !control.stop.is_cancelled() {
            if !served.load(Relaxed) {
                // Just opened: its first request is likely on the way, and
                // closing now would fail a request the client has not even
                // sent (no client retries that). Give it a moment.
                await_first_bytes(control.fd, FIRST_REQUEST_GRACE).await;
            }
            if unread_bytes(control.fd) > 0 {
                close_after.store(true, Relaxed);
                continue;
            }
        }
        break;
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
        // Body chunks are queued and written as handed over (never copied
        // into a flat buffer): proxy::sendfile depends on it.
        .writev(true)
        .timer(TokioTimer::new())
        .header_read_timeout(http.client_header_timeout)
        // Twice the limit: a head between one and two limits is parsed and
        // refused by `request_checks` with the precise status (414 for a
        // long target, 431 for big fields); beyond that hyper says 431.
        .max_buf_size((2 * http.max_header_size).max(16384))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A held listener leaves SYNs unanswered (the client's connect times
    /// out instead of being refused), and accepts again when released.
    #[tokio::test]
    async fn holding_drops_syns_without_refusing() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let dup = Socket::from(listener.try_clone().unwrap());
        set_syn_drop(&dup, true).unwrap();
        let attempt = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        assert!(attempt.is_err(), "connect should hang, got {attempt:?}");
        set_syn_drop(&dup, false).unwrap();
        // The client's SYN retry (1 s) now gets through.
        let stream =
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
                .await;
        assert!(matches!(stream, Ok(Ok(_))), "{stream:?}");
        assert_eq!(accept_queue_len(&dup), 1);
    }
}
