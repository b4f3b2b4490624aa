//! Parking idle HTTP/1 connections: an idle keep-alive connection gives
//! its buffers back and waits on the bare socket (issue 13: 10,000 idle
//! connections took 157 MiB where nginx takes a few).
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for as long
//! as a connection lives, and offers no way to shrink them. What it does
//! offer is a way to stop serving a connection without closing its
//! socket: asked to shut down while idle, it ends at once, and the socket
//! and the bytes it had read but not used come back (`into_parts`). The
//! connection task then holds just the socket, and builds a fresh hyper
//! connection when the client sends again, so an idle connection costs a
//! socket and a small task, as in nginx, which frees a keep-alive
//! connection's buffers too.
//!
//! Two things have to be known for that, and hyper tells neither:
//! - that no request is under way: the service counts a request from its
//!   head until hyper drops the response body ([`InFlight`]);
//! - that hyper's writes are all out, so ending it loses nothing:
//!   [`ParkIo`] sees every write and flush.
//!
//! [`ParkIo`] also keeps hyper's shutdown off the socket while parking,
//! and hands the next hyper connection the bytes the last one had read.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a connection's service and socket wrapper tell the task that
/// drives it. All on one task; atomic only because hyper wants its
/// service `Send`.
#[derive(Debug, Default)]
pub(crate) struct ConnState {
    /// Requests whose head reached the service.
    requests: AtomicU64,
    /// Requests whose response body hyper has not dropped yet.
    in_flight: AtomicU32,
    /// Bumped by every read that brought bytes and every write.
    activity: AtomicU64,
    /// Something was written since the last completed flush.
    unflushed: AtomicBool,
    /// The task is taking the socket back from hyper: hyper's shutdown
    /// must not reach the socket.
    parking: AtomicBool,
    /// The connection turned out to be HTTP/2 (told to go with GOAWAY).
    pub(crate) is_h2: AtomicBool,
    /// HTTP/1.1: the next response closes the connection.
    pub(crate) close_after: AtomicBool,
}

impl ConnState {
    /// A request head reached the service; the returned guard travels
    /// with its response body.
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        InFlight(self.clone())
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    pub(crate) fn activity(&self) -> u64 {
        self.activity.load(Relaxed)
    }

    /// No request under way and nothing left unwritten: hyper is between
    /// requests, and ending it now loses nothing.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.load(Relaxed) == 0 && !self.unflushed.load(Relaxed)
    }

    pub(crate) fn set_parking(&self, parking: bool) {
        self.parking.store(parking, Relaxed);
    }

    fn bump(&self) {
        self.activity.fetch_add(1, Relaxed);
    }
}

/// Counts a request as under way while hyper holds its response body.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A response body carrying its request's [`InFlight`] guard: hyper drops
/// the body once it has taken all of it (or gave up on it).
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket under hyper on a plain HTTP/1 connection.
#[derive(Debug)]
pub(crate) struct ParkIo<S> {
    stream: S,
    /// Read from the socket, not yet by hyper: the bytes the last hyper
    /// connection had read past its last request (a pipelined request's
    /// beginning), or the sniffed start of the connection.
    prefix: Bytes,
    state: Arc<ConnState>,
}

impl<S> ParkIo<S> {
    pub(crate) fn new(stream: S, state: Arc<ConnState>) -> Self {
        Self {
            stream,
            prefix: Bytes::new(),
            state,
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.stream
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub(crate) fn has_prefix(&self) -> bool {
        !self.prefix.is_empty()
    }

    /// Puts bytes read elsewhere in front of what the socket will give.
    /// Copied: `read` may be a slice of hyper's whole read buffer, which
    /// parking is meant to free.
    pub(crate) fn unread(&mut self, read: &[u8]) {
        if read.is_empty() {
            return;
        }
        let mut all = bytes::BytesMut::with_capacity(read.len() + self.prefix.len());
        all.extend_from_slice(read);
        all.extend_from_slice(&self.prefix);
        self.prefix = all.freeze();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ParkIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            this.state.bump();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.bump();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ParkIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.wrote();
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.state.unflushed.store(false, Relaxed);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.parking.load(Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl<S> ParkIo<S> {
    /// Marks a write attempt: until a flush completes, hyper may hold
    /// bytes it could not write yet.
    fn wrote(&self) {
        self.state.unflushed.store(true, Relaxed);
        self.state.bump();
    }
}
