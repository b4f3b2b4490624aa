//! One client connection: the service its requests go to, the hyper
//! settings it is served with, and how it is driven:
//! - [`drive`]: the close protocol (how a connection is asked to go when
//!   the proxy drains, its listener goes away or its local address, a VIP,
//!   is given up) without failing a request the client has already sent;
//! - [`plain`]: plain connections, HTTP/1 parked between requests;
//! - [`own_h1`]: vigil's own HTTP/1 path for a plain connection's requests
//!   without a body (hyper serves the rest);
//! - [`park`]: what parking needs to know, and the socket wrapper;
//! - [`wake_gate`]: polling the close and timer branches only when they
//!   were woken, not at every wake-up for the connection's traffic.

mod drive;
mod own_h1;
mod park;
mod plain;
mod wake_gate;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::drive::{Driver, HeadDeadline, drive};
use self::park::{ConnState, Tracked};
use super::handler::{self, ConnInfo, LoggedBody};
use super::request_body::RequestBody;
use super::runtime::Runtime;
use super::sendfile::SendfileStream;
use super::server::Lifecycle;
use crate::config::HttpSettings;

/// What a connection task watches besides its own traffic.
pub(crate) struct ConnControl {
    /// When it was accepted: `client_header_timeout` runs from here until
    /// the first request head is in.
    pub(crate) accepted: tokio::time::Instant,
    /// Its local address was already released when it was accepted.
    pub(crate) doomed: bool,
    pub(crate) peer: std::net::SocketAddr,
    /// The address the client connected to (a VIP, say).
    pub(crate) local_ip: std::net::IpAddr,
    /// The listener is going away (shutdown, reload removed it).
    pub(crate) stop: CancellationToken,
    pub(crate) lifecycle: watch::Receiver<Lifecycle>,
    /// Addresses this node gave up.
    pub(crate) released: watch::Receiver<Arc<Vec<std::net::IpAddr>>>,
    /// The client socket, to ask the kernel for bytes not read yet.
    pub(crate) fd: std::os::fd::RawFd,
    /// Counts this connection under its local address while it lives.
    pub(crate) _local: LocalAddrGuard,
}

/// How long an HTTP/1 connection with nothing unread (just opened, or
/// between requests) is given to send its next request when it is asked
/// to close, so that request is answered rather than cut: well inside the 100 ms
/// a VIP release waits for connections, so the answer still gets out.
pub(crate) const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(40);

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
pub(crate) struct LocalCounts(std::sync::Mutex<HashMap<std::net::IpAddr, usize>>);

impl LocalCounts {
    pub(crate) fn register(self: &Arc<Self>, ip: std::net::IpAddr) -> LocalAddrGuard {
        *self.lock().entry(ip).or_default() += 1;
        LocalAddrGuard {
            counts: self.clone(),
            ip,
        }
    }

