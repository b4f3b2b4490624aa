//! The request pipeline, in named phases over one request: the fixed
//! facts in [`RequestCtx`], what is gathered on the way in [`Exchange`].
//!
//! 1. **select server** (here, `handle`): Host / :authority → virtual
//!    server, the real client address, the early request checks;
//! 2. **select location** (`route.rs`): the server's rewrites, the search
//!    (normalized path, nginx precedence);
//! 3. **act** (`route.rs`, with `error_page.rs`): the location's rewrites,
//!    access (allow/deny, auth, limits), then `return`, static files (whose
//!    `try_files` may continue in a named location or re-route) or
//!    `proxy_pass`; internal redirects loop back to 2, and a final error
//!    may be answered from its error page;
//! 4. **decorate** (`decorate.rs`, then compression): add_header, HSTS;
//! 5. **log** (`log.rs`): when the response body has been sent (or
//!    abandoned), one access-log line and the request metrics.
//!
//! Template variables for any phase: `vars.rs`.
//!
//! A request loads the config snapshot once and uses it to the end.

mod decorate;
mod error_page;
mod log;
mod route;
mod vars;

use self::decorate::decorate;
use self::error_page::{Redirected, error_page};
pub use self::log::LoggedBody;
use self::log::{Finished, LogDetail};
use self::route::{route, spend_uri_change};
use self::vars::{RequestVars, VarsEnv};

use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::{Frame, SizeHint};

use crate::config::error_page::{ErrorResponse, ErrorTarget};
use crate::config::map::MapDef;
use crate::config::rewrite::Rewrite;
use crate::config::template::{Captures, Var, Vars};
use crate::config::{Action, HeaderText, Location, ReturnAction, VirtualServer};
use crate::proxy::access_log::Entry;
use crate::proxy::body::{Body, BoxError};
use crate::proxy::compress::{self, ClientFacts};
use crate::proxy::edge::access::EdgeState;
use crate::proxy::forward::{self, ForwardReport, ForwardRequest};
use crate::proxy::headers;
use crate::proxy::headers::ClientInfo;
use crate::proxy::map_values::MapValues;
use crate::proxy::request_body::RequestBody;
use crate::proxy::respond;
use crate::proxy::rewrite::{self, Step, UriState};
use crate::proxy::router::normalize_host;
use crate::proxy::runtime::{Runtime, RuntimeHold};
use crate::proxy::sendfile::SendfileHandle;
use crate::proxy::static_files::{self, Outcome};
use crate::proxy::uri_path::NormalizedPath;

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The address the client connected to (a VIP, say).
    pub local: SocketAddr,
    /// The client's IP as a header value (X-Forwarded-For, X-Real-IP),
    /// made once per connection rather than once per request.
    pub peer_header: http::HeaderValue,
    /// The configured listen address (selects the virtual-host table).
    pub listener: SocketAddr,
    pub tls: bool,
    /// Plain connections: static files may go out with `sendfile` (see
    /// `proxy::sendfile`).
    pub sendfile: Option<SendfileHandle>,
    /// The PROXY protocol header the connection began with, on listeners
    /// that expect one.
    pub proxy_protocol: Option<crate::proxy::proxy_protocol::ProxyHeader>,
}

