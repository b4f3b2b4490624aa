//! One request/response exchange on an upstream [`Connection`], driven
//! inside the request's own task: the head and body go out, the response
//! head comes back, and the response body is read by whoever polls
//! [`UpstreamBody`] (hyper's server, as it writes to the client). When the
//! body ends cleanly the connection returns to its server's idle cache.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::{HeaderMap, Method, Uri};
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::AsyncWrite;

use super::conn::{Connection, InFlight};
use super::h1::{self, Chunk, ChunkedDecoder, Framing, ParseError, RequestFraming, ResponseHead};
use crate::proxy::body::{Body, BoxError};
use crate::proxy::headers::AddedFields;
use crate::proxy::stall_timer::StallTimer;

/// A request for an upstream server.
#[derive(Debug)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Origin form.
    pub uri: Uri,
    pub headers: HeaderMap,
    /// Fields vigil adds, each replacing the map's fields of its name.
    pub added: AddedFields,
    pub body: Body,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Nothing of the request went out: it can go elsewhere unchanged.
    #[error("{0}")]
    Unsent(io::Error),
    /// The request body stream failed (the client's side).
    #[error("request body: {0}")]
    Body(BoxError),
    /// No response head within `read_timeout` after the request went out,
    /// or the server took no request bytes for that long.
    #[error("timed out")]
    Timeout,
    /// The connection failed after the request started going out.
    #[error("{0}")]
    Io(io::Error),
    /// The server closed the connection before a complete response head.
    #[error("connection closed before a response")]
    Closed,
    /// The response was malformed.
    #[error("{0}")]
    Invalid(#[from] ParseError),
}

/// Smallest free space a read is given; more when reads fill it.
const READ_MIN: usize = 8 * 1024;
/// Largest single read into the buffer.
const READ_MAX: usize = 64 * 1024;
/// Bodies vigil holds whole up to this size go out in the head's write.
const INLINE_BODY: usize = 16 * 1024;

impl Connection {
    /// Sends `req` and reads the response head. `read_timeout` (nginx's
    /// `proxy_read_timeout`) starts once the request is out; while the body
    /// is still going, the server gets that long between accepted writes.
    /// On [`ExchangeError::Unsent`] the request is left in `req`.
    pub async fn exchange(
        &mut self,
        req: &mut UpstreamRequest,
        read_timeout: Duration,
    ) -> Result<Box<ResponseHead>, ExchangeError> {
        let has_body = !req.body.is_end_stream();
        // A body held whole (in memory or spooled) knows its size: it goes
        // with a Content-Length even if the client sent it chunked, as
        // nginx does with request buffering on.
        let known = req.body.size_hint().exact();
        let framing = h1::request_framing(&req.headers, has_body, known);
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        self.head.clear();
        let fields = (&req.headers, &req.added);
        h1::encode_request_head(&mut self.head, &req.method, target, fields, framing);
        // A body held whole and small goes out with the head, in one
        // write (`req` keeps it until the write succeeded, for a retry).
        let mut inlined = false;
        if let Body::Full(Some(b)) = &req.body {
            if b.len() <= INLINE_BODY {
                self.head.extend_from_slice(b);
                inlined = true;
            }
        }
        let mut stall = StallTimer::new(read_timeout);
        let mut out = Outgoing {
            head: std::mem::take(&mut self.head),
            ..Outgoing::default()
        };
        let written = poll_fn(|cx| self.poll_write_out(cx, &mut out, &mut stall)).await;
        // The scratch buffer goes back to the connection for its next
        // request; what follows the head is queued after it.
        self.head = std::mem::take(&mut out.head);
        out.head_sent = 0;
        match written {
            Ok(()) => {}
            // Nothing went out (the server closed the connection as we
            // picked it, say): the request is intact for another try.
            Err(WriteError::Io(e)) if out.sent == 0 => return Err(ExchangeError::Unsent(e)),
            Err(e) => return Err(e.into_exchange()),
        }
        let body = std::mem::replace(&mut req.body, Body::Empty);
        let method = &req.method;
        let sent_early = if has_body && !inlined {
            let mut body = BodyOut {
                body,
                chunked: framing == RequestFraming::Chunked,
                done: false,
            };
            poll_fn(|cx| self.poll_upload(cx, &mut body, &mut out, &mut stall, method))
                .await
                .map_err(WriteError::into_exchange)?
        } else {
            None
        };
        if let Some(head) = sent_early {
            // The server answered before taking the whole body; what it
            // did not read leaves the connection in an unknown state.
            let mut head = head;
            head.keep_alive = false;
            return Ok(head);
        }
        let deadline = tokio::time::Instant::now() + read_timeout;
        poll_fn(|cx| match self.poll_head(cx, method) {
            Poll::Ready(head) => Poll::Ready(head),
            Poll::Pending if self.head_timer.expired(cx, deadline) => {
                Poll::Ready(Err(ExchangeError::Timeout))
            }
            Poll::Pending => Poll::Pending,
        })
        .await
    }

