//! The response body type every vigil response uses.
//!
//! One enum instead of a boxed trait object per response: the common cases
//! (empty, a small in-memory body) cost no allocation and no dynamic
//! dispatch; streams (files, upstream bodies) are boxed once.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

/// Errors inside body streams (I/O, upstream failures, timeouts).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body.
pub enum Body {
    /// No body (204, 304, HEAD, redirects without text).
    Empty,
    /// A body already in memory; `None` once sent.
    Full(Option<Bytes>),
    /// An upstream response, unboxed: the common proxied case.
    Upstream(super::upstream::exchange::UpstreamBody),
    /// A stream: a file, anything else.
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    pub fn empty() -> Self {
        Body::Empty
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(bytes))
        }
    }

    /// Boxes any body with `Bytes` frames.
    pub fn stream<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        Body::Stream(body.map_err(Into::into).boxed_unsync())
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Body::Empty"),
            Body::Full(b) => write!(f, "Body::Full({:?} bytes)", b.as_ref().map(Bytes::len)),
            Body::Upstream(_) => f.write_str("Body::Upstream"),
            Body::Stream(_) => f.write_str("Body::Stream"),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Upstream(u) => Pin::new(u).poll_frame(cx),
            Body::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Upstream(u) => u.is_end_stream(),
            Body::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Upstream(u) => u.size_hint(),
            Body::Stream(s) => s.size_hint(),
        }
    }
}
