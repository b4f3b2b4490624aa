//! Shaping the request for the upstream: headers, target, method rules.

use super::*;

/// Rewrites request headers for the upstream: vigil's forwarding headers
/// (into `added`) when `forwarding` is given, then `proxy_set_header`.
/// Returns the `Upgrade` protocol when the client asked for one.
pub(super) fn prepare_headers(
    headers: &mut HeaderMap,
    added: &mut AddedFields,
    set_headers: Vec<(HeaderName, String)>,
    forwarding: Option<&ClientInfo<'_>>,
) -> Option<HeaderValue> {
    let upgrade = headers::strip_hop_by_hop(headers);
    // hyper's server answers 100-continue itself when the body is first
    // read; the upstream gets the body without being asked.
    if headers::has(headers, &header::EXPECT) {
        headers.remove(header::EXPECT);
    }
    if let Some(client) = forwarding {
        *added = headers::add_forwarding(headers, client);
    }
    for (name, value) in set_headers {
        added.remove(&name);
        if value.is_empty() {
            headers.remove(&name);
        } else if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    upgrade
}

/// The request target for the upstream (origin form).
pub(super) fn upstream_uri(uri: &Uri, pass: &ProxyPass, normalized_path: &str) -> Option<Uri> {
    let Some(replace) = &pass.replace_prefix else {
        let pq = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        return Some(Uri::from(pq));
    };
    // nginx replaces the matched prefix of the *normalized* URI; when the
    // raw path already starts with it (the usual case) keep its encoding.
    let raw = uri.path();
    let rest = if let Some(rest) = raw.strip_prefix(replace.location_prefix.as_str()) {
        rest.to_owned()
    } else {
        let rest = normalized_path.strip_prefix(replace.location_prefix.as_str())?;
        encode_path(rest)
    };
    let mut target = String::with_capacity(replace.with.len() + rest.len() + 16);
    target.push_str(&replace.with);
    target.push_str(&rest);
    if let Some(q) = uri.query() {
        target.push('?');
        target.push_str(q);
    }
    target.parse::<Uri>().ok()
}

/// Percent-encodes what may not appear raw in a path.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'/'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Boxed: the request is ~320 bytes and moves through the retry loop,
/// into each attempt and back out of a failed one (perf: seven copies a
/// request, unboxed); a box makes those moves pointer copies.
pub(super) fn build_request(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    added: AddedFields,
    body: Body,
) -> Box<UpstreamRequest> {
    Box::new(UpstreamRequest {
        method,
        uri,
        headers,
        added,
        body,
    })
}

/// RFC 9110 §9.2.2.
pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// A status listed in `next_upstream`: the attempt failed (nginx counts it
/// for passive health) and the next server may be tried.
pub(super) fn listed_status(n: &NextUpstream, status: StatusCode) -> bool {
    match status.as_u16() {
        500 => n.http_500,
        502 => n.http_502,
        503 => n.http_503,
        504 => n.http_504,
        429 => n.http_429,
        _ => false,
    }
}
