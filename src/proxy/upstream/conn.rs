//! Connections to upstream servers: dialing with a timeout, the byte
//! stream (plain or TLS) with its read buffer, and a per-worker cache of
//! idle keep-alive connections.
//!
//! A connection is a plain value driven by the request that holds it: no
//! task of its own, no channel between the request and the socket (hyper's
//! client worked that way; issue 16 measured the hop). Why not hyper-util's
//! pooled client either: it owns the request body, so after a connect
//! error a POST could not be retried on the next server, and it hides
//! whether a failure happened before anything was sent.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::head_timer::HeadTimer;
use super::pool::Peer;
use crate::proxy::tls::UpstreamConnector;
use crate::proxy::workers::{PerWorker, WorkerHold};

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
}

/// Opens a TCP connection, then TLS when `tls` is given. `timeout` bounds
/// TCP connect and TLS handshake together, as nginx's
/// proxy_connect_timeout does.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<&UpstreamConnector>,
    timeout: Duration,
) -> Result<Box<Connection>, ConnectError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
        Ok(Err(source)) => return Err(ConnectError::Io { addr, source }),
        Ok(Ok(s)) => s,
    };
    // Small requests and responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let io = match tls {
        None => Transport::Plain(stream),
        Some(tls) => match tokio::time::timeout_at(deadline, tls.connect(stream)).await {
            Err(_) => return Err(ConnectError::Timeout { addr, timeout }),
            Ok(Err(source)) => return Err(ConnectError::Tls { addr, source }),
            Ok(Ok(stream)) => Transport::Tls(Box::new(stream)),
        },
    };
    Ok(Box::new(Connection {
        io,
        buf: BytesMut::new(),
        head: Vec::new(),
        reused: false,
        head_timer: HeadTimer::default(),
    }))
}

/// The byte stream to an upstream server.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One HTTP/1.1 connection to an upstream server. Always boxed, from dial
/// through the idle cache to the response body: it is moved with every
/// response, and the box keeps `Body` small.
pub struct Connection {
    pub(super) io: Transport,
    /// Bytes read and not yet consumed (a head being parsed, body bytes
    /// that came with it).
    pub(super) buf: BytesMut,
    /// Scratch for request heads, kept for the next request.
    pub(super) head: Vec<u8>,
    /// Carried a request before: a failure before any response byte may
    /// be the server closing it as we picked it.
    pub(super) reused: bool,
    /// Times the wait for each response head (see `head_timer`).
    pub(super) head_timer: HeadTimer,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("buffered", &self.buf.len())
            .field("reused", &self.reused)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Whether an idle connection can take a request: the server has not
    /// closed it and sent nothing unasked. A poll with a no-op waker: on a
    /// socket with no news it costs no system call (tokio knows it is not
    /// readable).
    fn still_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }

    /// Whether the connection came from the idle cache.
    pub fn is_reused(&self) -> bool {
        self.reused
    }

    /// Gives up the stream and whatever was read past the last response
    /// (a tunnel starts with those bytes).
    pub fn into_parts(self) -> (Transport, BytesMut) {
        (self.io, self.buf)
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Idle keep-alive connections to one server, kept per worker (like
/// nginx's per-worker `keepalive` cache): a connection is driven by the
/// worker that opened it, so reusing it from another worker would bring
/// back the cross-thread wake-ups the worker design avoids.
#[derive(Debug)]
pub struct IdleConnections {
    shards: PerWorker<Mutex<Vec<IdleEntry>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

/// A cached connection and when it went idle.
type IdleEntry = (Box<Connection>, Instant);

impl IdleConnections {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            shards: PerWorker::new(|| Mutex::new(Vec::new())),
            max_idle,
            idle_timeout,
        }
    }

    fn shard(&self) -> std::sync::MutexGuard<'_, Vec<IdleEntry>> {
        self.shards.get().lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used live connection of this worker, if any.
    /// Expired and closed ones found on the way are dropped (closing them).
    pub fn take(&self, now: Instant) -> Option<Box<Connection>> {
        loop {
            let (mut conn, since) = self.shard().pop()?;
            if now.duration_since(since) < self.idle_timeout && conn.still_usable() {
                conn.reused = true;
                return Some(conn);
            }
        }
    }

    /// Keeps a connection for reuse, dropping the oldest beyond the limit.
    pub fn put(&self, conn: Box<Connection>, now: Instant) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.shard();
        if idle.len() >= self.max_idle {
            idle.remove(0);
        }
        idle.push((conn, now));
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

/// Marks one request in flight on a peer (least_conn, random_two); the
/// count drops when this is dropped, whatever the outcome.
#[derive(Debug)]
pub struct InFlight {
    peer: Arc<WorkerHold<Peer>>,
    /// The worker slot it is counted in.
    slot: usize,
}

impl InFlight {
    pub fn new(peer: &Arc<Peer>) -> Self {
        let slot = peer.request_started();
        Self {
            peer: peer.holds.hold(peer),
            slot,
        }
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.peer.request_done(self.slot);
    }
}
