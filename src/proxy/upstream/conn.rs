//! Connections to upstream servers: dialing with a timeout, a per-server
//! cache of idle keep-alive connections, and the response body that hands
//! its connection back to the cache when it has been read to the end.
//!
//! Why not hyper-util's legacy pooled client: it owns the request body, so
//! after a connect error a POST could not be retried on the next server;
//! and it hides whether a failure happened before anything was sent. Here a
//! connection is obtained first (connect errors leave the request intact)
//! and `try_send_request` gives the request back when it was never written.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::pool::Peer;
use crate::proxy::body::{Body, BoxError};
use crate::proxy::stall_timer::StallTimer;
use crate::proxy::tls::UpstreamConnector;

/// A request sender for one HTTP/1.1 connection to an upstream server.
pub type Sender = SendRequest<Body>;

/// Why a new connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connect to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

/// Opens a TCP connection, then TLS when `tls` is given, and starts an
/// HTTP/1.1 client on it. `timeout` bounds TCP connect and TLS handshake
/// together, as nginx's proxy_connect_timeout does.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<&UpstreamConnector>,
    timeout: Duration,
) -> Result<Sender, ConnectError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    // Small requests and responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    match tls {
        None => handshake(addr, stream).await,
        Some(tls) => match tokio::time::timeout_at(deadline, tls.connect(stream)).await {
            Err(_) => Err(ConnectError::Timeout { addr, timeout }),
            Ok(Err(source)) => Err(ConnectError::Tls { addr, source }),
            Ok(Ok(stream)) => handshake(addr, stream).await,
        },
    }
}

/// Most header fields accepted in an upstream response.
const MAX_RESPONSE_HEADERS: usize = 100;
/// Largest upstream response head, in bytes (also the read buffer's cap).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Starts hyper's HTTP/1.1 client on an open connection.
async fn handshake<IO>(addr: SocketAddr, stream: IO) -> Result<Sender, ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        // Bounds on a response head (nginx: "upstream sent too big
        // header", 502); beyond them the response is invalid, a failure
        // of the server.
        .max_headers(MAX_RESPONSE_HEADERS)
        .max_buf_size(MAX_RESPONSE_HEAD)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    tokio::spawn(async move {
        // Upgrades (WebSocket) take the connection over; otherwise it ends
        // when the sender is dropped or the server closes it.
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// Idle keep-alive connections to one server, kept per worker (like
/// nginx's per-worker `keepalive` cache): a connection is driven by the
/// worker that opened it, so reusing it from another worker would bring
/// back the cross-thread wake-ups the worker design avoids.
#[derive(Debug)]
pub struct IdleConnections {
    shards: Box<[Mutex<Vec<IdleSender>>]>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// A cached connection and when it went idle.
type IdleSender = (Sender, Instant);

/// Upper bound of workers with separate caches; more share shards.
const SHARDS: usize = 64;

impl IdleConnections {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            max_idle,
            idle_timeout,
        }
    }

    fn shard(&self) -> std::sync::MutexGuard<'_, Vec<IdleSender>> {
        self.shards[crate::proxy::workers::current() % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used live connection of this worker, if any.
    /// Expired and closed ones found on the way are dropped (closing them).
    pub fn take(&self, now: Instant) -> Option<Sender> {
        let mut idle = self.shard();
        while let Some((sender, since)) = idle.pop() {
            if now.duration_since(since) < self.idle_timeout && !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// Keeps a connection for reuse, dropping the oldest beyond the limit.
    pub fn put(&self, sender: Sender, now: Instant) {
        if self.max_idle == 0 || sender.is_closed() {
            return;
        }
        let mut idle = self.shard();
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push((sender, now));
    }

    /// `(max_idle, idle_timeout)`, to tell whether a reload changed them.
    pub fn settings(&self) -> (usize, Duration) {
        (self.max_idle, self.idle_timeout)
    }

    /// Idle connections over all workers.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|v| v.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every idle connection (server marked down).
    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// Waits until a cached sender can take a request. A sender returns to the
/// cache the moment its previous response body ended, which can be a
/// moment before the connection task has noticed; this bridges that gap
/// (and finds connections the server closed meanwhile).
pub async fn ready(mut sender: Sender) -> Option<Sender> {
    if sender.is_ready() {
        return Some(sender);
    }
    match tokio::time::timeout(Duration::from_millis(500), sender.ready()).await {
        Ok(Ok(())) => Some(sender),
        _ => None,
    }
}

/// Marks one request in flight on a peer (least_conn, random_two); the
/// count drops when this is dropped, whatever the outcome.
#[derive(Debug)]
pub struct InFlight(Arc<Peer>);

impl InFlight {
    pub fn new(peer: Arc<Peer>) -> Self {
        peer.active
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(peer)
    }

    pub fn peer(&self) -> &Arc<Peer> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .active
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An upstream response body. It enforces the read timeout between
/// chunks, and when the body has been read to its end the connection goes
/// back to the peer's idle cache.
pub struct UpstreamBody {
    inner: Incoming,
    sender: Option<Sender>,
    in_flight: Option<InFlight>,
    /// `read_timeout` between chunks.
    timer: StallTimer,
}

/// The upstream went quiet for longer than `read_timeout` mid-body.
#[derive(Debug, thiserror::Error)]
#[error("upstream read timed out after {0:?}")]
pub struct ReadTimeout(pub Duration);

impl UpstreamBody {
    pub fn new(
        inner: Incoming,
        sender: Sender,
        in_flight: InFlight,
        read_timeout: Duration,
    ) -> Self {
        let mut body = Self {
            inner,
            sender: Some(sender),
            in_flight: Some(in_flight),
            timer: StallTimer::new(read_timeout),
        };
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    /// The response is complete: recycle the connection.
    fn finish(&mut self) {
        if let (Some(sender), Some(in_flight)) = (self.sender.take(), self.in_flight.take()) {
            in_flight.peer().idle.put(sender, Instant::now());
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer.progress();
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // A broken connection is never reused.
                this.sender = None;
                this.in_flight = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.expired(cx) {
                    this.sender = None;
                    this.in_flight = None;
                    return Poll::Ready(Some(Err(ReadTimeout(this.timer.timeout()).into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
