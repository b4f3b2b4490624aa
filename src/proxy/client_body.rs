//! The client's request body on its way to an upstream: streamed, never
//! buffered whole, with nginx's `client_max_body_size` (413) and
//! `client_body_timeout` (408) enforced while it flows.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::body::BoxError;
use super::stall_timer::StallTimer;

/// How a client body stream ended early, seen by the forwarder after the
/// upstream request failed, to answer 413 / 408 instead of 502.
#[derive(Debug, Clone, Default)]
pub struct BodyVerdict(Arc<AtomicU8>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProblem {
    TooLarge,
    Timeout,
}

impl BodyVerdict {
    pub fn problem(&self) -> Option<BodyProblem> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(BodyProblem::TooLarge),
            2 => Some(BodyProblem::Timeout),
            _ => None,
        }
    }

    fn set(&self, p: BodyProblem) {
        let v = match p {
            BodyProblem::TooLarge => 1,
            BodyProblem::Timeout => 2,
        };
        self.0.store(v, Ordering::Relaxed);
    }
}

/// A streaming request body with a size limit and a read timeout.
pub struct ClientBody {
    inner: Incoming,
    /// 0 = unlimited.
    limit: u64,
    seen: u64,
    timer: StallTimer,
    verdict: BodyVerdict,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    #[error("request body larger than client_max_body_size ({0} bytes)")]
    TooLarge(u64),
    #[error("client sent no body data for {0:?}")]
    Timeout(Duration),
}

impl ClientBody {
    pub fn new(inner: Incoming, limit: u64, timeout: Duration) -> (Self, BodyVerdict) {
        let verdict = BodyVerdict::default();
        (
            Self {
                inner,
                limit,
                seen: 0,
                timer: StallTimer::new(timeout),
                verdict: verdict.clone(),
            },
            verdict,
        )
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
                        this.verdict.set(BodyProblem::TooLarge);
                        return Poll::Ready(Some(
                            Err(ClientBodyError::TooLarge(this.limit).into()),
                        ));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.timer.expired(cx) {
                    this.verdict.set(BodyProblem::Timeout);
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
