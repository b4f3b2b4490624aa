//! Response heads for static files: which status, which headers, and the
//! list of body segments. Pure: no I/O, the body is filled in by the caller
//! from memory or from the file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, EXPIRES, LAST_MODIFIED, LOCATION, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use smallvec::{SmallVec, smallvec};

use super::decision::Decision;
use super::file_body::Segment;
use super::validators::Validators;
use crate::config::Expires;
use crate::proxy::accept_encoding::Coding;
use crate::proxy::body::Body;

/// A representation's length in bytes, with its `Content-Length` value
/// rendered once: a cached file keeps its `Size`, so an answer from the
/// cache renders (and allocates) nothing for it.
#[derive(Debug, Clone)]
pub(crate) struct Size {
    bytes: u64,
    header: HeaderValue,
}

impl Size {
    pub fn new(bytes: u64) -> Self {
        Self {
            bytes,
            header: HeaderValue::from(bytes),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// One representation of a resource: the file itself or a sidecar.
#[derive(Debug, Clone)]
pub(crate) struct Representation {
    pub size: Size,
    pub validators: Validators,
    /// The type of the *original* file, also for a `.gz`/`.br` sidecar.
    pub content_type: HeaderValue,
    pub encoding: Option<Coding>,
}

/// A file response before its body is attached.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// What the body of a GET carries; empty for 304/412/416.
    /// Inline: one segment is the common case.
    pub segments: SmallVec<[Segment; 1]>,
}

/// The response head and body plan for `decision` on `repr`.
pub(crate) fn reply(repr: &Representation, decision: &Decision) -> Reply {
    let size = repr.size.bytes();
    let mut headers = HeaderMap::with_capacity(10);
    let validators = |h: &mut HeaderMap| {
        h.insert(LAST_MODIFIED, repr.validators.last_modified.clone());
        h.insert(ETAG, repr.validators.etag.clone());
    };
    let (status, segments) = match decision {
        // §15.4.5: a 304 carries the validators and caching fields a 200
        // would have (ETag, Cache-Control, Expires, Vary; the last three are
        // added by `finish`). Last-Modified is kept, as nginx does.
        Decision::NotModified => {
            validators(&mut headers);
            (StatusCode::NOT_MODIFIED, SmallVec::new())
        }
        Decision::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, SmallVec::new()),
        // §15.5.17: a 416 "SHOULD generate a Content-Range header field
        // specifying the current length of the selected representation".
        Decision::Unsatisfiable => {
            headers.insert(CONTENT_RANGE, header(&format!("bytes */{size}")));
            (StatusCode::RANGE_NOT_SATISFIABLE, SmallVec::new())
        }
        Decision::Full => {
            representation_headers(&mut headers, repr);
            validators(&mut headers);
            headers.insert(CONTENT_LENGTH, repr.size.header.clone());
            let segments = if size == 0 {
                SmallVec::new()
            } else {
                smallvec![Segment::File {
                    offset: 0,
                    len: size,
                }]
            };
            (StatusCode::OK, segments)
        }
        Decision::Partial(range) => {
            representation_headers(&mut headers, repr);
            validators(&mut headers);
            headers.insert(CONTENT_RANGE, header(&range.content_range(size)));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(range.len));
            (
                StatusCode::PARTIAL_CONTENT,
                smallvec![Segment::File {
                    offset: range.start,
                    len: range.len,
                }],
            )
        }
        // §14.6: each part carries its own Content-Type and Content-Range;
        // the parts are delimited as in RFC 2046 §5.1.1. The layout follows
        // nginx (a CRLF before each delimiter, none after the last).
        Decision::Multipart(ranges) => {
            representation_headers(&mut headers, repr);
            validators(&mut headers);
            let boundary = format!("{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..));
            headers.insert(
                CONTENT_TYPE,
                header(&format!("multipart/byteranges; boundary={boundary}")),
            );
            let part_type = repr
                .content_type
                .to_str()
                .unwrap_or("application/octet-stream");
            let mut segments = SmallVec::with_capacity(ranges.len() * 2 + 1);
            for range in ranges {
                let head = format!(
                    "\r\n--{boundary}\r\nContent-Type: {part_type}\r\nContent-Range: {}\r\n\r\n",
                    range.content_range(size)
                );
                segments.push(Segment::Bytes(Bytes::from(head)));
                segments.push(Segment::File {
                    offset: range.start,
                    len: range.len,
                });
            }
            segments.push(Segment::Bytes(Bytes::from(format!(
                "\r\n--{boundary}--\r\n"
            ))));
            let length: u64 = segments.iter().map(Segment::len).sum();
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
            (StatusCode::PARTIAL_CONTENT, segments)
        }
    };
    Reply {
        status,
        headers,
        segments,
    }
}

fn representation_headers(headers: &mut HeaderMap, repr: &Representation) {
    headers.insert(CONTENT_TYPE, repr.content_type.clone());
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(coding) = repr.encoding {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    }
}

/// Turns segments whose file bytes are all in `content` into one buffer.
/// `None` if a segment points past the content (cannot happen for ranges
/// resolved against `content.len()`; checked rather than trusted).
pub(crate) fn from_memory(segments: &[Segment], content: &Bytes) -> Option<Bytes> {
    let slice = |s: &Segment| -> Option<Bytes> {
        match s {
            Segment::Bytes(b) => Some(b.clone()),
            Segment::File { offset, len } => {
                let start = usize::try_from(*offset).ok()?;
                let end = start.checked_add(usize::try_from(*len).ok()?)?;
                (end <= content.len()).then(|| content.slice(start..end))
            }
        }
    };
    match segments {
        [] => Some(Bytes::new()),
        [one] => slice(one),
        many => {
            let total = many.iter().map(Segment::len).sum::<u64>();
            let mut buf = BytesMut::with_capacity(usize::try_from(total).ok()?);
            for s in many {
                buf.extend_from_slice(&slice(s)?);
            }
            Some(buf.freeze())
        }
    }
}

/// Location-level headers, added to every response for an existing file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocationHeaders {
    pub expires: Option<Expires>,
    pub vary_accept_encoding: bool,
}