    pub(crate) fn count(&self, ips: &[std::net::IpAddr]) -> usize {
        let counts = self.lock();
        ips.iter().filter_map(|ip| counts.get(ip)).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<std::net::IpAddr, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct LocalAddrGuard {
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

/// The service every request of one connection goes to.
#[derive(Clone)]
pub(super) struct ConnService {
    runtime: Arc<ArcSwap<Runtime>>,
    conn: Arc<ConnInfo>,
    lifecycle: Arc<LifecycleView>,
    state: Arc<ConnState>,
}

/// The proxy's lifecycle as one connection's responses read it: whether
/// they must say `Connection: close`.
///
/// Why not a `watch::Receiver` clone per request: cloning, reading and
/// dropping one are six atomic writes to the channel's shared state,
/// which every connection of both workers writes too; its lines bounce
/// between the CPUs (perf: the top self-time spots of the request
/// future). Here a request reads the channel's version (a plain load) and
/// takes the read lock only once the lifecycle has moved.
struct LifecycleView {
    rx: watch::Receiver<Lifecycle>,
    /// Not serving when the connection began: always read the value.
    moved_before: bool,
}

impl LifecycleView {
    fn new(mut rx: watch::Receiver<Lifecycle>) -> Arc<LifecycleView> {
        // Marked seen, so that `has_changed` means: since the connection
        // began.
        let moved_before = *rx.borrow_and_update() != Lifecycle::Serving;
        Arc::new(LifecycleView { rx, moved_before })
    }

    /// Draining or closing. Any value other than `Serving` was either
    /// there when the connection began or sent since, which moved the
    /// channel's version past this receiver's.
    fn closing(&self) -> bool {
        (self.moved_before || self.rx.has_changed().unwrap_or(true))
            && *self.rx.borrow() != Lifecycle::Serving
    }
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Tracked<LoggedBody>>, Infallible>> + Send>>;

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnService {
    type Response = http::Response<Tracked<LoggedBody>>;
    type Error = Infallible;
    type Future = ServiceFuture;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> ServiceFuture {
        self.respond(req.map(RequestBody::Hyper))
    }
}

impl ConnService {
    /// Answers one request, from hyper or from the own HTTP/1 path.
    fn respond(&self, req: http::Request<RequestBody>) -> ServiceFuture {
        let in_flight = self.state.request_started();
        let rt = super::runtime::hold(&self.runtime);
        let conn = self.conn.clone();
        let h2 = req.version() == http::Version::HTTP_2;
        if h2 {
            self.state.is_h2.store(true, Relaxed);
        }
        let lifecycle = self.lifecycle.clone();
        let state = self.state.clone();
        // Boxed: the request future is a few KB; hyper moves the service
        // future into place for every request, and a box makes that move
        // a pointer copy. Built in its box (see `boxed_in_place`).
        Box::into_pin(boxed_in_place(move || async move {
            let mut response = handler::handle(rt, &conn, req).await;
            let closing = lifecycle.closing() || state.close_after.load(Relaxed);
            if !h2 && closing {
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok(response.map(|body| Tracked::new(body, in_flight)))
        }))
    }
}

/// `Box::new(make())`, with the box allocated first so that the value
/// can be written straight into it: `Box::new` evaluates its argument
/// before it allocates, so a large future is built on the stack and then
/// copied (perf: a 5.9 KB `memcpy` per request).
#[inline(always)]
fn boxed_in_place<T>(make: impl FnOnce() -> T) -> Box<T> {
    let mut boxed = Box::new_uninit();
    boxed.write(make());
    // SAFETY: written just above.
    unsafe { boxed.assume_init() }
}

/// Serves a plain connection (see [`plain`]).
pub(crate) async fn serve_plain_connection(
    stream: SendfileStream,
    conn: Arc<ConnInfo>,
    runtime: Arc<ArcSwap<Runtime>>,
    control: Box<ConnControl>,
) {
    let service = ConnService {
        runtime,
        conn,
        lifecycle: LifecycleView::new(control.lifecycle.clone()),
        state: Arc::default(),
    };
    plain::serve_plain(stream, service, control).await;
}

/// Serves a TLS connection: HTTP/1 or HTTP/2, as its first bytes say.
pub(crate) async fn serve_connection<IO>(
    stream: IO,
    conn: Arc<ConnInfo>,
    runtime: Arc<ArcSwap<Runtime>>,
    mut control: Box<ConnControl>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (settings, metrics) = settings(&runtime);
    let state = Arc::new(ConnState::default());
    let service = ConnService {
        runtime,
        conn,
        lifecycle: LifecycleView::new(control.lifecycle.clone()),
        state: state.clone(),
    };
    let builder = auto_builder(&settings);
    let stream = super::h2_flood::FloodGuard::new(stream, metrics.http2_flood_closed.clone());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut driver = Driver {
        close_now: control.doomed,
        // hyper's own header timeout starts only once it knows the
        // protocol (HTTP/1 vs the HTTP/2 preface): a connection that never
        // sends a byte would be kept forever and hold an fd (issue 13:
        // 2,200 silent connections exhausted a 2,000-fd limit). nginx's
        // client_header_timeout runs from accept; so does this.
        head: Some(HeadDeadline {
            at: control.accepted + settings.client_header_timeout,
            requests: 0,
        }),
        control: &mut control,
        state: &state,
    };
    drive(connection, |c| c.graceful_shutdown(), &mut driver, None).await;
}

fn settings(runtime: &ArcSwap<Runtime>) -> (HttpSettings, Arc<crate::metrics::Metrics>) {
    let rt = runtime.load();
    (rt.config.http.clone(), rt.metrics.clone())
}

/// hyper's HTTP/1 settings from `[http]`. A macro: hyper's builder and
/// hyper-util's (for TLS connections, which hyper tells apart) are two
/// types with the same methods.
macro_rules! http1_settings {
    ($builder:expr, $http:expr) => {
        $builder
            // Body chunks are queued and written as handed over (never
            // copied into a flat buffer): proxy::sendfile depends on it.
            .writev(true)
            .timer(TokioTimer::new())
            .header_read_timeout($http.client_header_timeout)
            .max_buf_size(max_buf_size($http.max_header_size))
            .keep_alive(true)
    };
}

/// The read buffer a request head must fit in. Twice the limit: a head
/// between one and two limits is parsed and refused by `request_checks`
/// with the precise status (414 for a long target, 431 for big fields);
/// beyond that hyper says 431.
fn max_buf_size(max_header_size: usize) -> usize {
    (2 * max_header_size).max(16384)
}

/// hyper's HTTP/2 settings from `[http]` (a macro for the same reason).
macro_rules! http2_settings {
    ($builder:expr, $http:expr) => {
        $builder
            .timer(TokioTimer::new())
            .max_header_list_size($http.max_header_size as u32)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20))
    };
}

fn http1_builder(http: &HttpSettings) -> http1::Builder {
    let mut builder = http1::Builder::new();
    http1_settings!(builder, http);
    builder
}

fn http2_builder(http: &HttpSettings) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    http2_settings!(builder, http);
    builder
}

fn auto_builder(http: &HttpSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    http1_settings!(builder.http1(), http);
    http2_settings!(builder.http2(), http);
    if !http.http2 {
        builder = builder.http1_only();
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::future_size::future_size;

    /// A parked connection costs its task, and the task is as large as
    /// its largest state (the phases holding hyper are boxed): keep it
    /// from growing unnoticed. TLS connections' futures are boxed by the
    /// accept loop, whatever their size.
    #[test]
    fn a_plain_connection_future_stays_small() {
        let plain = future_size(
            serve_plain_connection
                as fn(SendfileStream, Arc<ConnInfo>, Arc<ArcSwap<Runtime>>, Box<ConnControl>) -> _,
        );
        // `cargo test --release --lib plain_connection -- --nocapture`
        // shows the size users get.
        eprintln!("plain connection future: {plain} bytes");
        assert!(plain <= 1400, "plain connection future is {plain} bytes");
    }

    /// Every lifecycle path a connection can see: begun while serving or
    /// draining, then drained, undrained or closed.
    #[test]
    fn a_connection_sees_every_lifecycle_move() {
        use Lifecycle::*;
        for (at_start, moves) in [
            (Serving, vec![]),
            (Serving, vec![Draining]),
            (Serving, vec![Draining, Serving]),
            (Serving, vec![Draining, Closing]),
            (Draining, vec![]),
            (Draining, vec![Serving]),
            (Draining, vec![Serving, Draining]),
            (Closing, vec![]),
        ] {
            let (tx, rx) = watch::channel(Serving);
            // A receiver that has not seen the current value, as a
            // listener's may not.
            tx.send_replace(at_start);
            let view = LifecycleView::new(rx);
            assert_eq!(view.closing(), at_start != Serving, "{at_start:?}");
            for (i, &now) in moves.iter().enumerate() {
                tx.send_replace(now);
                assert_eq!(
                    view.closing(),
                    now != Serving,
                    "{at_start:?} {:?}",
                    &moves[..=i]
                );
                // Reading it again changes nothing.
                assert_eq!(view.closing(), now != Serving);
            }
        }
    }
}
