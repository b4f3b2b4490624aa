//! Checks on a request head before it is routed, where hyper accepts more
//! than RFC 9112 / nginx do (issue 13):
//!
//! - **Host** (RFC 9112 §3.2): "A server MUST respond with a 400 (Bad
//!   Request) status code to any HTTP/1.1 request message that lacks a
//!   Host header field and to any request message that contains more than
//!   one Host header field line or a Host header field with an invalid
//!   field value." When the target is in absolute form, "the server MUST
//!   ignore the received Host header field (if any) and instead use the
//!   host information of the request-target" (§3.2.2): the Host is
//!   replaced, so what is routed on is what the upstream sees. HTTP/2
//!   (RFC 9113 §8.3.1): a Host that differs from `:authority` makes the
//!   request malformed.
//! - **Transfer-Encoding** (RFC 9112 §6.1): vigil decodes only `chunked`;
//!   any other coding is 501, as nginx answers, rather than silently
//!   dropping it.
//! - **Request-target length**: over `max_header_size` is 414 (hyper
//!   would say 431, which is about header fields).
//! - **Header fields** over `max_header_size` in total: 431.
//!
//! Pure functions over the request parts; the handler answers the status.

use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{StatusCode, Version};

use crate::proxy::headers;

/// Checks `parts` and makes `Host` agree with the request target; the
/// status to answer when the request is refused.
pub fn check(parts: &mut Parts, max_header_size: usize) -> Result<(), StatusCode> {
    if target_len(parts) > max_header_size {
        return Err(StatusCode::URI_TOO_LONG);
    }
    if fields_len(&parts.headers) > max_header_size {
        return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    if parts.version != Version::HTTP_2 && !transfer_coding_supported(&parts.headers) {
        return Err(StatusCode::NOT_IMPLEMENTED);
    }
    reconcile_host(parts)
}

/// The request-target as the client sent it (origin form: path and query).
fn target_len(parts: &Parts) -> usize {
    if parts.version == Version::HTTP_2 {
        return parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    }
    // Absolute form counts whole (scheme and authority included).
    match parts.uri.authority() {
        Some(_) => parts.uri.to_string().len(),
        None => parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len()),
    }
}

/// Header field bytes as on the wire (`name: value\r\n`).
fn fields_len(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// Only `chunked`, once, is a coding vigil decodes (hyper strips it).
///
/// Loops over bytes rather than `flat_map` over `str::split`: that chain
/// cost ~130 instructions a request even with no such field (callgrind).
fn transfer_coding_supported(headers: &HeaderMap) -> bool {
    let mut only: Option<&[u8]> = None;
    for value in headers::values(headers, &header::TRANSFER_ENCODING) {
        if value.to_str().is_err() {
            // Not text: no coding vigil knows.
            return false;
        }
        // Text is visible ASCII, SP and HTAB: `trim_ascii` takes off
        // exactly the blanks `str::trim` would.
        for coding in value.as_bytes().split(|&b| b == b',') {
            let coding = coding.trim_ascii();
            if !coding.is_empty() && only.replace(coding).is_some() {
                return false;
            }
        }
    }
    only.is_none_or(|c| c.eq_ignore_ascii_case(b"chunked"))
}

/// A Host value is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986
/// §3.2.2): a reg-name (unreserved, pct-encoded, sub-delims) or an IP
/// literal in brackets, then an optional numeric port. No userinfo, no
/// spaces, no path. Empty is allowed (a target without an authority).
fn valid_host(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    let (host, port) = match bytes.iter().rposition(|&b| b == b':') {
        // A colon inside brackets belongs to an IPv6 literal.
        Some(i) if !bytes[i..].contains(&b']') => (&bytes[..i], Some(&bytes[i + 1..])),
        _ => (bytes, None),
    };
    if port.is_some_and(|p| !p.iter().all(u8::is_ascii_digit) || p.len() > 5) {
        return false;
    }
    if let Some(literal) = host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")) {
        return !literal.is_empty()
            && literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    host.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b))
}