    /// Writes what `out` holds.
    fn poll_write_out(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Outgoing,
        stall: &mut StallTimer,
    ) -> Poll<Result<(), WriteError>> {
        while !out.is_empty() {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = out.slices(&mut slices);
            match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(WriteError::Io(io::ErrorKind::WriteZero.into())));
                }
                Poll::Ready(Ok(n)) => {
                    stall.progress();
                    out.advance(n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(WriteError::Io(e))),
                Poll::Pending => {
                    if stall.expired(cx) {
                        return Poll::Ready(Err(WriteError::Stalled));
                    }
                    return Poll::Pending;
                }
            }
        }
        Pin::new(&mut self.io)
            .poll_flush(cx)
            .map_err(WriteError::Io)
    }

    /// Streams the request body while watching for an early response.
    /// `Some(head)`: the server answered before the body was all sent.
    fn poll_upload(
        &mut self,
        cx: &mut Context<'_>,
        upload: &mut BodyOut,
        out: &mut Outgoing,
        stall: &mut StallTimer,
        method: &Method,
    ) -> Poll<Result<Option<Box<ResponseHead>>, WriteError>> {
        match self.poll_head(cx, method) {
            Poll::Ready(Ok(head)) => return Poll::Ready(Ok(Some(head))),
            // A closed read side may still take the body; the error, if
            // any, shows on the write side or when the head is awaited.
            Poll::Ready(Err(ExchangeError::Closed)) | Poll::Pending => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(WriteError::Exchange(e))),
        }
        loop {
            ready!(self.poll_write_out(cx, out, stall))?;
            if upload.done {
                return Poll::Ready(Ok(None));
            }
            match Pin::new(&mut upload.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers are not relayed
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if upload.chunked {
                        out.push_size_line(data.len());
                        out.push(data);
                        out.push(Bytes::from_static(b"\r\n"));
                    } else {
                        out.push(data);
                    }
                }
                Poll::Ready(None) => {
                    upload.done = true;
                    if upload.chunked {
                        out.push(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(WriteError::Body(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads until a response head is complete.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
    ) -> Poll<Result<Box<ResponseHead>, ExchangeError>> {
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = h1::parse_response(&mut self.buf, method)? {
                    return Poll::Ready(Ok(head));
                }
            }
            match ready!(self.poll_fill(cx, READ_MIN)) {
                Ok(0) => return Poll::Ready(Err(ExchangeError::Closed)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(ExchangeError::Io(e))),
            }
        }
    }

    /// One read into the buffer, with at least `room` bytes free.
    fn poll_fill(&mut self, cx: &mut Context<'_>, room: usize) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < room / 2 {
            self.buf.reserve(room);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

/// The request body on its way out.
struct BodyOut {
    body: Body,
    chunked: bool,
    done: bool,
}

/// What is queued for writing: the request head (the connection's scratch
/// buffer, lent for the exchange), then chunk lines and data, written with
/// one vectored write where the socket takes them.
#[derive(Default)]
struct Outgoing {
    head: Vec<u8>,
    /// Bytes of `head` already written.
    head_sent: usize,
    queue: VecDeque<Run>,
    /// Bytes accepted by the socket so far.
    sent: u64,
}

/// A run of bytes queued after the head.
enum Run {
    Data(Bytes),
    /// Kept inline: a chunk's size line allocates nothing.
    SizeLine(h1::ChunkSizeLine),
}

impl Run {
    fn bytes(&self) -> &[u8] {
        match self {
            Run::Data(b) => b,
            Run::SizeLine(line) => line.chunk(),
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Run::Data(b) => b.advance(n),
            Run::SizeLine(line) => line.advance(n),
        }
    }
}

impl Outgoing {
    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.queue.push_back(Run::Data(b));
        }
    }

    /// Queues the line that starts a chunk of `len` bytes.
    fn push_size_line(&mut self, len: usize) {
        self.queue
            .push_back(Run::SizeLine(h1::ChunkSizeLine::new(len)));
    }

    fn is_empty(&self) -> bool {
        self.head_sent == self.head.len() && self.queue.is_empty()
    }

    fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let head = &self.head[self.head_sent..];
        let first = (!head.is_empty()).then_some(head);
        let runs = first.into_iter().chain(self.queue.iter().map(Run::bytes));
        let mut n = 0;
        for (slot, run) in dst.iter_mut().zip(runs) {
            *slot = IoSlice::new(run);
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut n: usize) {
        self.sent += n as u64;
        let head_left = self.head.len() - self.head_sent;
        let from_head = n.min(head_left);
        self.head_sent += from_head;
        n -= from_head;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            let len = front.bytes().len();
            if n < len {
                front.advance(n);
                return;
            }
            n -= len;
            self.queue.pop_front();
        }
    }
}

/// Why writing the request stopped.
enum WriteError {
    Io(io::Error),
    /// The server took nothing for `read_timeout`.
    Stalled,
    Body(BoxError),
    Exchange(ExchangeError),
}

impl WriteError {
    fn into_exchange(self) -> ExchangeError {
        match self {
            WriteError::Io(e) => ExchangeError::Io(e),
            WriteError::Stalled => ExchangeError::Timeout,
            WriteError::Body(e) => ExchangeError::Body(e),
            WriteError::Exchange(e) => e,
        }
    }
}

/// An upstream response body. It enforces the read timeout between
/// chunks, and when the body has been read to its end on a keep-alive
/// connection, the connection goes back to the peer's idle cache.
pub struct UpstreamBody {
    conn: Option<Box<Connection>>,
    state: BodyState,
    keep_alive: bool,
    in_flight: Option<InFlight>,
    /// `read_timeout` between reads.
    timer: StallTimer,
    /// Free space asked of the next read (grows while reads fill it).
    read_size: usize,
}

enum BodyState {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

/// The upstream went quiet for longer than `read_timeout` mid-body.
#[derive(Debug, thiserror::Error)]
#[error("upstream read timed out after {0:?}")]
pub struct ReadTimeout(pub Duration);

/// The upstream broke the body's framing or closed early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upstream closed the connection mid-body")]
    Incomplete,
    #[error("upstream body: {0}")]
    Io(io::Error),
    #[error("upstream body: {0}")]
    Invalid(ParseError),
}

impl UpstreamBody {
    /// The body of a response with `head`'s framing (not `Upgrade`). With
    /// `in_flight`, the connection goes back to that peer's idle cache at
    /// the end; without, it is closed.
    pub fn new(
        conn: Box<Connection>,
        head: &ResponseHead,
        in_flight: Option<InFlight>,
        read_timeout: Duration,
    ) -> Self {
        let state = match head.framing {
            Framing::Empty | Framing::Upgrade => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::Chunked(ChunkedDecoder::default()),
            Framing::UntilClose => BodyState::UntilClose,
        };
        let mut body = Self {
            conn: Some(conn),
            state,
            keep_alive: head.keep_alive,
            in_flight,
            timer: StallTimer::new(read_timeout),
            read_size: READ_MIN,
        };
        if matches!(body.state, BodyState::Done) {
            body.finish();
        }
        body
    }

    /// The response is complete: recycle the connection when it may carry
    /// another request (keep-alive, nothing unasked in the buffer).
    fn finish(&mut self) {
        self.state = BodyState::Done;
        if let (Some(conn), Some(in_flight)) = (self.conn.take(), self.in_flight.take()) {
            if self.keep_alive && conn.buf.is_empty() {
                in_flight.peer().idle.put(conn, Instant::now());
            }
        }
    }

    /// A broken connection is never reused.
    fn fail(&mut self, e: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = BodyState::Done;
        self.conn = None;
        self.in_flight = None;
        Poll::Ready(Some(Err(e)))
    }

    /// Takes up to `limit` buffered bytes, reading when none are buffered.
    /// `Ok(None)`: the server closed the connection.
    fn poll_bytes(&mut self, cx: &mut Context<'_>, limit: u64) -> Poll<io::Result<Option<Bytes>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(None));
        };
        if conn.buf.is_empty() {
            match conn.poll_fill(cx, self.read_size) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(n)) => {
                    if n >= self.read_size {
                        self.read_size = (self.read_size * 2).min(READ_MAX);
                    }
                }
            }
        }
        let n = (conn.buf.len() as u64).min(limit) as usize;
        Poll::Ready(Ok(Some(conn.buf.split_to(n).freeze())))
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
        let polled = match &mut this.state {
            BodyState::Done => return Poll::Ready(None),
            BodyState::Length(remaining) => {
                let remaining = *remaining;
                match this.poll_bytes(cx, remaining) {
                    Poll::Ready(Ok(Some(data))) => {
                        let left = remaining - data.len() as u64;
                        this.state = BodyState::Length(left);
                        if left == 0 {
                            this.finish();
                        }
                        Poll::Ready(Ok(Some(data)))
                    }
                    Poll::Ready(Ok(None)) => return this.fail(BodyError::Incomplete.into()),
                    other => other,
                }
            }
            BodyState::UntilClose => match this.poll_bytes(cx, u64::MAX) {
                Poll::Ready(Ok(None)) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                other => other,
            },
            BodyState::Chunked(_) => loop {
                let (Some(conn), BodyState::Chunked(decoder)) =
                    (this.conn.as_mut(), &mut this.state)
                else {
                    return Poll::Ready(None);
                };
                match decoder.decode(&mut conn.buf) {
                    Err(e) => return this.fail(BodyError::Invalid(e).into()),
                    Ok(Chunk::Data(data)) => break Poll::Ready(Ok(Some(data))),
                    Ok(Chunk::End) => {
                        this.timer.progress();
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Chunk::NeedMore) => {}
                }
                match conn.poll_fill(cx, this.read_size) {
                    Poll::Pending => break Poll::Pending,
                    Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                    Poll::Ready(Ok(0)) => return this.fail(BodyError::Incomplete.into()),
                    Poll::Ready(Ok(_)) => this.timer.progress(),
                }
            },
        };
        match polled {
            Poll::Ready(Ok(Some(data))) => {
                this.timer.progress();
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => this.fail(BodyError::Io(e).into()),
            Poll::Pending => {
                if this.timer.expired(cx) {
                    let timeout = this.timer.timeout();
                    return this.fail(ReadTimeout(timeout).into());
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, BodyState::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            BodyState::Done => SizeHint::with_exact(0),
            BodyState::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes `step` bytes at a time still gets every byte,
    /// in order, across the head, size lines and data.
    #[test]
    fn outgoing_writes_in_any_pieces() {
        let data = Bytes::from_static(b"abcdefghijklmnopqrstuvwxyz");
        let expected = b"HEAD1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";
        for step in 1..=expected.len() {
            let mut out = Outgoing {
                head: b"HEAD".to_vec(),
                ..Outgoing::default()
            };
            out.push_size_line(data.len());
            out.push(data.clone());
            out.push(Bytes::from_static(b"\r\n"));
            out.push(Bytes::from_static(b"0\r\n\r\n"));
            let mut written = Vec::new();
            while !out.is_empty() {
                let mut slices = [IoSlice::new(&[]); 4];
                let n = out.slices(&mut slices);
                let before = written.len();
                for s in &slices[..n] {
                    let take = s.len().min(before + step - written.len());
                    written.extend_from_slice(&s[..take]);
                }
                out.advance(written.len() - before);
            }
            assert_eq!(written, expected, "step {step}");
            assert_eq!(out.sent, expected.len() as u64);
        }
    }
}
