//! vigil's own HTTP/1 path for the common request: a plain connection's
//! requests without a body are read and answered here, in the
//! connection's task, instead of through hyper's server.
//!
//! Why: hyper's server side (its dispatcher, buffers, per-request timer
//! and service plumbing) was the largest share of vigil's user time per
//! request that nginx does not pay. A/B against the build before, access
//! log on: static 1 KiB −10 % CPU per request (user time −17 %),
//! proxied −3 %.
//!
//! What stays hyper's: anything [`codec::parse_head`] does not take
//! (bodies, `Expect`, upgrades, `CONNECT`, heads httparse or `http`
//! refuse, heads over the size limit). The loop stops at such a head,
//! leaves its bytes unread, and the caller hands the connection to a
//! hyper round, which serves (or refuses) it exactly as before; the
//! connection comes back here once hyper has been idle long enough to
//! park. TLS and HTTP/2 connections are hyper's throughout.
//!
//! The loop is driven by `drive` like a hyper connection: its close
//! protocol, parking and first-head deadline apply unchanged. The
//! response head follows hyper's rules (`codec::encode_head`), body
//! chunks are written as handed over (so `sendfile` placeholders reach
//! the socket wrapper intact), and while a request is being answered the
//! socket is watched for the client going away, as hyper does.

mod codec;

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use self::codec::{BodySize, Framing, Head};
use super::ConnService;
use super::drive::{Driven, Driver, drive};
use super::park::ParkIo;
use crate::proxy::sendfile::SendfileStream;

/// How a run of the own path ended.
pub(super) enum Ended {
    /// The connection is over.
    Closed,
    /// Nothing under way for the parking delay: the socket may park.
    Idle,
    /// A request hyper must serve is at the front of the unread bytes.
    Hyper,
}

/// Limits read from `[http]` when the run starts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// hyper's `max_buf_size`: a head not whole within this many bytes
    /// goes to hyper (which answers 431).
    pub max_head: usize,
    pub header_timeout: Duration,
}

/// Below this `client_header_timeout`, an idle connection's timeout is
/// kept by a timer of its own: parking (one to two `park_after`) would
/// come too late to apply it.
fn idle_needs_timer(limits: Limits, park_after: Duration) -> bool {
    limits.header_timeout < 2 * park_after
}

/// Serves requests on `io` until the connection ends, parks, or needs
/// hyper. Bytes read and not used are put back into `io`.
pub(super) async fn serve(
    io: &mut ParkIo<SendfileStream>,
    service: &ConnService,
    driver: &mut Driver<'_>,
    limits: Limits,
    park_after: Duration,
) -> Ended {
    let closing = AtomicBool::new(false);
    let to_hyper = AtomicBool::new(false);
    let mut buf = BytesMut::new();
    let idle_timer = idle_needs_timer(limits, park_after);
    let driven = {
        let run = std::pin::pin!(run(
            io, &mut buf, service, limits, idle_timer, &closing, &to_hyper
        ));
        drive(
            run,
            |_| closing.store(true, Relaxed),
            driver,
            Some(park_after),
        )
        .await
    };
    io.unread(&buf);
    match driven {
        Driven::Idle => Ended::Idle,
        Driven::Finished if to_hyper.load(Relaxed) => Ended::Hyper,
        Driven::Finished => Ended::Closed,
    }
}

/// Why reading stopped without bytes.
enum Stop {
    Eof,
    Closing,
    TimedOut,
}

