//! The client's request body on its way to an upstream, with nginx's
//! `client_max_body_size` (413) and `client_body_timeout` (408) enforced
//! while it flows. By default it is read whole first ([`read_whole`]): in
//! memory up to `client_body_buffer_size`, the rest in a temporary file
//! ([`spool`]), as nginx's `proxy_request_buffering on` does; a location
//! with `request_buffering = false` streams it as it comes.
//!
//! The stream also records how the upload went ([`Upload`]), because a
//! failed upstream request must be blamed on the right side: a body the
//! client botched (bad chunked framing, an abort mid-upload, a stall) is
//! the client's fault and never counts against the upstream server
//! (issue 13: two bad chunks used to take a whole pool out).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body as _, Frame, SizeHint};

use super::body::{Body, BoxError};
use super::request_body::RequestBody;
use super::stall_timer::StallTimer;

mod spool;
pub use spool::Spooled;

/// How a client body stream went, shared between the stream (inside the
/// upstream request) and the forwarder: it decides the status after a
/// failed attempt.
#[derive(Debug, Clone, Default)]
pub struct Upload(Arc<UploadState>);

#[derive(Debug, Default)]
struct UploadState {
    /// 0 = still flowing; see [`Upload::outcome`] for the rest.
    outcome: AtomicU8,
}

/// How a request body stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Read to its end.
    Complete,
    /// Over `client_max_body_size`.
    TooLarge,
    /// No data for `client_body_timeout`.
    Timeout,
    /// The framing was broken (a bad chunk size, say).
    Malformed,
    /// The client went away mid-body.
    Aborted,
}

impl BodyOutcome {
    fn code(self) -> u8 {
        match self {
            BodyOutcome::Complete => 1,
            BodyOutcome::TooLarge => 2,
            BodyOutcome::Timeout => 3,
            BodyOutcome::Malformed => 4,
            BodyOutcome::Aborted => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => BodyOutcome::Complete,
            2 => BodyOutcome::TooLarge,
            3 => BodyOutcome::Timeout,
            4 => BodyOutcome::Malformed,
            5 => BodyOutcome::Aborted,
            _ => return None,
        })
    }

    /// The answer when the body, not the upstream, failed the request;
    /// `None` for a complete body. 499 is nginx's "client closed request":
    /// nobody reads it, but the log says what happened.
    pub fn client_fault(self) -> Option<StatusCode> {
        match self {
            BodyOutcome::Complete => None,
            BodyOutcome::TooLarge => Some(StatusCode::PAYLOAD_TOO_LARGE),
            BodyOutcome::Timeout => Some(StatusCode::REQUEST_TIMEOUT),
            BodyOutcome::Malformed => Some(StatusCode::BAD_REQUEST),
            BodyOutcome::Aborted => StatusCode::from_u16(499).ok(),
        }
    }
}

impl Upload {
    /// How the body ended, or `None` while it is still flowing.
    pub fn outcome(&self) -> Option<BodyOutcome> {
        BodyOutcome::from_code(self.0.outcome.load(Ordering::Acquire))
    }

    /// The status to answer if the body failed the request.
    pub fn client_fault(&self) -> Option<StatusCode> {
        self.outcome().and_then(BodyOutcome::client_fault)
    }

    /// Records the first outcome only: a body that failed stays failed.
    fn settle(&self, outcome: BodyOutcome) {
        let _ =
            self.0
                .outcome
                .compare_exchange(0, outcome.code(), Ordering::AcqRel, Ordering::Acquire);
    }
}

/// A streaming request body with a size limit and a read timeout.
pub struct ClientBody {
    inner: RequestBody,
    /// 0 = unlimited.
    limit: u64,
    seen: u64,
    timer: StallTimer,
    upload: Upload,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("request body larger than client_max_body_size ({0} bytes)")]
    TooLarge(u64),
    #[error("client sent no body data for {0:?}")]
    Timeout(Duration),
}

impl ClientBody {
    pub fn new(inner: RequestBody, limit: u64, timeout: Duration) -> (Self, Upload) {
        let upload = Upload::default();
        let body = Self {
            inner,
            limit,
            seen: 0,
            timer: StallTimer::new(timeout),
            upload: upload.clone(),
        };
        if body.inner.is_end_stream() {
            upload.settle(BodyOutcome::Complete);
        }
        (body, upload)
    }
}

