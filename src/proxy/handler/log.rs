//! Phase 5, log: one access-log line and the request metrics, written
//! when the response body ends or is abandoned.

use super::*;

/// What is known about a request when its response head is ready; the
/// metrics and the access log line are written from it once the body is
/// done.
pub(super) struct Finished {
    pub(super) rt: Arc<RuntimeHold>,
    /// Index into `rt`'s servers.
    pub(super) server: usize,
    pub(super) location: Option<usize>,
    pub(super) method: http::Method,
    pub(super) status: StatusCode,
    /// Only when the access log is on.
    pub(super) log: Option<Box<LogDetail>>,
    /// limit_conn counts, given back when the response ends.
    pub(super) _conn_limits: Vec<crate::proxy::edge::limit_conn::ConnGuard>,
}

pub(super) struct LogDetail {
    pub(super) remote: IpAddr,
    pub(super) user: Option<String>,
    pub(super) time: SystemTime,
    pub(super) uri: Uri,
    pub(super) version: Version,
    /// Header values are kept as they came (shares of the request's
    /// buffer, no copy) and read as text when the line is written.
    pub(super) referer: Option<http::HeaderValue>,
    pub(super) user_agent: Option<http::HeaderValue>,
    pub(super) host: Option<RequestHost>,
    pub(super) upstream: crate::proxy::forward::Attempts,
    pub(super) upstream_time: Option<std::time::Duration>,
}

/// A response body that counts what it sends and records the request
/// (metrics, access log) when it ends or is dropped (client gone), as
/// nginx logs after the response, with `$body_bytes_sent` and the full
/// request time.
pub struct LoggedBody {
    pub(super) inner: Body,
    pub(super) bytes: u64,
    pub(super) start: Instant,
    /// Boxed: the body moves a dozen times on its way to the socket (into
    /// the response, `Tracked`, the codec), and unboxed it was 88 bytes
    /// more each time.
    pub(super) record: Option<Box<Finished>>,
}

impl LoggedBody {
    pub(super) fn unlogged(inner: Body) -> Self {
        Self {
            inner,
            bytes: 0,
            start: Instant::now(),
            record: None,
        }
    }

    fn finish(&mut self) {
        let Some(r) = self.record.take() else {
            return;
        };
        let elapsed = self.start.elapsed();
        let server = r.rt.server(r.server);
        let location = r
            .location
            .map_or("", |i| server.locations[i].label.as_str());
        r.rt.request_metrics.record(
            &r.rt.metrics,
            server.index,
            r.location,
            &r.method,
            r.status,
            elapsed,
        );
        let Some(log) = r.log else {
            return;
        };
        r.rt.access_log.write(&Entry {
            remote: log.remote,
            user: log.user.as_deref(),
            time: log.time,
            method: &r.method,
            uri: log.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            version: log.version,
            status: r.status,
            body_bytes: self.bytes,
            referer: log.referer.as_ref().and_then(|v| v.to_str().ok()),
            user_agent: log.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            host: log.host.as_ref().map(RequestHost::as_str),
            request_time: elapsed,
            upstream: &log.upstream,
            upstream_time: log.upstream_time,
            server: &server.label,
            location: (!location.is_empty()).then_some(location),
        });
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => self.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