/// The request loop. `Ok` when the connection should end or go to hyper
/// (`to_hyper`); `Err` when it failed.
async fn run(
    io: &mut ParkIo<SendfileStream>,
    buf: &mut BytesMut,
    service: &ConnService,
    limits: Limits,
    idle_timer: bool,
    closing: &AtomicBool,
    to_hyper: &AtomicBool,
) -> io::Result<()> {
    let mut out = Vec::new();
    loop {
        // A head. The timer runs only for a head that is coming in slowly
        // (and, with a short client_header_timeout, for an idle wait).
        let mut deadline: Option<Instant> = None;
        let (request, facts) = loop {
            match codec::parse_head(buf) {
                Head::Taken(request, facts) => break (request, facts),
                Head::Hyper => {
                    to_hyper.store(true, Relaxed);
                    return Ok(());
                }
                Head::Partial if buf.len() >= limits.max_head => {
                    to_hyper.store(true, Relaxed);
                    return Ok(());
                }
                Head::Partial => {}
            }
            if deadline.is_none() && (!buf.is_empty() || idle_timer) {
                deadline = Some(Instant::now() + limits.header_timeout);
            }
            match read_more(io, buf, closing, deadline).await? {
                Ok(()) => {}
                Err(Stop::Eof | Stop::Closing) => return Ok(()),
                Err(Stop::TimedOut) => {
                    tracing::debug!("read header from client timeout");
                    return Ok(());
                }
            }
        };
        let service_fut = service.respond(request);
        let Some(Ok(response)) = watch_client(service_fut, io, buf, limits.max_head).await else {
            // The client went away: the request is dropped, as hyper
            // drops the service future.
            return Ok(());
        };
        let (parts, body) = response.into_parts();
        let size = if body.is_end_stream() {
            BodySize::Ended
        } else {
            body.size_hint()
                .exact()
                .map_or(BodySize::Unknown, BodySize::Known)
        };
        out.clear();
        let date = date();
        let Ok(encoded) = codec::encode_head(&mut out, facts, facts.keep_alive, parts, size, &date)
        else {
            tracing::debug!("response head refused (conflicting framing); closing");
            return Ok(());
        };
        write_body(io, &out, body, encoded.framing).await?;
        io.flush().await?;
        if encoded.last {
            let _ = io.shutdown().await;
            return Ok(());
        }
    }
}

/// Reads more into `buf`: `Ok(Ok(()))` when bytes came.
async fn read_more(
    io: &mut ParkIo<SendfileStream>,
    buf: &mut BytesMut,
    closing: &AtomicBool,
    deadline: Option<Instant>,
) -> io::Result<Result<(), Stop>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(8192);
    }
    let read = std::future::poll_fn(|cx| {
        // Asked to close: only between requests (a head under way is
        // finished first, or times out).
        if buf.is_empty() && closing.load(Relaxed) {
            return Poll::Ready(Ok(Err(Stop::Closing)));
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(Err(Stop::Eof))),
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(Ok(()))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    });
    match deadline {
        None => read.await,
        Some(at) => match tokio::time::timeout_at(at, read).await {
            Ok(read) => read,
            Err(_) => Ok(Err(Stop::TimedOut)),
        },
    }
}

/// Runs the service future, watching the socket meanwhile: `None` if the
/// client closed its side first. Bytes that arrive (a pipelined request)
/// stay in `buf`; like hyper, only an empty buffer is watched for the
/// end.
async fn watch_client<F: Future>(
    service_fut: F,
    io: &mut ParkIo<SendfileStream>,
    buf: &mut BytesMut,
    max: usize,
) -> Option<F::Output> {
    let mut service_fut = std::pin::pin!(service_fut);
    let mut watching = true;
    std::future::poll_fn(|cx: &mut Context<'_>| {
        if let Poll::Ready(out) = service_fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if watching && buf.is_empty() {
            if buf.capacity() < 1024 {
                buf.reserve(max.min(8192));
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) | Poll::Pending => {}
            }
            watching = buf.is_empty();
        }
        Poll::Pending
    })
    .await
}

