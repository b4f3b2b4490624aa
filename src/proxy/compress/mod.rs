//! On-the-fly compression of responses (nginx's gzip filter, plus brotli
//! and zstd), applied in the handler's decorate step to proxied and
//! static responses alike.
//!
//! # Layout
//!
//! - [`ClientFacts`]: what the request says (Accept-Encoding weights,
//!   HEAD, HTTP version, `Via`, `Authorization`), read before the request
//!   is handed on.
//! - `decide`: pure rules, nginx's order: which responses can be
//!   compressed at all (and so get `Vary: Accept-Encoding`), which coding
//!   the client gets, `gzip_proxied`.
//! - `encoder`: gzip (flate2), brotli, zstd behind one interface.
//! - `body`: the streaming body (bounded memory, flush on pause).

mod body;
mod decide;
mod encoder;

use http::header::{ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, ETAG, VARY};
use http::{HeaderMap, HeaderValue, Response};

use self::body::CompressedBody;
use self::decide::Verdict;
pub(crate) use self::decide::{ClientFacts, negotiate};
use self::encoder::Encoder;
use super::body::Body;
use crate::config::Compression;

/// Compresses `response` when `settings`, the client and the response
/// allow it; otherwise returns it unchanged (with `Vary` when it could
/// have been compressed for another client).
pub(crate) fn apply(
    response: Response<Body>,
    client: &ClientFacts,
    settings: &Compression,
) -> Response<Body> {
    let verdict = decide::decide(
        client,
        settings,
        response.status(),
        response.headers(),
        http_body::Body::is_end_stream(response.body()),
        std::time::SystemTime::now(),
    );
    let (mut parts, body) = response.into_parts();
    let coding = match verdict {
        Verdict::Untouched => return Response::from_parts(parts, body),
        Verdict::Vary => {
            if settings.vary {
                add_vary(&mut parts.headers);
            }
            return Response::from_parts(parts, body);
        }
        Verdict::Compress(coding) => coding,
    };
    let level = match coding {
        crate::proxy::accept_encoding::Coding::Gzip => settings.gzip.map(|l| l as i32),
        crate::proxy::accept_encoding::Coding::Br => settings.brotli.map(|l| l as i32),
        crate::proxy::accept_encoding::Coding::Zstd => settings.zstd,
    };
    let encoder = match level.map(|l| Encoder::new(coding, l)) {
        Some(Ok(e)) => e,
        Some(Err(e)) => {
            tracing::warn!(error = %e, coding = coding.token(), "cannot start an encoder; sending the response as it is");
            return Response::from_parts(parts, body);
        }
        None => return Response::from_parts(parts, body),
    };
    if settings.vary {
        add_vary(&mut parts.headers);
    }
    let headers = &mut parts.headers;
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
    weaken_etag(headers);
    Response::from_parts(parts, Body::stream(CompressedBody::new(body, encoder)))
}

/// nginx's `ngx_http_weak_etag`: the compressed bytes differ from the
/// identity ones, so a strong validator becomes weak (`W/"x"`); a weak one
/// stays; anything else is removed.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(ETAG) else {
        return;
    };
    let bytes = etag.as_bytes();
    if bytes.starts_with(b"W/") {
        return;
    }
    if bytes.first() == Some(&b'"') {
        let mut weak = Vec::with_capacity(bytes.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(bytes);
        if let Ok(v) = HeaderValue::from_bytes(&weak) {
            headers.insert(ETAG, v);
            return;
        }
    }
    headers.remove(ETAG);
}

/// Adds `Accept-Encoding` to `Vary` unless it (or `*`) is there already.
fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_weakened_as_nginx_does() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("\"5f-1a\""));
        weaken_etag(&mut h);
        assert_eq!(h[ETAG], "W/\"5f-1a\"");
        weaken_etag(&mut h);
        assert_eq!(h[ETAG], "W/\"5f-1a\"");
        h.insert(ETAG, HeaderValue::from_static("unquoted"));
        weaken_etag(&mut h);
        assert!(h.get(ETAG).is_none());
        weaken_etag(&mut h);
    }

    #[test]
    fn vary_is_added_once() {
        let mut h = HeaderMap::new();
        add_vary(&mut h);
        add_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Origin, accept-encoding"));
        add_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Origin"));
        add_vary(&mut h);
        let all: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(all, ["Origin", "Accept-Encoding"]);
    }
}
