//! The pure half of the own HTTP/1 path: which request heads it takes
//! (and the `http::Request` built from one), and the response head it
//! writes, by hyper's server rules.
//!
//! Only the plainest requests are taken: a complete head that httparse
//! accepts, without `Content-Length`, `Transfer-Encoding`, `Expect` or
//! `Upgrade`, and not `CONNECT`. Everything else, malformed heads
//! included, is handed to hyper untouched, so its strictness (and its
//! error answers) stay exactly what they were.

use bytes::BytesMut;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri, Version};

use crate::proxy::header_names;
use crate::proxy::request_body::RequestBody;

/// Header fields a head may have to be taken: httparse's array, the
/// limit hyper applies too (`h1_max_headers` default).
const MAX_HEADERS: usize = 100;

/// hyper refuses longer request targets with 414 (`MAX_URI_LEN`).
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// What the front of a read buffer holds.
// Built once per head and matched at once: boxing the request would cost
// an allocation per request to save a move.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Head {
    /// A whole request head this path serves; its bytes are split off
    /// the buffer.
    Taken(Request<RequestBody>, RequestFacts),
    /// Not a whole head yet.
    Partial,
    /// Anything else: hyper's to serve or refuse. The buffer is untouched.
    Hyper,
}

/// What the response head depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestFacts {
    pub version: Version,
    pub head: bool,
    /// hyper's `keep_alive` for the request: HTTP/1.1 unless a
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
}

/// Reads a request head from the front of `buf`.
pub(crate) fn parse_head(buf: &mut BytesMut) -> Head {
    // Uninitialized, as hyper's: 100 fields are 3.2 KB to clear per parse.
    let mut fields =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Hyper,
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Head::Hyper;
    };
    if path.len() > MAX_URI_LEN {
        return Head::Hyper;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Head::Hyper;
    };
    if method == Method::CONNECT {
        return Head::Hyper;
    }
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut keep_alive = version == Version::HTTP_11;
    let mut saw_close = false;
    // Offsets of the values, so they can become slices of one buffer
    // once the head is split off.
    let start = buf.as_ptr() as usize;
    let path_at = path.as_ptr() as usize - start;
    let mut names: smallvec::SmallVec<[(HeaderName, usize, usize); 16]> = smallvec::SmallVec::new();
    for field in req.headers.iter() {
        let Ok(name) = header_names::from_wire(field.name.as_bytes()) else {
            return Head::Hyper;
        };
        match name {
            header::CONTENT_LENGTH
            | header::TRANSFER_ENCODING
            | header::EXPECT
            | header::UPGRADE => return Head::Hyper,
            header::CONNECTION => {
                if saw_close || has_token(field.value, b"close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(field.value, b"keep-alive");
                }
            }
            _ => {}
        }
        let at = field.value.as_ptr() as usize - start;
        names.push((name, at, field.value.len()));
    }
    let path_len = path.len();
    let head = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path_at..path_at + path_len)) else {
        // Not ours after all: give the bytes back in front of the rest.
        let rest = buf.split();
        buf.extend_from_slice(&head);
        buf.extend_from_slice(&rest);
        return Head::Hyper;
    };
    let mut headers = HeaderMap::with_capacity(names.len());
    // Drained in place: moving the inline array into an iterator would
    // copy all of it (a memcpy per request, seen in callgrind).
    for (name, at, len) in names.drain(..) {
        // SAFETY: httparse accepted these bytes as a field value, which is
        // what `HeaderValue` requires (hyper builds its values the same way).
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(at..at + len)) };
        headers.append(name, value);
    }
    let facts = RequestFacts {
        version,
        head: method == Method::HEAD,
        keep_alive,
    };
    let mut request = Request::new(RequestBody::Empty);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Head::Taken(request, facts)
}

/// Whether a comma-separated field value has `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// How a response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body bytes at all (HEAD, 204, 304, or an empty body).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0, length unknown).
    UntilClose,
}

/// What the body is known to be before it is read (hyper's `BodyLength`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodySize {
    /// The body has ended already.
    Ended,
    Known(u64),
    Unknown,
}

/// The response head, as written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub framing: Framing,
    /// The connection closes after this response.
    pub last: bool,
}

/// Why a response cannot be written (hyper's "user header" errors).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadResponse;