/// Writes the head and the body by `framing`. Body chunks go out as
/// their own slices, never copied; a body that fails, or does not match
/// its declared length, ends the connection. The body is dropped (which
/// logs the request) as soon as it has ended, before its last bytes are
/// written, as hyper does: a client that has its answer finds the
/// request counted.
async fn write_body<B>(
    io: &mut ParkIo<SendfileStream>,
    head: &[u8],
    body: B,
    framing: Framing,
) -> io::Result<()>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut head = Some(head);
    let mut sent: u64 = 0;
    let mut ended = false;
    let mut body = (framing != Framing::Empty).then_some(body);
    while let Some(open) = body.as_mut() {
        let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut *open).poll_frame(cx)).await
        else {
            drop(body.take());
            break;
        };
        let Ok(frame) = frame else {
            return Err(io::Error::other("response body failed"));
        };
        let Ok(data) = frame.into_data() else {
            // Trailers: hyper sends them only when a `Trailer` field
            // announced them, which vigil's responses never do.
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        let last = open.is_end_stream();
        if last {
            drop(body.take());
        }
        let mut size_line = [0u8; 18];
        let mut parts: [&[u8]; 5] = [head.take().unwrap_or_default(), &[], &data, &[], &[]];
        match framing {
            Framing::Chunked => {
                parts[1] = chunk_size_line(&mut size_line, data.len());
                parts[3] = b"\r\n";
                if last {
                    parts[4] = b"0\r\n\r\n";
                }
            }
            Framing::Length(len) if sent > len => {
                return Err(io::Error::other("response body longer than its length"));
            }
            _ => {}
        }
        write_all(io, &parts).await?;
        if last {
            ended = true;
            break;
        }
    }
    let tail: &[u8] = match framing {
        Framing::Chunked if !ended => b"0\r\n\r\n",
        _ => b"",
    };
    if head.is_some() || !tail.is_empty() {
        write_all(io, &[head.unwrap_or_default(), tail]).await?;
    }
    match framing {
        Framing::Length(len) if sent != len => {
            Err(io::Error::other("response body shorter than its length"))
        }
        _ => Ok(()),
    }
}

/// `{len:X}\r\n` in `buf` (uppercase, as hyper writes it).
fn chunk_size_line(buf: &mut [u8; 18], len: usize) -> &[u8] {
    let digits = format_hex(len, &mut buf[..16]);
    let n = digits;
    buf[n] = b'\r';
    buf[n + 1] = b'\n';
    &buf[..n + 2]
}

/// Writes `value` in uppercase hex at the start of `out`; returns the
/// number of digits.
fn format_hex(value: usize, out: &mut [u8]) -> usize {
    let digits = ((usize::BITS - value.max(1).leading_zeros()).div_ceil(4)) as usize;
    for (i, digit) in out[..digits].iter_mut().enumerate() {
        let nibble = (value >> (4 * (digits - 1 - i))) & 0xf;
        *digit = b"0123456789ABCDEF"[nibble];
    }
    digits
}

/// Writes all of `parts`, in as few `writev`s as the socket allows.
async fn write_all(io: &mut ParkIo<SendfileStream>, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: smallvec::SmallVec<[IoSlice<'_>; 5]> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = io.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// The `Date` value, formatted once a second per worker.
fn date() -> [u8; 29] {
    thread_local! {
        static CACHED: std::cell::Cell<(u64, [u8; 29])> = const { std::cell::Cell::new((u64::MAX, [0; 29])) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let (at, value) = cached.get();
        if at == secs {
            return value;
        }
        let mut value = [0u8; 29];
        value.copy_from_slice(httpdate::fmt_http_date(now).as_bytes());
        cached.set((secs, value));
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_hex() {
        let mut buf = [0u8; 18];
        for (len, line) in [
            (1usize, &b"1\r\n"[..]),
            (15, b"F\r\n"),
            (16, b"10\r\n"),
            (1024, b"400\r\n"),
            (0xabcdef, b"ABCDEF\r\n"),
            (usize::MAX, b"FFFFFFFFFFFFFFFF\r\n"),
        ] {
            assert_eq!(chunk_size_line(&mut buf, len), line, "{len}");
        }
    }

    #[test]
    fn the_date_is_an_http_date() {
        let d = date();
        let parsed = httpdate::parse_http_date(std::str::from_utf8(&d).unwrap()).unwrap();
        let age = SystemTime::now().duration_since(parsed).unwrap();
        assert!(age < Duration::from_secs(3), "{age:?}");
    }
}