fn reconcile_host(parts: &mut Parts) -> Result<(), StatusCode> {
    let (host, more) = {
        let mut hosts = headers::values(&parts.headers, &header::HOST);
        (hosts.next().cloned(), hosts.next().is_some())
    };
    if more {
        return Err(StatusCode::BAD_REQUEST);
    }
    if host.as_ref().is_some_and(|h| !valid_host(h)) {
        return Err(StatusCode::BAD_REQUEST);
    }
    let Some(authority) = parts.uri.authority() else {
        // HTTP/1.0 may omit Host; HTTP/1.1 must send one (§3.2). HTTP/2
        // carries :authority, or is routed to the default server as
        // nginx does.
        if host.is_none() && parts.version == Version::HTTP_11 {
            return Err(StatusCode::BAD_REQUEST);
        }
        return Ok(());
    };
    if authority.as_str().contains('@') {
        return Err(StatusCode::BAD_REQUEST);
    }
    let Ok(value) = HeaderValue::from_str(authority.as_str()) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    if parts.version == Version::HTTP_2 {
        if let Some(h) = &host {
            if !h.as_bytes().eq_ignore_ascii_case(value.as_bytes()) {
                return Err(StatusCode::BAD_REQUEST);
            }
        }
    }
    parts.headers.insert(header::HOST, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(version: Version, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().version(version).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn verdict(version: Version, uri: &str, headers: &[(&str, &str)]) -> Result<Parts, u16> {
        let mut p = parts(version, uri, headers);
        check(&mut p, 8192).map(|()| p).map_err(|s| s.as_u16())
    }

    const H11: Version = Version::HTTP_11;

    #[test]
    fn host_rules_of_rfc_9112() {
        assert!(verdict(H11, "/", &[("host", "a.test")]).is_ok());
        assert!(verdict(H11, "/", &[("host", "a.test:8080")]).is_ok());
        assert!(verdict(H11, "/", &[("host", "[::1]:80")]).is_ok());
        assert_eq!(
            verdict(H11, "/", &[("host", "a.test"), ("host", "b.test")]).unwrap_err(),
            400
        );
        for bad in ["t@evil", "a b", "a/b", "a.test:x"] {
            assert_eq!(
                verdict(H11, "/", &[("host", bad)]).unwrap_err(),
                400,
                "{bad}"
            );
        }
    }

    #[test]
    fn http_1_1_needs_a_host_http_1_0_does_not() {
        assert_eq!(verdict(H11, "/", &[]).unwrap_err(), 400);
        assert!(verdict(Version::HTTP_10, "/", &[]).is_ok());
        // The absolute form carries the host itself.
        let p = verdict(H11, "http://a.test/", &[]).unwrap();
        assert_eq!(p.headers[header::HOST], "a.test");
        assert!(verdict(Version::HTTP_2, "/", &[]).is_ok());
    }

    #[test]
    fn absolute_form_replaces_host() {
        let p = verdict(H11, "http://public.test/x", &[("host", "admin.test")]).unwrap();
        assert_eq!(p.headers[header::HOST], "public.test");
        assert_eq!(p.headers.get_all(header::HOST).iter().count(), 1);
    }

    #[test]
    fn h2_authority_and_host_must_agree() {
        let h2 = Version::HTTP_2;
        let p = verdict(h2, "https://shop.test/x", &[]).unwrap();
        assert_eq!(p.headers[header::HOST], "shop.test");
        assert!(verdict(h2, "https://shop.test/x", &[("host", "SHOP.test")]).is_ok());
        assert_eq!(
            verdict(h2, "https://shop.test/x", &[("host", "admin.test")]).unwrap_err(),
            400
        );
    }

    #[test]
    fn only_chunked_is_a_supported_coding() {
        let host = ("host", "a.test");
        assert!(verdict(H11, "/", &[host, ("transfer-encoding", "chunked")]).is_ok());
        assert!(verdict(H11, "/", &[host, ("transfer-encoding", "Chunked")]).is_ok());
        // Blank list members are not codings.
        assert!(verdict(H11, "/", &[host, ("transfer-encoding", " , chunked ,")]).is_ok());
        for te in ["gzip, chunked", "gzip", "chunked, chunked", "chunked;x=1"] {
            assert_eq!(
                verdict(H11, "/", &[host, ("transfer-encoding", te)]).unwrap_err(),
                501,
                "{te}"
            );
        }
        // Two fields are one list.
        let two = [
            host,
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ];
        assert_eq!(verdict(H11, "/", &two).unwrap_err(), 501);
        let split = [
            host,
            ("transfer-encoding", ""),
            ("transfer-encoding", "chunked"),
        ];
        assert!(verdict(H11, "/", &split).is_ok());
        // A value that is not text names no coding vigil knows.
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_bytes(b"chunked\xff").unwrap(),
        );
        assert!(!transfer_coding_supported(&h));
        assert!(transfer_coding_supported(&HeaderMap::new()));
    }

    #[test]
    fn long_targets_are_414_and_big_fields_431() {
        let long = format!("/{}", "a".repeat(9000));
        assert_eq!(verdict(H11, &long, &[]).unwrap_err(), 414);
        let big = "b".repeat(9000);
        assert_eq!(verdict(H11, "/", &[("x-big", &big)]).unwrap_err(), 431);
    }
}
