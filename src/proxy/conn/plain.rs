//! Plain (non-TLS) connections: HTTP/1 served in rounds, by the own path
//! (`own_h1`, requests without a body) or by hyper (the rest), with
//! the socket parked between them (see [`park`](super::park)), or
//! HTTP/2 with prior knowledge, told apart by the connection's first
//! bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::drive::{Driven, Driver, HeadDeadline, drive};
use super::own_h1;
use super::park::ParkIo;
use super::{ConnControl, ConnService, http1_builder, http2_builder, max_buf_size};
use crate::proxy::h2_flood::FloodGuard;
use crate::proxy::sendfile::SendfileStream;

/// How long an HTTP/1 connection has nothing under way before it gives
/// its buffers back (checked every this often, so between one and two
/// of it). Long enough that a busy keep-alive client (the next
/// request a round trip away) never pays for a new hyper connection;
/// short enough that idle connections, which browsers and pools keep by
/// the thousand, cost a socket each.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(super) async fn serve_plain(
    stream: SendfileStream,
    service: ConnService,
    mut control: Box<ConnControl>,
) {
    let state = service.state.clone();
    let (http2, own_http1, limits) = {
        let rt = service.runtime.load();
        let http = &rt.config.http;
        let limits = own_h1::Limits {
            max_head: max_buf_size(http.max_header_size),
            header_timeout: http.client_header_timeout,
        };
        (http.http2, http.own_http1, limits)
    };
    let timeout = limits.header_timeout;
    let mut io = ParkIo::new(stream, state.clone());
    let mut driver = Driver {
        close_now: control.doomed,
        head: Some(HeadDeadline {
            at: control.accepted + timeout,
            requests: 0,
        }),
        control: &mut control,
        state: &state,
    };
    // When the connection last had something under way: it is closed
    // `client_header_timeout` after, as hyper closes an idle one.
    let mut idle_since = driver.control.accepted;
    let mut first = true;
    loop {
        // Parked: nothing but the socket until the client sends. What
        // the last round left unread (part of a head) waits with it:
        // hyper found no whole request in it.
        let woke = {
            let _parked = Parked::new(&service);
            let readable = std::pin::pin!(readable(io.get_ref()));
            driver.wait_parked(readable, idle_since + timeout).await
        };
        if !woke {
            return;
        }
        // The phases that hold hyper are boxed: the task's own future,
        // which a parked connection keeps, stays the size of the wait.
        if std::mem::take(&mut first) && http2 {
            match Box::pin(sniff_preface(&mut io, &mut driver)).await {
                Some(true) => {
                    Box::pin(serve_h2(io, service, &mut driver)).await;
                    return;
                }
                Some(false) => {}
                None => return,
            }
        }
        if own_http1 {
            match Box::pin(own_h1::serve(
                &mut io,
                &service,
                &mut driver,
                limits,
                PARK_AFTER,
            ))
            .await
            {
                own_h1::Ended::Closed => return,
                own_h1::Ended::Idle => {
                    idle_since = park_with_head(&mut io, &mut driver, timeout);
                    continue;
                }
                // The request at the front is hyper's: a round of it.
                own_h1::Ended::Hyper => {}
            }
        }
        let Some(back) = Box::pin(serve_h1(io, &service, &mut driver)).await else {
            return;
        };
        io = back;
        idle_since = park_with_head(&mut io, &mut driver, timeout);
    }
}

/// A round ended idle: the idle time counts from the parking delay ago.
/// If part of a request head was in, its deadline runs on.
fn park_with_head(
    io: &mut ParkIo<SendfileStream>,
    driver: &mut Driver<'_>,
    timeout: Duration,
) -> Instant {
    let idle_since = Instant::now() - PARK_AFTER;
    if io.has_prefix() && driver.head_pending().is_none() {
        driver.head = Some(HeadDeadline {
            at: idle_since + timeout,
            requests: driver.state.requests(),
        });
    }
    idle_since
}

/// HTTP/2 with prior knowledge, to the end of the connection.
async fn serve_h2(io: ParkIo<SendfileStream>, service: ConnService, driver: &mut Driver<'_>) {
    driver.state.is_h2.store(true, Relaxed);
    let rt = service.runtime.load_full();
    let io = FloodGuard::new(io, rt.metrics.http2_flood_closed.clone());
    let connection = http2_builder(&rt.config.http).serve_connection(TokioIo::new(io), service);
    drop(rt);
    tokio::pin!(connection);
    drive(connection, |c| c.graceful_shutdown(), driver, None).await;
}

/// Serves HTTP/1 requests until the connection ends (`None`) or has been
/// idle for `PARK_AFTER`: then hyper lets go and the socket comes back.
async fn serve_h1(
    io: ParkIo<SendfileStream>,
    service: &ConnService,
    driver: &mut Driver<'_>,
) -> Option<ParkIo<SendfileStream>> {
    // The settings of the runtime current now: a reload applies from a
    // connection's next round.
    let builder = http1_builder(&service.runtime.load().config.http);
    // hyper's connection is Unpin (it boxes what it must pin), so it can
    // be taken apart after being polled.
    let mut connection = builder
        .serve_connection(TokioIo::new(io), service.clone())
        .with_upgrades();
    let driven = drive(
        Pin::new(&mut connection),
        |c| c.graceful_shutdown(),
        driver,
        Some(PARK_AFTER),
    )
    .await;
    if let Driven::Finished = driven {
        return None;
    }
    // Between requests: hyper ends at once when asked to shut down, and
    // the socket comes back. If it does not end at once it was busy after
    // all (a request body the client stalled on): let it finish and close.
    let state = driver.state;
    state.set_parking(true);
    Pin::new(&mut connection).graceful_shutdown();
    let ended = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut connection).poll(cx))).await;
    state.set_parking(false);
    match ended {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => {
            tracing::debug!(error = %e, "connection error");
            return None;
        }
        Poll::Pending => {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection error");
            }
            return None;
        }
    }
    let parts = connection.into_parts()?;
    let mut io = parts.io.into_inner();
    io.unread(&parts.read_buf);
    Some(io)
}

/// Counts a connection in `vigil_connections_parked` while it waits.
struct Parked(prometheus::IntGauge);

impl Parked {
    fn new(service: &ConnService) -> Self {
        let gauge = service.runtime.load().metrics.connections_parked.clone();
        gauge.inc();
        Parked(gauge)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Resolves once the socket has something to read (or is closed).
async fn readable(stream: &SendfileStream) {
    let _ = stream.readable().await;
}

/// Reads the connection's first bytes, as far as they match the HTTP/2
/// preface, and keeps them for hyper: `Some(true)` for HTTP/2 with prior
/// knowledge, `Some(false)` for anything else, `None` if the client went
/// away or stalled past its head deadline.
async fn sniff_preface(io: &mut ParkIo<SendfileStream>, driver: &mut Driver<'_>) -> Option<bool> {
    let deadline = driver.head.map_or_else(Instant::now, |h| h.at);
    let mut buf = [0u8; PREFACE.len()];
    let mut len = 0;
    let verdict = loop {
        let read = tokio::time::timeout_at(deadline, io.get_mut().read(&mut buf[len..])).await;
        match read {
            Ok(Ok(n)) if n > 0 => {
                len += n;
                if buf[..len] != PREFACE[..len] {
                    break Some(false);
                }
                if len == PREFACE.len() {
                    break Some(true);
                }
            }
            // Closed, failed or timed out: a partial request line gets no
            // answer, as hyper gives none to a connection that ends
            // mid-head.
            _ => break None,
        }
    };
    io.unread(&buf[..len]);
    verdict
}