/// Blames a body error hyper reported: the client closing early versus
/// sending something unparseable.
fn classify(e: &hyper::Error) -> BodyOutcome {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        BodyOutcome::Aborted
    } else if e.is_timeout() {
        BodyOutcome::Timeout
    } else {
        BodyOutcome::Malformed
    }
}

impl http_body::Body for ClientBody {
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
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if this.limit > 0 && this.seen > this.limit {
                        this.upload.settle(BodyOutcome::TooLarge);
                        return Poll::Ready(Some(
                            Err(ClientBodyError::TooLarge(this.limit).into()),
                        ));
                    }
                }
                if this.inner.is_end_stream() {
                    this.upload.settle(BodyOutcome::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.upload.settle(classify(&e));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.upload.settle(BodyOutcome::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.timer.expired(cx) {
                    this.upload.settle(BodyOutcome::Timeout);
                    let timeout = this.timer.timeout();
                    return Poll::Ready(Some(Err(ClientBodyError::Timeout(timeout).into())));
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

impl Drop for ClientBody {
    /// hyper drops a request body it could not write (the upstream
    /// connection broke): whatever happens next, the body is not flowing
    /// any more, and nobody should wait for it.
    fn drop(&mut self) {
        self.upload.settle(BodyOutcome::Complete);
    }
}

/// A request body held whole, which can be sent as many times as a retry
/// needs.
#[derive(Debug, Clone)]
pub enum HeldBody {
    Memory(Bytes),
    File(Spooled),
}

impl HeldBody {
    /// A fresh body reading it from the start.
    pub fn body(&self) -> Body {
        match self {
            HeldBody::Memory(bytes) => Body::full(bytes.clone()),
            HeldBody::File(file) => Body::stream(file.reader()),
        }
    }
}

/// Reads `body` to its end before any server is involved: a slow client
/// then holds no upstream connection while it uploads (issue 13: 1,052
/// upstream connections for slow uploads where nginx used 2), and the
/// upstream gets the body at memory or disk speed. The first
/// `in_memory` bytes stay in memory; past them the whole body goes to a
/// file in `temp_dir`.
///
/// On failure, the status to answer: the client's fault (400, 408, 413,
/// 499), or 500 when the file cannot be written (logged, as nginx does).
pub async fn read_whole(
    mut body: ClientBody,
    in_memory: usize,
    temp_dir: &std::path::Path,
) -> Result<HeldBody, StatusCode> {
    use http_body_util::BodyExt;
    let mut buf = bytes::BytesMut::new();
    while buf.len() <= in_memory {
        match body.frame().await {
            None => return Ok(HeldBody::Memory(buf.freeze())),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => {
                return Err(body
                    .upload
                    .client_fault()
                    .unwrap_or(StatusCode::BAD_REQUEST));
            }
        }
    }
    let upload = body.upload.clone();
    let rest = PrefixedBody {
        prefix: Some(buf.freeze()),
        rest: body,
    };
    match spool::spool(rest, temp_dir).await {
        Ok(file) => Ok(HeldBody::File(file)),
        Err(spool::SpoolError::Body) => {
            Err(upload.client_fault().unwrap_or(StatusCode::BAD_REQUEST))
        }
        Err(spool::SpoolError::Io(e)) => {
            tracing::error!(dir = %temp_dir.display(), error = %e, "cannot buffer a request body in client_body_temp_path; answering 500");
            Err(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// Bytes already read, then the rest of the client body.
struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: ClientBody,
}

impl http_body::Body for PrefixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        // Upper first: set_lower asserts lower <= upper.
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + extra);
        }
        hint.set_lower(hint.lower() + extra);
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_outcome_sticks() {
        let upload = Upload::default();
        assert_eq!(upload.outcome(), None);
        upload.settle(BodyOutcome::Malformed);
        upload.settle(BodyOutcome::Complete);
        assert_eq!(upload.outcome(), Some(BodyOutcome::Malformed));
        assert_eq!(upload.client_fault(), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn client_faults_map_to_client_statuses() {
        assert_eq!(BodyOutcome::Complete.client_fault(), None);
        assert_eq!(BodyOutcome::TooLarge.client_fault().unwrap(), 413);
        assert_eq!(BodyOutcome::Timeout.client_fault().unwrap(), 408);
        assert_eq!(BodyOutcome::Malformed.client_fault().unwrap(), 400);
        assert_eq!(BodyOutcome::Aborted.client_fault().unwrap(), 499);
    }
}