/// Assembles the response: the reply's head, location headers, the body.
pub(crate) fn finish(
    reply: Reply,
    body: Body,
    location: LocationHeaders,
    now: SystemTime,
) -> Response<Body> {
    let Reply {
        status,
        mut headers,
        ..
    } = reply;
    if location.vary_accept_encoding {
        // §12.5.5: the representation chosen depends on Accept-Encoding,
        // also when it is the identity one, and also on a 304 (§15.4.5).
        headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    add_expires(&mut headers, status, location.expires, now);
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// nginx's `expires` (ngx_http_headers_filter): only on these statuses.
fn add_expires(
    headers: &mut HeaderMap,
    status: StatusCode,
    expires: Option<Expires>,
    now: SystemTime,
) {
    let Some(expires) = expires else { return };
    if !matches!(
        status.as_u16(),
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    ) {
        return;
    }
    let (expires_at, cache_control) = match expires {
        // nginx: "epoch corresponds to the absolute time Thu, 01 Jan 1970
        // 00:00:01 GMT", with Cache-Control: no-cache.
        Expires::Epoch => (
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:01 GMT"),
            HeaderValue::from_static("no-cache"),
        ),
        // nginx: "max sets Expires to Thu, 31 Dec 2037 23:55:55 GMT, and
        // Cache-Control to 10 years".
        Expires::Max => (
            HeaderValue::from_static("Thu, 31 Dec 2037 23:55:55 GMT"),
            HeaderValue::from_static("max-age=315360000"),
        ),
        Expires::After(d) => (
            header(&httpdate::fmt_http_date(
                now.checked_add(d)
                    .unwrap_or(UNIX_EPOCH + Duration::from_secs(2_145_916_555)),
            )),
            header(&format!("max-age={}", d.as_secs())),
        ),
    };
    headers.insert(EXPIRES, expires_at);
    headers.insert(CACHE_CONTROL, cache_control);
}

/// A bare status response (404, 403, 500...). The body is left empty: the
/// handler owns `error_page` and decides what a client sees.
pub(crate) fn status(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// 405 with `Allow` (RFC 9110 §15.5.6: "The origin server MUST generate an
/// Allow header field in a 405 response").
pub(crate) fn method_not_allowed() -> Response<Body> {
    let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// 301 to `location` (already in URI form). A relative reference, which
/// RFC 9110 §10.2.2 allows; nginx's `absolute_redirect on` would build an
/// absolute URL, which needs the scheme and host the handler knows.
pub(crate) fn moved_permanently(
    location: &str,
    headers: LocationHeaders,
    now: SystemTime,
) -> Response<Body> {
    let mut response = status(StatusCode::MOVED_PERMANENTLY);
    response.headers_mut().insert(LOCATION, header(location));
    add_expires(
        response.headers_mut(),
        StatusCode::MOVED_PERMANENTLY,
        headers.expires,
        now,
    );
    response
}

fn header(text: &str) -> HeaderValue {
    // Callers pass digits, dates, tokens and percent-encoded URIs (a raw
    // query string is visible ASCII since it came from a request line).
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::super::range::ByteRange;
    use super::*;

    fn repr(size: u64) -> Representation {
        Representation {
            size: Size::new(size),
            validators: Validators::new(1_700_000_000, size),
            content_type: HeaderValue::from_static("text/plain"),
            encoding: None,
        }
    }

    #[test]
    fn full() {
        let r = reply(&repr(10), &Decision::Full);
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers[CONTENT_LENGTH], "10");
        assert_eq!(r.headers[CONTENT_TYPE], "text/plain");
        assert_eq!(r.headers[ETAG], "\"6553f100-a\"");
        assert_eq!(r.headers[LAST_MODIFIED], "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(r.headers[ACCEPT_RANGES], "bytes");
        assert!(!r.headers.contains_key(CONTENT_ENCODING));
        assert_eq!(r.segments[..], [Segment::File { offset: 0, len: 10 }]);
        assert!(reply(&repr(0), &Decision::Full).segments.is_empty());
    }

    #[test]
    fn encoded_representation() {
        let mut gz = repr(10);
        gz.encoding = Some(Coding::Gzip);
        assert_eq!(
            reply(&gz, &Decision::Full).headers[CONTENT_ENCODING],
            "gzip"
        );
    }

    #[test]
    fn not_modified_and_failures_have_no_body() {
        let r = reply(&repr(10), &Decision::NotModified);
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        assert!(r.headers.contains_key(ETAG) && r.headers.contains_key(LAST_MODIFIED));
        assert!(!r.headers.contains_key(CONTENT_LENGTH));
        assert!(r.segments.is_empty());
        let r = reply(&repr(10), &Decision::PreconditionFailed);
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
        assert!(r.segments.is_empty());
        let r = reply(&repr(10), &Decision::Unsatisfiable);
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(r.headers[CONTENT_RANGE], "bytes */10");
    }

    #[test]
    fn partial() {
        let r = reply(
            &repr(10),
            &Decision::Partial(ByteRange { start: 2, len: 3 }),
        );
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers[CONTENT_RANGE], "bytes 2-4/10");
        assert_eq!(r.headers[CONTENT_LENGTH], "3");
        assert_eq!(r.segments[..], [Segment::File { offset: 2, len: 3 }]);
    }

    #[test]
    fn multipart_body_is_well_formed() {
        let content = Bytes::from_static(b"0123456789");
        let ranges = vec![
            ByteRange { start: 0, len: 2 },
            ByteRange { start: 8, len: 2 },
        ];
        let r = reply(&repr(10), &Decision::Multipart(ranges));
        let ct = r.headers[CONTENT_TYPE].to_str().unwrap().to_owned();
        let boundary = ct.strip_prefix("multipart/byteranges; boundary=").unwrap();
        let body = from_memory(&r.segments, &content).unwrap();
        assert_eq!(r.headers[CONTENT_LENGTH], body.len().to_string().as_str());
        let want = format!(
            "\r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
             \r\n--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\
             \r\n--{boundary}--\r\n"
        );
        assert_eq!(body, want.as_bytes());
    }

    #[test]
    fn from_memory_checks_bounds() {
        let content = Bytes::from_static(b"abc");
        assert_eq!(
            from_memory(&[Segment::File { offset: 1, len: 2 }], &content).unwrap(),
            "bc"
        );
        assert_eq!(
            from_memory(&[Segment::File { offset: 2, len: 2 }], &content),
            None
        );
        assert_eq!(
            from_memory(
                &[Segment::File {
                    offset: u64::MAX,
                    len: 2
                }],
                &content
            ),
            None
        );
        assert_eq!(from_memory(&[], &content).unwrap(), "");
    }

    #[test]
    fn expires() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let headers = |e, status| {
            let mut h = HeaderMap::new();
            add_expires(&mut h, status, Some(e), now);
            (h.get(CACHE_CONTROL).cloned(), h.get(EXPIRES).cloned())
        };
        let week = Expires::After(Duration::from_secs(7 * 86400));
        assert_eq!(
            headers(week, StatusCode::OK),
            (
                Some(HeaderValue::from_static("max-age=604800")),
                Some(HeaderValue::from_static("Tue, 21 Nov 2023 22:13:20 GMT"))
            )
        );
        assert_eq!(
            headers(Expires::Epoch, StatusCode::NOT_MODIFIED).0.unwrap(),
            "no-cache"
        );
        assert_eq!(
            headers(Expires::Epoch, StatusCode::OK).1.unwrap(),
            "Thu, 01 Jan 1970 00:00:01 GMT"
        );
        assert_eq!(
            headers(Expires::Max, StatusCode::PARTIAL_CONTENT)
                .0
                .unwrap(),
            "max-age=315360000"
        );
        assert_eq!(headers(week, StatusCode::NOT_FOUND), (None, None));
        assert_eq!(headers(week, StatusCode::PRECONDITION_FAILED), (None, None));
    }

    #[test]
    fn simple_responses() {
        let r = method_not_allowed();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        let lh = LocationHeaders {
            expires: None,
            vary_accept_encoding: false,
        };
        let r = moved_permanently("/docs/?a=1", lh, SystemTime::now());
        assert_eq!(r.headers()[LOCATION], "/docs/?a=1");
    }
}
