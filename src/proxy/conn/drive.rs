//! Driving one hyper connection to its end, and the close protocol: how a
//! connection is asked to go when the proxy drains, its listener goes
//! away or its local address (a VIP) is given up, without failing a
//! request the client has already sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::Instant;

use super::park::ConnState;
use super::wake_gate::WakeGate;
use super::{ConnControl, FIRST_REQUEST_GRACE, await_first_bytes, unread_bytes};
use crate::proxy::server::Lifecycle;

/// A deadline for the next request head: from accept for the first
/// request (nginx's `client_header_timeout` runs from accept), and for a
/// request whose head was cut by parking. Met once a request past
/// `requests` reaches the service.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeadDeadline {
    pub(super) at: Instant,
    pub(super) requests: u64,
}

/// What a connection task knows besides the hyper connection it drives.
pub(super) struct Driver<'a> {
    pub(super) control: &'a mut ConnControl,
    pub(super) state: &'a ConnState,
    /// Close once what the client sends first is answered.
    pub(super) close_now: bool,
    pub(super) head: Option<HeadDeadline>,
}

/// How [`drive`] ended.
pub(super) enum Driven {
    /// The connection is over (closed, failed, upgraded).
    Finished,
    /// HTTP/1 between requests, with nothing under way for the parking
    /// delay: the caller may take the socket back (see `park`).
    Idle,
}

/// What the loop reacts to besides the connection itself.
enum Event {
    /// Asked to close (see [`Driver::close_requested`]).
    Close,
    /// Nothing that concerns this connection.
    Nothing,
}

impl Driver<'_> {
    /// Waits for a reason to close: the listener stops, this node gives
    /// the local address up, or the lifecycle moves on (HTTP/2 connections
    /// go as soon as draining starts; idle HTTP/1 ones only when closing,
    /// so a client sending on one at that moment is not cut off).
    async fn close_requested(&mut self, local_ip: std::net::IpAddr) -> Event {
        let control = &mut *self.control;
        let close = tokio::select! {
            _ = control.stop.cancelled() => true,
            changed = control.released.changed() => {
                changed.is_ok() && control.released.borrow_and_update().contains(&local_ip)
            }
            changed = control.lifecycle.changed() => match changed {
                Err(_) => true,
                Ok(()) => {
                    let state = *control.lifecycle.borrow_and_update();
                    state == Lifecycle::Closing
                        || (state == Lifecycle::Draining && self.state.is_h2.load(Relaxed))
                }
            },
        };
        if close { Event::Close } else { Event::Nothing }
    }

    /// The head deadline, while no request has met it; a met one is
    /// dropped (after it, an idle connection's own timeout applies).
    pub(super) fn head_pending(&mut self) -> Option<HeadDeadline> {
        if self
            .head
            .is_some_and(|h| self.state.requests() > h.requests)
        {
            self.head = None;
        }
        self.head
    }

    /// The head deadline passed: whether to close (no request came).
    fn head_overdue(&mut self) -> bool {
        let overdue = self.head_pending().is_some();
        self.head = None;
        overdue
    }

    /// Asked to close an HTTP/1 connection with nothing under way: give
    /// the client `FIRST_REQUEST_GRACE` to send what it is about to send,
    /// and answer that (with `Connection: close`) rather than cut it.
    /// Returns whether it sent something.
    pub(super) async fn client_sends_within_grace(&mut self) -> bool {
        if self.control.stop.is_cancelled() {
            return false;
        }
        // Just opened, its first request is likely on the way, and closing
        // now would fail a request the client has not even sent (no client
        // retries that). Between two requests, a client that sends its
        // next one as our FIN arrives sees the connection fail (the
        // keep-alive close race of RFC 9112 §9.6); a busy client's next
        // request comes within the grace and is answered instead.
        await_first_bytes(self.control.fd, FIRST_REQUEST_GRACE).await;
        if unread_bytes(self.control.fd) > 0 {
            self.state.close_after.store(true, Relaxed);
            return true;
        }
        false
    }

    /// Waits while a connection holds no hyper connection (parked): for
    /// the client's next bytes (`true`), or until it is closed, idle too
    /// long (`idle_until`) or asked to go (`false`).
    pub(super) async fn wait_parked<F: Future<Output = ()>>(
        &mut self,
        mut readable: Pin<&mut F>,
        idle_until: Instant,
    ) -> bool {
        let local_ip = self.control.local_ip;
        let until = self
            .head_pending()
            .map_or(idle_until, |h| h.at.min(idle_until));
        loop {
            if std::mem::take(&mut self.close_now) {
                return self.client_sends_within_grace().await;
            }
            tokio::select! {
                () = readable.as_mut() => return true,
                () = tokio::time::sleep_until(until) => {
                    tracing::debug!(peer = %self.control.peer, "idle connection timed out");
                    return false;
                }
                event = self.close_requested(local_ip) => {
                    if let Event::Close = event {
                        self.close_now = true;
                    }
                }
            }
        }
    }
}

/// Serves `connection` until it ends, closing it gracefully when asked
/// to. With `park_after`, returns [`Driven::Idle`] once an HTTP/1
/// connection has had nothing under way for that long.
pub(super) async fn drive<C, E>(
    mut connection: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    d: &mut Driver<'_>,
    park_after: Option<Duration>,
) -> Driven
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let local_ip = d.control.local_ip;
    // Gated (see `wake_gate`): this future is polled at every wake-up of
    // the task, for every read and write of the connection, and only the
    // connection needs to be.
    let head_due = WakeGate::new(tokio::time::sleep_until(
        d.head.map_or_else(Instant::now, |h| h.at),
    ));
    tokio::pin!(head_due);
    let park_after = park_after.unwrap_or(Duration::ZERO);
    let park_due = WakeGate::new(tokio::time::sleep(park_after));
    tokio::pin!(park_due);
    let mut seen = d.state.activity();
    // Only a connection that has served a request parks: a fresh hyper
    // connection that has not (a head coming in slowly) would not end at
    // once when asked to, as hyper counts it busy; its header timeout
    // applies instead.
    let served_before = d.state.requests();
    loop {
        let close = std::mem::take(&mut d.close_now)
            || tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection error");
                    }
                    return Driven::Finished;
                }
                () = head_due.as_mut(), if d.head.is_some() => {
                    if d.head_overdue() {
                        tracing::debug!(peer = %d.control.peer, "no request within client_header_timeout; closing");
                        return Driven::Finished;
                    }
                    false
                }
                () = park_due.as_mut(), if !park_after.is_zero() => {
                    let now = d.state.activity();
                    if now == seen && d.state.is_idle() && d.state.requests() > served_before {
                        return Driven::Idle;
                    }
                    seen = now;
                    park_due.as_mut().changed().reset(Instant::now() + park_after);
                    false
                }
                event = WakeGate::new(d.close_requested(local_ip)) => matches!(event, Event::Close),
            };
        if !close {
            continue;
        }
        // hyper counts a connection whose next request is still in the
        // socket buffer as idle and would close it unread (a reset for the
        // client). Answer that request first, with `Connection: close`.
        if !d.state.is_h2.load(Relaxed) && d.client_sends_within_grace().await {
            continue;
        }
        break;
    }
    graceful(connection.as_mut());
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "connection error during shutdown");
    }
    Driven::Finished
}
