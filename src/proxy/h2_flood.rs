//! HTTP/2 control-frame flood limits (CVE-2019-9512 "Ping Flood" and
//! CVE-2019-9515 "Settings Flood" shaped). Every PING and SETTINGS frame
//! obliges the server to answer (RFC 9113 §6.7, §6.5.3); the h2 crate
//! answers them all, so a client sending nothing else kept a core busy per
//! few connections (issue 13: 4 connections, 161 % CPU). nginx closes such
//! connections; so does vigil.
//!
//! [`FrameMeter`] watches the bytes the client sends (the HTTP/2 frame
//! headers only, RFC 9113 §4.1: 24-bit length, type, flags, stream id) and
//! gives each connection a budget of non-ACK PING and SETTINGS frames
//! that refills slowly: a burst of [`BURST`], then [`PER_SECOND`] a
//! second. A connection that overdraws is closed. Connections that do not
//! start with the HTTP/2 preface are not looked at any further.
//! [`FloodGuard`] wraps a connection's stream with the meter.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Frames of one kind a connection may send at once.
pub const BURST: f64 = 100.0;
/// Frames of one kind the budget regains per second.
pub const PER_SECOND: f64 = 10.0;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// Which control frame a connection flooded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    Settings,
    Ping,
}

impl Flood {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Flood::Settings => "settings",
            Flood::Ping => "ping",
        }
    }
}

/// Parses the client's byte stream frame by frame (headers only).
#[derive(Debug)]
pub struct FrameMeter {
    state: State,
    settings: Budget,
    ping: Budget,
}

#[derive(Debug)]
enum State {
    /// Matched this many preface bytes so far.
    Preface(usize),
    /// Not HTTP/2: nothing to watch.
    Off,
    /// Collecting a frame header.
    Header {
        buf: [u8; FRAME_HEADER],
        have: usize,
    },
    /// Skipping this many payload bytes.
    Payload(usize),
}

#[derive(Debug)]
struct Budget {
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    fn new() -> Self {
        Self {
            tokens: BURST,
            at: None,
        }
    }

    /// Spends one frame at `now`; false when the budget is overdrawn.
    fn spend(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            let regained = now.saturating_duration_since(at).as_secs_f64() * PER_SECOND;
            self.tokens = (self.tokens + regained).min(BURST);
        }
        self.at = Some(now);
        self.tokens -= 1.0;
        self.tokens >= 0.0
    }
}

impl Default for FrameMeter {
    fn default() -> Self {
        Self {
            state: State::Preface(0),
            settings: Budget::new(),
            ping: Budget::new(),
        }
    }
}

impl FrameMeter {
    /// Feeds bytes the client sent at `now`; `Err` once a budget is
    /// overdrawn.
    pub fn feed(&mut self, mut bytes: &[u8], now: Instant) -> Result<(), Flood> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return Ok(()),
                State::Preface(matched) => {
                    let want = &PREFACE[*matched..];
                    let n = want.len().min(bytes.len());
                    if bytes[..n] != want[..n] {
                        self.state = State::Off;
                        return Ok(());
                    }
                    *matched += n;
                    bytes = &bytes[n..];
                    if *matched == PREFACE.len() {
                        self.state = State::Header {
                            buf: [0; FRAME_HEADER],
                            have: 0,
                        };
                    }
                }
                State::Header { buf, have } => {
                    let n = (FRAME_HEADER - *have).min(bytes.len());
                    buf[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have < FRAME_HEADER {
                        continue;
                    }
                    let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                    let (kind, flags) = (buf[3], buf[4]);
                    if flags & ACK == 0 {
                        match kind {
                            SETTINGS if !self.settings.spend(now) => return Err(Flood::Settings),
                            PING if !self.ping.spend(now) => return Err(Flood::Ping),
                            _ => {}
                        }
                    }
                    self.state = State::Payload(len);
                }
                State::Payload(left) => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.state = State::Header {
                            buf: [0; FRAME_HEADER],
                            have: 0,
                        };
                    }
                }
            }
        }
        // A frame with an empty payload completes with its header.
        if let State::Payload(0) = self.state {
            self.state = State::Header {
                buf: [0; FRAME_HEADER],
                have: 0,
            };
        }
        Ok(())
    }
}

/// A client stream whose incoming bytes pass through a [`FrameMeter`]: a
/// flooding connection's read fails, and hyper closes it.
pub struct FloodGuard<IO> {
    inner: IO,
    meter: FrameMeter,
    /// `vigil_http2_flood_closed_total`.
    closed: prometheus::IntCounterVec,
}

impl<IO> FloodGuard<IO> {
    pub fn new(inner: IO, closed: prometheus::IntCounterVec) -> Self {
        Self {
            inner,
            meter: FrameMeter::default(),
            closed,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FloodGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if matches!(this.meter.state, State::Off) {
                return polled;
            }
            if let Err(flood) = this.meter.feed(&buf.filled()[before..], Instant::now()) {
                this.closed.with_label_values(&[flood.label()]).inc();
                tracing::info!(
                    frame = flood.label(),
                    "HTTP/2 control frame flood; closing the connection"
                );
                return Poll::Ready(Err(io::Error::other("HTTP/2 control frame flood")));
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FloodGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    fn stream(frames: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
        let mut s = PREFACE.to_vec();
        for f in frames {
            s.extend(f);
        }
        s
    }

    #[test]
    fn http1_is_ignored() {
        let mut m = FrameMeter::default();
        let now = Instant::now();
        let junk = frame(PING, 0, &[0; 8]).repeat(1000);
        m.feed(b"GET / HTTP/1.1\r\n", now).unwrap();
        m.feed(&junk, now).unwrap();
        assert!(matches!(m.state, State::Off));
    }

    #[test]
    fn a_ping_flood_is_caught_however_the_bytes_are_split() {
        let bytes = stream((0..200).map(|_| frame(PING, 0, &[7; 8])));
        for split in [1, 5, 9, 17, 4096] {
            let mut m = FrameMeter::default();
            let now = Instant::now();
            let result = bytes.chunks(split).try_for_each(|c| m.feed(c, now));
            assert_eq!(result, Err(Flood::Ping), "split {split}");
        }
    }

    #[test]
    fn settings_flood_is_caught_and_acks_and_data_are_free() {
        let now = Instant::now();
        let mut m = FrameMeter::default();
        // ACKs, DATA, HEADERS with big payloads do not count.
        let free = stream((0..500).flat_map(|_| {
            [
                frame(SETTINGS, ACK, &[]),
                frame(PING, ACK, &[0; 8]),
                frame(0, 0, &[1; 300]),
            ]
        }));
        m.feed(&free, now).unwrap();
        let flood = (0..200)
            .map(|_| frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]))
            .collect::<Vec<_>>()
            .concat();
        assert_eq!(m.feed(&flood, now), Err(Flood::Settings));
    }

    #[test]
    fn a_steady_normal_rate_never_runs_out() {
        let mut m = FrameMeter::default();
        let start = Instant::now();
        m.feed(PREFACE, start).unwrap();
        // Five PINGs a second for a minute: under the refill rate.
        for i in 0..300u64 {
            let at = start + Duration::from_millis(i * 200);
            m.feed(&frame(PING, 0, &[0; 8]), at).unwrap();
        }
    }
}