impl ConnInfo {
    /// The connection's `sendfile` queue, for an HTTP/1 request: HTTP/2
    /// interleaves streams in frames, so its bodies must be real bytes.
    fn sendfile(&self, version: http::Version) -> Option<&SendfileHandle> {
        self.sendfile
            .as_ref()
            .filter(|_| version != http::Version::HTTP_2)
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// URI changes allowed per request, all kinds together: a rewrite that
/// searches the locations again, an internal redirect (try_files, index,
/// a named location) and an error page. nginx's NGX_HTTP_MAX_URI_CHANGES.
const MAX_URI_CHANGES: usize = 10;

/// Handles one request against runtime `rt`.
pub async fn handle(
    rt: Arc<RuntimeHold>,
    conn: &ConnInfo,
    req: Request<RequestBody>,
) -> Response<LoggedBody> {
    let start = Instant::now();
    // vigil's own liveness probe (see `probe`): not routed, logged or
    // counted.
    if crate::proxy::probe::is_probe(req.headers()) {
        let mut r = Response::new(LoggedBody::unlogged(Body::empty()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        return r;
    }
    let (mut parts, body) = req.into_parts();
    if let Err(status) =
        crate::proxy::request_checks::check(&mut parts, rt.config.http.max_header_size)
    {
        // Refused before routing: the connection may be out of step with
        // the client (a framing it cannot parse), so it closes.
        let mut r = respond::status(status);
        r.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        return r.map(LoggedBody::unlogged);
    }
    let original_uri = parts.uri.clone();
    let method = parts.method.clone();
    let version = parts.version;
    let host = RequestHost::of(&parts);
    let client_headers = rt.access_log.enabled().then(|| {
        (
            headers::get(&parts.headers, &header::REFERER).cloned(),
            headers::get(&parts.headers, &header::USER_AGENT).cloned(),
        )
    });

    let server_index = match rt.listeners.get(&conn.listener) {
        Some(hosts) => hosts.select(host.as_ref().map(RequestHost::as_str)),
        // The listener was removed by a reload; its connections are being
        // closed. Tell this client to come back.
        None => {
            let r = respond::status(StatusCode::SERVICE_UNAVAILABLE);
            return r.map(LoggedBody::unlogged);
        }
    };
    // Borrowed, as `rt` itself is handed to the log record at the end:
    // an Arc clone per request is a write to a count both workers share.
    let server = rt.server(server_index);
    // Read before the request is handed on: what compression needs.
    let compress = (server.compression.is_some()
        || server.locations.iter().any(|l| l.compression.is_some()))
    .then(|| ClientFacts::new(&parts));
    // real client: the address behind trusted proxies (set_real_ip_from,
    // X-Forwarded-For / X-Real-IP / PROXY protocol), before anything reads
    // the address.
    let remote = match &server.real_ip {
        Some(real) => crate::proxy::edge::real_ip::client_addr(
            conn.peer.ip(),
            real,
            &parts.headers,
            conn.proxy_protocol.and_then(|h| h.source()),
        ),
        None => conn.peer.ip(),
    };
    // Boxed: only requests whose address was replaced pay for it, and the
    // request future stays small.
    let remote_header =
        (remote != conn.peer.ip()).then(|| Box::new(crate::proxy::headers::addr_header(remote)));
    let mut exchange = Exchange {
        location: None,
        report: ForwardReport::default(),
        compress,
        remote,
        remote_header,
        edge: None,
        map_values: MapValues::new(rt.config.maps.len()),
        uri_changes_left: MAX_URI_CHANGES,
        request_id: std::sync::OnceLock::new(),
    };
    // What an error page's internal redirect needs of the request, kept
    // only where error pages are configured.
    let error_page_request = (!server.error_pages.is_empty()
        || server.locations.iter().any(|l| !l.error_pages.is_empty()))
    .then(|| (parts.method.clone(), parts.headers.clone()));
    // What templated add_header values read (`$http_origin`, a map), kept
    // only where a server or location has one.
    let header_request = server
        .add_header_vars
        .then(|| Box::new(request_head(&parts)));
    let ctx = RequestCtx {
        rt: &rt,
        conn,
        server_index,
        host: host.as_ref().map(RequestHost::as_str),
        original_uri: &original_uri,
    };
    let mut response = route(ctx, &mut exchange, parts, Some(body), None).await;
    if let Some((method, headers)) = error_page_request {
        let request = Redirected {
            method,
            headers,
            version,
        };
        response = Box::pin(error_page(ctx, &mut exchange, response, request)).await;
    }
    let location = exchange.location.map(|i| &server.locations[i]);
    match &header_request {
        Some(head) => {
            let env = VarsEnv {
                conn,
                remote: &exchange.remote,
                server_name: &server.label,
                host: host.as_ref().map(RequestHost::as_str),
                original_uri: &original_uri,
                maps: &rt.config.maps,
                map_values: &exchange.map_values,
                request_id: &exchange.request_id,
            };
            let vars = env.vars(head, head.uri.path(), None);
            decorate(&mut response, server, location, conn.tls, Some(&vars));
        }
        None => decorate(&mut response, server, location, conn.tls, None),
    }
    let compression = match location {
        Some(l) => l.compression.as_deref(),
        None => server.compression.as_deref(),
    };
    if let (Some(settings), Some(client)) = (compression, &exchange.compress) {
        response = compress::apply(response, client, settings);
    }

    let status = response.status();
    let log = client_headers.map(|(referer, user_agent)| {
        Box::new(LogDetail {
            remote: exchange.remote,
            user: exchange.edge.as_mut().and_then(|e| e.user.take()),
            time: SystemTime::now(),
            uri: original_uri,
            version,
            referer,
            user_agent,
            host,
            upstream: std::mem::take(&mut exchange.report.attempts),
            upstream_time: exchange.report.header_time,
        })
    });
    let record = Box::new(Finished {
        rt,
        server: server_index,
        location: exchange.location,
        method,
        status,
        log,
        _conn_limits: exchange
            .edge
            .take()
            .map(|e| e.conn_guards)
            .unwrap_or_default(),
    });
    response.map(|body| LoggedBody {
        inner: body,
        bytes: 0,
        start,
        record: Some(record),
    })
}

/// What every phase of one request reads, fixed once its virtual server
/// is chosen.
#[derive(Clone, Copy)]
struct RequestCtx<'a> {
    rt: &'a Runtime,
    conn: &'a ConnInfo,
    server_index: usize,
    /// The host the client asked for (authority or `Host`).
    host: Option<&'a str>,
    /// The request target as received, before any rewrite.
    original_uri: &'a Uri,
}

/// Per-request facts gathered on the way, for the log and metrics.
struct Exchange {
    /// Index of the location that answered, in the server's list.
    location: Option<usize>,
    report: ForwardReport,
    /// The client's side of compression, when the server compresses.
    compress: Option<ClientFacts>,
    /// The real client address (`$remote_addr`).
    remote: IpAddr,
    /// `remote` as a header value, when it is not the connection's peer.
    remote_header: Option<Box<http::HeaderValue>>,
    /// What the access phase keeps: limit_conn counts, the user name.
    /// Made when a location with edge controls is reached.
    edge: Option<Box<EdgeState>>,
    /// `[map.*]` values, computed when first used.
    map_values: MapValues,
    /// URI changes left before the request is a cycle (500).
    uri_changes_left: usize,
    /// `$request_id`, drawn when first used.
    request_id: std::sync::OnceLock<[u64; 2]>,
}

/// The host the client asked for: the URI authority (HTTP/2, absolute
/// form) wins over `Host` (RFC 9112 §3.2.2). Held as a share
/// of the request's own buffer rather than a copy, as the request is
/// handed on before the host's last use (the access log).
#[derive(Debug, Clone)]
pub(super) enum RequestHost {
    Authority(http::uri::Authority),
    Header(TextValue),
}

/// A header value that was checked to be text when it was taken, so that
/// reading it as `&str` needs no second check: `to_str` looks at every
/// byte, and the host is read several times per request (routing,
/// forwarding, the log; ~400 instructions a request in callgrind).
#[derive(Debug, Clone)]
pub(super) struct TextValue(http::HeaderValue);

impl TextValue {
    fn new(value: &http::HeaderValue) -> Option<Self> {
        value.to_str().ok()?;
        Some(Self(value.clone()))
    }

    fn as_str(&self) -> &str {
        // SAFETY: `new` checked that these bytes are visible ASCII (what
        // `to_str` accepts), hence UTF-8; a `HeaderValue` never changes.
        unsafe { std::str::from_utf8_unchecked(self.0.as_bytes()) }
    }
}

impl RequestHost {
    fn of(parts: &Parts) -> Option<Self> {
        match parts.uri.authority() {
            Some(a) => Some(Self::Authority(a.clone())),
            None => {
                let value = headers::get(&parts.headers, &header::HOST)?;
                TextValue::new(value).map(Self::Header)
            }
        }
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            Self::Authority(a) => a.as_str(),
            Self::Header(v) => v.as_str(),
        }
    }
}

fn content_length(parts: &Parts) -> Option<u64> {
    headers::get(&parts.headers, &header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A copy of the request's method, URI, version and headers (`Parts`
/// itself cannot be cloned: its extensions).
fn request_head(parts: &Parts) -> Parts {
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    head.into_parts().0
}

#[cfg(test)]
mod future_sizes {
    use super::*;
    use crate::proxy::future_size::future_size;

    /// The whole request future is boxed once per request (see
    /// `server::serve_connection`); keep it from growing unnoticed.
    #[test]
    fn request_future_stays_small() {
        let handle = future_size(
            handle as fn(Arc<RuntimeHold>, &'static ConnInfo, Request<RequestBody>) -> _,
        );
        assert!(handle < 6144, "handle future is {handle} bytes");
    }
}

#[cfg(test)]
mod request_host {
    use super::*;

    fn host_of(uri: &str, host: &[u8]) -> Option<String> {
        let req = Request::builder()
            .uri(uri)
            .header(header::HOST, HeaderValue::from_bytes(host).unwrap())
            .body(())
            .unwrap();
        RequestHost::of(&req.into_parts().0).map(|h| h.as_str().to_owned())
    }

    #[test]
    fn the_authority_wins_and_only_text_is_taken() {
        assert_eq!(
            host_of("/", b"shop.test:8080").as_deref(),
            Some("shop.test:8080")
        );
        assert_eq!(
            host_of("http://a.test/", b"b.test").as_deref(),
            Some("a.test")
        );
        assert_eq!(host_of("/", b"caf\xc3\xa9.test"), None, "not visible ASCII");
    }
}