/// Writes the response head into `dst` by hyper's server rules, for the
/// request `req`; `keep_alive`: the connection may stay open (the request
/// asks for it and the server is not closing). `date`: the `Date` value,
/// unless the response has one.
pub(crate) fn encode_head(
    dst: &mut Vec<u8>,
    req: RequestFacts,
    keep_alive: bool,
    mut response: http::response::Parts,
    size: BodySize,
    date: &[u8],
) -> Result<Encoded, BadResponse> {
    let mut status = response.status;
    if status.is_informational() {
        // hyper answers a 1xx from the service with a bare 500.
        status = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers.clear();
        return finish_bare(dst, req, keep_alive, status, date);
    }
    fix_connection(&mut response.headers, req.version, keep_alive);
    let mut last = !keep_alive;
    // A reason phrase relayed from the upstream (hyper's extension).
    let reason = response.extensions.get::<hyper::ext::ReasonPhrase>();
    status_line(dst, req.version, status, reason.map(|r| r.as_bytes()));
    let can_chunk =
        !(req.head || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED));
    let can_length = !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let mut framing = None;
    let mut wrote_date = false;
    let mut content_length: Option<u64> = None;
    let mut wrote_transfer = false;
    let mut wrote_connection = false;
    // Fields in the map's order; the values of `connection` and
    // `transfer-encoding` joined on one line where the first one stood,
    // as hyper writes them.
    for (name, value) in response.headers.iter() {
        match *name {
            header::CONTENT_LENGTH => {
                if wrote_transfer {
                    return Err(BadResponse);
                }
                match size {
                    BodySize::Known(len) => {
                        if content_length.is_none() {
                            push_field(dst, b"content-length", value.as_bytes());
                            framing = Some(Framing::Length(len));
                            content_length = Some(len);
                        }
                    }
                    BodySize::Unknown => {
                        let len = parse_length(value.as_bytes()).ok_or(BadResponse)?;
                        match content_length {
                            Some(prev) if prev != len => return Err(BadResponse),
                            Some(_) => {}
                            None => {
                                push_field(dst, b"content-length", value.as_bytes());
                                framing = Some(Framing::Length(len));
                                content_length = Some(len);
                            }
                        }
                    }
                    BodySize::Ended if req.head => {
                        if content_length.is_none() {
                            push_field(dst, b"content-length", value.as_bytes());
                            framing = Some(Framing::Length(0));
                            content_length = Some(0);
                        }
                    }
                    // An empty body: hyper drops the field.
                    BodySize::Ended => {}
                }
            }
            header::TRANSFER_ENCODING => {
                if content_length.is_some() {
                    return Err(BadResponse);
                }
                if req.version == Version::HTTP_10 || !can_chunk || wrote_transfer {
                    continue;
                }
                let all = values(&response.headers, header::TRANSFER_ENCODING);
                let mut joined = all.join(&b", "[..]);
                if !is_chunked(all.last().copied().unwrap_or_default()) {
                    joined.extend_from_slice(b", chunked");
                }
                push_field(dst, b"transfer-encoding", &joined);
                wrote_transfer = true;
                framing = Some(Framing::Chunked);
            }
            header::CONNECTION => {
                if wrote_connection {
                    continue;
                }
                let all = values(&response.headers, header::CONNECTION);
                if all.iter().any(|v| has_token(v, b"close")) {
                    last = true;
                }
                push_field(dst, b"connection", &all.join(&b", "[..]));
                wrote_connection = true;
            }
            header::DATE => {
                wrote_date = true;
                push_field(dst, name.as_str().as_bytes(), value.as_bytes());
            }
            _ => push_field(dst, name.as_str().as_bytes(), value.as_bytes()),
        }
    }
    let framing = match framing {
        Some(f) => f,
        None => match size {
            BodySize::Unknown => {
                if req.version == Version::HTTP_10 || !can_chunk {
                    Framing::UntilClose
                } else {
                    dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Framing::Chunked
                }
            }
            BodySize::Ended | BodySize::Known(0) => {
                if can_length && !req.head {
                    dst.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Empty
            }
            BodySize::Known(len) => {
                if can_length {
                    push_field(
                        dst,
                        b"content-length",
                        itoa::Buffer::new().format(len).as_bytes(),
                    );
                    Framing::Length(len)
                } else {
                    Framing::Empty
                }
            }
        },
    };
    // HEAD, 204 and 304 never carry body bytes, whatever the framing says.
    let framing = if !can_chunk { Framing::Empty } else { framing };
    if !wrote_date {
        push_field(dst, b"date", date);
    }
    dst.extend_from_slice(b"\r\n");
    if framing == Framing::UntilClose {
        last = true;
    }
    Ok(Encoded { framing, last })
}

/// hyper's `enforce_version`: an HTTP/1.0 client that asked to keep the
/// connection hears `keep-alive`; an HTTP/1.1 one that cannot keep it
/// hears `close`.
fn fix_connection(headers: &mut HeaderMap, version: Version, keep_alive: bool) {
    match version {
        Version::HTTP_10 => {
            if keep_alive && !has_keep_alive(headers) {
                headers.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
            }
        }
        _ => {
            if !keep_alive
                && !headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .any(|v| has_token(v.as_bytes(), b"close"))
            {
                headers.append(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
    }
}

/// Every value of `name`, in order.
fn values(headers: &HeaderMap, name: HeaderName) -> Vec<&[u8]> {
    headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect()
}

fn has_keep_alive(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"keep-alive"))
}

fn finish_bare(
    dst: &mut Vec<u8>,
    req: RequestFacts,
    keep_alive: bool,
    status: StatusCode,
    date: &[u8],
) -> Result<Encoded, BadResponse> {
    let mut headers = HeaderMap::new();
    fix_connection(&mut headers, req.version, keep_alive);
    let parts = {
        let mut r = http::Response::new(());
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        r.into_parts().0
    };
    encode_head(dst, req, keep_alive, parts, BodySize::Ended, date)
}

fn status_line(dst: &mut Vec<u8>, version: Version, status: StatusCode, reason: Option<&[u8]>) {
    if version == Version::HTTP_11 && status == StatusCode::OK && reason.is_none() {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    dst.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(
        reason.unwrap_or(status.canonical_reason().unwrap_or("<none>").as_bytes()),
    );
    dst.extend_from_slice(b"\r\n");
}

fn push_field(dst: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    dst.extend_from_slice(name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

/// hyper's `content_length_parse`: digits only, comma-separated repeats
/// of one value allowed.
fn parse_length(value: &[u8]) -> Option<u64> {
    let mut found = None;
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(part).ok()?.parse().ok()?;
        match found {
            Some(prev) if prev != n => return None,
            _ => found = Some(n),
        }
    }
    found
}

/// Whether the last coding of a `Transfer-Encoding` value is `chunked`.
fn is_chunked(value: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
