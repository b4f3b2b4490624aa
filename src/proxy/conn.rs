//! One client connection: the hyper settings it is served with, and the
//! close protocol (how a connection is asked to go when the proxy drains,
//! its listener goes away or its local address, a VIP, is given up)
//! without failing a request the client has already sent.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::handler::{self, ConnInfo};
use super::runtime::Runtime;
use super::server::Lifecycle;
use crate::config::HttpSettings;

/// What a connection task watches besides its own traffic.
pub(crate) struct ConnControl {
    /// When it was accepted: `client_header_timeout` runs from here until
    /// the first request head is in.
    pub(crate) accepted: tokio::time::Instant,
    /// Its local address was already released when it was accepted.
    pub(crate) doomed: bool,
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

pub(crate) async fn serve_connection<IO>(
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
    let (settings, flood_closed) = {
        let rt = runtime.load();
        (
            rt.config.http.clone(),
            rt.metrics.http2_flood_closed.clone(),
        )
    };
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
    let stream = super::h2_flood::FloodGuard::new(stream, flood_closed);
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
    // Accepted for an address being given up: close as soon as what the
    // client sends first is answered (the grace below).
    let mut close_now = control.doomed;
    loop {
        let close = std::mem::take(&mut close_now)
            || tokio::select! {
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
            // Just opened, its first request is likely on the way, and
            // closing now would fail a request the client has not even
            // sent (no client retries that). Between two requests, a
            // client that sends its next one as our FIN arrives sees the
            // connection fail (the keep-alive close race of RFC 9112
            // §9.6); a busy client's next request comes within the grace
            // and is answered, with `Connection: close`, instead. An idle
            // one is closed after it.
            await_first_bytes(control.fd, FIRST_REQUEST_GRACE).await;
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
