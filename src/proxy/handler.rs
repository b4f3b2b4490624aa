//! The request pipeline, in named phases:
//!
//! 1. **route**: pick the virtual server (Host / :authority) and the
//!    location (normalized path, nginx precedence);
//! 2. **act**: the location's action: `return`, static files (whose
//!    `try_files` may continue in a named location or re-route to another
//!    URI), or `proxy_pass` to an upstream pool;
//! 3. **decorate**: add_header, HSTS, compression (`compress`);
//! 4. **log**: when the response body has been sent (or abandoned), one
//!    access-log line and the request metrics.
//!
//! A request loads the config snapshot once and uses it to the end.

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
use hyper::body::Incoming;

use super::access_log::Entry;
use super::body::{Body, BoxError};
use super::compress::{self, ClientFacts};
use super::edge::access::EdgeState;
use super::forward::{self, ForwardReport, ForwardRequest};
use super::headers::ClientInfo;
use super::map_values::MapValues;
use super::respond;
use super::rewrite::{self, Step, UriState};
use super::router::normalize_host;
use super::runtime::Runtime;
use super::sendfile::SendfileHandle;
use super::static_files::{self, Outcome};
use super::uri_path::NormalizedPath;
use crate::config::error_page::{ErrorResponse, ErrorTarget};
use crate::config::map::MapDef;
use crate::config::rewrite::Rewrite;
use crate::config::template::{Captures, Var, Vars};
use crate::config::{Action, HeaderText, Location, ReturnAction, VirtualServer};

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
    pub proxy_protocol: Option<super::proxy_protocol::ProxyHeader>,
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
    rt: Arc<Runtime>,
    conn: &ConnInfo,
    req: Request<Incoming>,
) -> Response<LoggedBody> {
    let start = Instant::now();
    // vigil's own liveness probe (see `probe`): not routed, logged or
    // counted.
    if super::probe::is_probe(req.headers()) {
        let mut r = Response::new(LoggedBody::unlogged(Body::empty()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        return r;
    }
    let (mut parts, body) = req.into_parts();
    if let Err(status) = super::request_checks::check(&mut parts, rt.config.http.max_header_size) {
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
    let host: Option<String> = request_host(&parts).map(str::to_owned);
    let client_headers = rt.access_log.enabled().then(|| {
        (
            header_string(&parts.headers, &header::REFERER),
            header_string(&parts.headers, &header::USER_AGENT),
        )
    });

    let server_index = match rt.listeners.get(&conn.listener) {
        Some(hosts) => hosts.select(host.as_deref()),
        // The listener was removed by a reload; its connections are being
        // closed. Tell this client to come back.
        None => {
            let r = respond::status(StatusCode::SERVICE_UNAVAILABLE);
            return r.map(LoggedBody::unlogged);
        }
    };
    let server = rt.server(server_index).clone();
    // Read before the request is handed on: what compression needs.
    let compress = (server.compression.is_some()
        || server.locations.iter().any(|l| l.compression.is_some()))
    .then(|| ClientFacts::new(&parts));
    // real client: the address behind trusted proxies (set_real_ip_from,
    // X-Forwarded-For / X-Real-IP / PROXY protocol), before anything reads
    // the address.
    let remote = match &server.real_ip {
        Some(real) => super::edge::real_ip::client_addr(
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
        (remote != conn.peer.ip()).then(|| Box::new(super::headers::addr_header(remote)));
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
    let mut response = route(
        &rt,
        server_index,
        conn,
        parts,
        Some(body),
        host.as_deref(),
        &original_uri,
        &mut exchange,
        None,
    )
    .await;
    if let Some((method, headers)) = error_page_request {
        let request = Redirected {
            method,
            headers,
            version,
        };
        response = Box::pin(error_page(
            &rt,
            server_index,
            conn,
            response,
            request,
            host.as_deref(),
            &original_uri,
            &mut exchange,
        ))
        .await;
    }
    let location = exchange.location.map(|i| &server.locations[i]);
    match &header_request {
        Some(head) => {
            let env = VarsEnv {
                conn,
                remote: &exchange.remote,
                server_name: &server.label,
                host: host.as_deref(),
                original_uri: &original_uri,
                maps: &rt.config.maps,
                map_values: &exchange.map_values,
                request_id: &exchange.request_id,
            };
            let vars = env.vars(head, head.uri.path(), None);
            decorate(&mut response, &server, location, conn.tls, Some(&vars));
        }
        None => decorate(&mut response, &server, location, conn.tls, None),
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
    let record = Finished {
        rt: rt.clone(),
        server,
        location: exchange.location,
        method,
        status,
        log,
        _conn_limits: exchange
            .edge
            .take()
            .map(|e| e.conn_guards)
            .unwrap_or_default(),
    };
    response.map(|body| LoggedBody {
        inner: body,
        bytes: 0,
        start,
        record: Some(record),
    })
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
    request_id: std::sync::OnceLock<u128>,
}

/// Routes the request (rewrites, location search, the location's action)
/// and answers it. `named`: start in this named location (an error page's
/// `@name`), skipping the server's rewrites and the search.
#[allow(clippy::too_many_arguments)]
async fn route(
    rt: &Runtime,
    server_index: usize,
    conn: &ConnInfo,
    mut parts: Parts,
    mut body: Option<Incoming>,
    host: Option<&str>,
    original_uri: &Uri,
    exchange: &mut Exchange,
    named: Option<usize>,
) -> Response<Body> {
    let server = rt.server(server_index);
    if let Some(redirect) = &server.redirect_https {
        let host = host
            .map(normalize_host)
            .unwrap_or_else(|| server.label.clone().into());
        let port = if redirect.port == 443 {
            String::new()
        } else {
            format!(":{}", redirect.port)
        };
        let target = format!(
            "https://{host}{port}{}",
            original_uri.path_and_query().map_or("/", |pq| pq.as_str())
        );
        return respond::redirect(StatusCode::MOVED_PERMANENTLY, &target);
    }
    let mut path = match NormalizedPath::parse(parts.uri.path()) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(uri = %parts.uri, error = %e, "bad request path");
            return respond::status(StatusCode::BAD_REQUEST);
        }
    };
    let env = VarsEnv {
        conn,
        remote: &exchange.remote,
        server_name: &server.label,
        host,
        original_uri,
        maps: &rt.config.maps,
        map_values: &exchange.map_values,
        request_id: &exchange.request_id,
    };
    let table = &rt.locations[server_index];
    let mut index = match named {
        Some(i) => i,
        None => {
            // Server-level rules run once, before the search; `last` and
            // `break` just end them (nginx's server rewrite phase).
            if !server.rewrites.is_empty() {
                if let Err(r) = rewrite_uri(&server.rewrites, &mut parts, &mut path, &env) {
                    return *r;
                }
            }
            match table.find(path.as_str()) {
                Some(i) => i,
                None => return respond::status(StatusCode::NOT_FOUND),
            }
        }
    };
    // The URI was rewritten: proxy_pass sends it whole (nginx ignores
    // proxy_pass's own URI part then).
    let mut rewritten = false;
    loop {
        let location = &server.locations[index];
        // Every internal redirect spends a URI change: none spent means
        // the client asked for this location itself.
        if location.internal && exchange.uri_changes_left == MAX_URI_CHANGES {
            return respond::status(StatusCode::NOT_FOUND);
        }
        exchange.location = Some(index);
        if !location.rewrites.is_empty() {
            let (step, changed) = match rewrite_uri(&location.rewrites, &mut parts, &mut path, &env)
            {
                Ok(done) => done,
                Err(r) => return *r,
            };
            rewritten |= changed;
            // `last`, or rules that changed the URI and ran out: search
            // again; `break` stays here.
            if step == Step::Last || (step == Step::Done && changed) {
                if !spend_uri_change(&mut exchange.uri_changes_left, original_uri) {
                    return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                }
                match table.find(path.as_str()) {
                    Some(i) => index = i,
                    None => return respond::status(StatusCode::NOT_FOUND),
                }
                continue;
            }
        }
        let captures = location_captures(location, path.as_str());
        // access: limit_req, limit_conn, allow/deny, auth_basic. Boxed,
        // with the variables it renders keys from, and only when the
        // location has any, so the request future stays small.
        if !location.edge.is_empty() {
            let state = exchange.edge.get_or_insert_default();
            let remote = exchange.remote;
            let (parts, path, captures) = (&parts, path.as_str(), captures.as_ref());
            let checked = Box::pin(async move {
                let vars = env.vars(parts, path, captures);
                super::edge::access::access(
                    &location.edge,
                    &rt.edge,
                    state,
                    remote,
                    &parts.headers,
                    &vars,
                )
                .await
            })
            .await;
            if let ControlFlow::Break(r) = checked {
                return r;
            }
        }
        let vars = env.vars(&parts, path.as_str(), captures.as_ref());
        match &location.action {
            Action::Return(r) => return return_response(r, &vars),
            Action::Static(site) => {
                // Files that will be compressed on the way out must pass
                // through user space.
                let compressed = location.compression.as_deref().and_then(|c| {
                    let client = exchange.compress.as_ref()?;
                    compress::negotiate(&client.weights, c).map(|_| &c.types)
                });
                let sendfile = conn.sendfile(parts.version);
                let outcome = static_files::serve(site, &parts, &path, sendfile, compressed).await;
                if !matches!(outcome, Outcome::Response(_))
                    && !spend_uri_change(&mut exchange.uri_changes_left, original_uri)
                {
                    return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                }
                match outcome {
                    Outcome::Response(r) => return r,
                    Outcome::Named(name) => match table.named(&name) {
                        Some(i) => index = i,
                        None => return respond::status(StatusCode::INTERNAL_SERVER_ERROR),
                    },
                    Outcome::Redirect(target) => {
                        let Ok(uri) = target.parse::<Uri>() else {
                            return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                        };
                        let Ok(p) = NormalizedPath::parse(uri.path()) else {
                            return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                        };
                        // The target carries exactly the query nginx would
                        // keep (an index redirect keeps the request's; a
                        // try_files URI only what its template says).
                        parts.uri = uri;
                        path = p;
                        match table.find(path.as_str()) {
                            Some(i) => index = i,
                            None => return respond::status(StatusCode::NOT_FOUND),
                        }
                    }
                }
            }
            Action::Proxy(pass) => {
                let Some(pool) = rt.pools.get(&pass.upstream) else {
                    return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
                };
                let limit = location
                    .client_max_body_size
                    .or(server.client_max_body_size)
                    .unwrap_or(rt.config.http.client_max_body_size);
                if limit > 0 && content_length(&parts).is_some_and(|n| n > limit) {
                    return respond::status(StatusCode::PAYLOAD_TOO_LARGE);
                }
                let vars = RequestVars {
                    proxy_host: &pool.config.name,
                    ..vars
                };
                let set_headers = pass
                    .set_headers
                    .iter()
                    .map(|(name, t)| (name.clone(), t.render(&vars)))
                    .collect();
                let hash_key = match &pool.config.balance {
                    crate::config::BalanceMethod::Hash(t) => Some(t.render(&vars)),
                    _ => None,
                };
                let client = ClientInfo {
                    addr: exchange.remote,
                    addr_header: exchange
                        .remote_header
                        .as_deref()
                        .unwrap_or(&conn.peer_header),
                    scheme: conn.scheme(),
                    host,
                };
                let unprefixed;
                let pass = if rewritten && pass.replace_prefix.is_some() {
                    unprefixed = crate::config::ProxyPass {
                        replace_prefix: None,
                        ..pass.clone()
                    };
                    &unprefixed
                } else {
                    pass
                };
                return forward::forward(
                    pool,
                    pass,
                    ForwardRequest {
                        parts,
                        body: body.take(),
                        client,
                        normalized_path: path.as_str(),
                        set_headers,
                        hash_key,
                        max_body_size: limit,
                        body_timeout: rt.config.http.client_body_timeout,
                        metrics: &rt.metrics,
                    },
                    &mut exchange.report,
                )
                .await;
            }
        }
    }
}

/// Spends one of the request's URI changes; `false`, with nginx's log
/// line, when none is left (the request then gets 500).
fn spend_uri_change(left: &mut usize, original_uri: &Uri) -> bool {
    if *left == 0 {
        tracing::error!(
            uri = %original_uri,
            "rewrite or internal redirection cycle while processing the request; answering 500"
        );
        return false;
    }
    *left -= 1;
    true
}

/// Runs rewrite `rules` over the request's URI, updating `parts.uri` and
/// `path` when they change it. A redirect is the response (`Err`), and so
/// is a 500 for a rewritten URI that cannot be used.
fn rewrite_uri(
    rules: &[Rewrite],
    parts: &mut Parts,
    path: &mut NormalizedPath,
    env: &VarsEnv<'_>,
) -> Result<(Step, bool), Box<Response<Body>>> {
    let mut state = UriState {
        path: path.as_str().to_owned(),
        args: parts
            .uri
            .query()
            .filter(|q| !q.is_empty())
            .map(str::to_owned),
        changed: false,
    };
    let step = {
        let base = env.vars(parts, path.as_str(), None);
        rewrite::run(rules, &mut state, &mut |t, captures, st| {
            t.render(&RequestVars {
                path: &st.path,
                query: st.args.as_deref(),
                captures: Some(captures),
                ..base
            })
        })
    };
    if let Step::Redirect { status, location } = &step {
        return Err(Box::new(respond::redirect(*status, location)));
    }
    if state.changed {
        let raw = forward::encode_path(&state.path);
        let target = match &state.args {
            Some(a) => format!("{raw}?{}", rewrite::escape_query(a)),
            None => raw.clone(),
        };
        match (target.parse::<Uri>(), NormalizedPath::parse(&raw)) {
            (Ok(uri), Ok(p)) => {
                parts.uri = uri;
                *path = p;
            }
            _ => {
                tracing::warn!(uri = %target, "a rewrite made a URI that cannot be used");
                return Err(Box::new(respond::status(StatusCode::INTERNAL_SERVER_ERROR)));
            }
        }
    }
    Ok((step, state.changed))
}

/// What an error page's internal redirect keeps of the request.
struct Redirected {
    method: http::Method,
    headers: http::HeaderMap,
    version: Version,
}

/// `error_page`: answers a final error status (vigil's own, or with
/// `proxy_intercept_errors` an upstream's) from the page configured for
/// it, at most once per request, as nginx (`recursive_error_pages off`).
#[allow(clippy::too_many_arguments)]
async fn error_page(
    rt: &Runtime,
    server_index: usize,
    conn: &ConnInfo,
    response: Response<Body>,
    request: Redirected,
    host: Option<&str>,
    original_uri: &Uri,
    exchange: &mut Exchange,
) -> Response<Body> {
    let server = rt.server(server_index);
    let status = response.status();
    let location = exchange.location.map(|i| &server.locations[i]);
    let pages = match location {
        Some(l) if !l.error_pages.is_empty() => &l.error_pages,
        _ => &server.error_pages,
    };
    let Some(page) = crate::config::error_page::find(pages, status) else {
        return response;
    };
    if matches!(response.body(), Body::Upstream(_)) {
        let intercepts =
            location.is_some_and(|l| matches!(&l.action, Action::Proxy(p) if p.intercept_errors));
        if !intercepts {
            return response;
        }
    } else if location.is_some_and(|l| matches!(&l.action, Action::Return(r) if r.body.is_some())) {
        // `return` with a text is an answer, not an error (nginx sends it).
        return response;
    }
    // An intercepted upstream body is dropped unread: its connection is
    // closed, never reused.
    drop(response);
    let name = match &page.target {
        ErrorTarget::Redirect(url) => {
            let code = match page.response {
                ErrorResponse::Status(s) => s,
                _ => StatusCode::FOUND,
            };
            return respond::redirect(code, url);
        }
        ErrorTarget::Named(name) => Some(name),
        ErrorTarget::Uri(_) => None,
    };
    if !spend_uri_change(&mut exchange.uri_changes_left, original_uri) {
        return respond::status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let Redirected {
        method,
        mut headers,
        version,
    } = request;
    // The page is served whole and fresh: no body, no range, no
    // precondition of the original request applies to it.
    for h in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::RANGE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ] {
        headers.remove(h);
    }
    let mut req = Request::new(());
    *req.headers_mut() = headers;
    *req.version_mut() = version;
    let (mut parts, ()) = req.into_parts();
    let table = &rt.locations[server_index];
    let start = match (name, &page.target) {
        (Some(name), _) => {
            // A named location keeps the method and the URI.
            parts.method = method;
            parts.uri = original_uri.clone();
            match table.named(name) {
                Some(i) => Some(i),
                None => return respond::status(status),
            }
        }
        (None, ErrorTarget::Uri(uri)) => {
            parts.method = if method == http::Method::HEAD {
                http::Method::HEAD
            } else {
                http::Method::GET
            };
            match uri.parse::<Uri>() {
                Ok(u) => parts.uri = u,
                Err(_) => return respond::status(status),
            }
            None
        }
        (None, _) => return respond::status(status),
    };
    let mut page_response = route(
        rt,
        server_index,
        conn,
        parts,
        None,
        host,
        original_uri,
        exchange,
        start,
    )
    .await;
    let answered = page_response.status();
    match page.response {
        ErrorResponse::Target => page_response,
        _ if answered.as_u16() >= 400 => {
            tracing::warn!(
                uri = %original_uri,
                %status,
                page_status = %answered,
                "the error page could not be served; answering with vigil's own page"
            );
            respond::status(status)
        }
        ErrorResponse::Status(s) => {
            *page_response.status_mut() = s;
            page_response
        }
        ErrorResponse::Original => {
            *page_response.status_mut() = status;
            page_response
        }
    }
}

/// What every template of a request shares; [`VarsEnv::vars`] adds the
/// current URI.
#[derive(Clone, Copy)]
struct VarsEnv<'a> {
    conn: &'a ConnInfo,
    /// The real client address.
    remote: &'a IpAddr,
    server_name: &'a String,
    host: Option<&'a str>,
    original_uri: &'a Uri,
    maps: &'a [MapDef],
    map_values: &'a MapValues,
    request_id: &'a std::sync::OnceLock<u128>,
}

impl<'a> VarsEnv<'a> {
    fn vars<'b>(
        &self,
        parts: &'b Parts,
        path: &'b str,
        captures: Option<&'b Captures>,
    ) -> RequestVars<'b>
    where
        'a: 'b,
    {
        RequestVars {
            parts,
            conn: self.conn,
            remote: self.remote,
            server_name: self.server_name,
            host: self.host,
            original_uri: self.original_uri,
            path,
            query: parts.uri.query(),
            proxy_host: "",
            captures,
            maps: self.maps,
            map_values: self.map_values,
            request_id: self.request_id,
        }
    }
}

/// A regex location's groups, when its templates use them (`$1`).
fn location_captures(location: &Location, path: &str) -> Option<Captures> {
    let crate::config::LocationPattern::Regex(re) = &location.pattern else {
        return None;
    };
    let templates: Vec<&crate::config::Template> = match &location.action {
        Action::Return(r) => r.body.iter().chain(r.location.iter()).collect(),
        Action::Proxy(p) => p.set_headers.iter().map(|(_, t)| t).collect(),
        Action::Static(_) => Vec::new(),
    };
    templates
        .iter()
        .any(|t| t.vars().any(|v| matches!(v, Var::Capture(_))))
        .then(|| Captures::of(re, path))
        .flatten()
}

/// The host the client asked for: the URI authority (HTTP/2, absolute
/// form) wins over `Host` (RFC 9112 §3.2.2).
fn request_host(parts: &Parts) -> Option<&str> {
    match parts.uri.authority() {
        Some(a) => Some(a.as_str()),
        None => parts.headers.get(header::HOST)?.to_str().ok(),
    }
}

fn content_length(parts: &Parts) -> Option<u64> {
    parts
        .headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn header_string(headers: &http::HeaderMap, name: &header::HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

fn return_response(r: &ReturnAction, vars: &RequestVars<'_>) -> Response<Body> {
    let mut response = match &r.location {
        Some(location) => respond::redirect(r.status, &location.render(vars)),
        None => {
            let mut resp = Response::new(match &r.body {
                Some(body) => Body::full(body.render(vars)),
                None => Body::empty(),
            });
            *resp.status_mut() = r.status;
            if r.body.is_some() {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, r.content_type.clone());
            }
            resp
        }
    };
    if r.location.is_some() {
        if let Some(body) = &r.body {
            *response.body_mut() = Body::full(body.render(vars));
        }
    }
    response
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

/// Statuses nginx's `add_header` applies to (without `always`).
fn add_header_applies(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

/// `vars` is there when some `add_header` is a template.
fn decorate(
    response: &mut Response<Body>,
    server: &VirtualServer,
    location: Option<&Location>,
    tls: bool,
    vars: Option<&RequestVars<'_>>,
) {
    if add_header_applies(response.status()) {
        let headers = response.headers_mut();
        for (name, value) in server
            .add_header
            .iter()
            .chain(location.into_iter().flat_map(|l| l.add_header.iter()))
        {
            match value {
                HeaderText::Fixed(v) => {
                    headers.insert(name.clone(), v.clone());
                }
                HeaderText::Template(t) => {
                    // As nginx: an empty value adds nothing; neither does
                    // one that is not a valid header value.
                    let rendered = vars.map(|v| t.render(v)).unwrap_or_default();
                    if rendered.is_empty() {
                        continue;
                    }
                    if let Ok(v) = HeaderValue::from_str(&rendered) {
                        headers.insert(name.clone(), v);
                    }
                }
            }
        }
    }
    if tls {
        if let Some(hsts) = &server.hsts {
            response
                .headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
}

/// Template variables for one request.
#[derive(Clone, Copy)]
struct RequestVars<'a> {
    parts: &'a Parts,
    conn: &'a ConnInfo,
    /// The real client address.
    remote: &'a IpAddr,
    host: Option<&'a str>,
    original_uri: &'a Uri,
    path: &'a str,
    /// The query string (`$args`), as rewrites left it.
    query: Option<&'a str>,
    proxy_host: &'a str,
    server_name: &'a String,
    /// The groups of the regex that matched last (a regex location's).
    captures: Option<&'a Captures>,
    maps: &'a [MapDef],
    map_values: &'a MapValues,
    request_id: &'a std::sync::OnceLock<u128>,
}

impl Vars for RequestVars<'_> {
    fn write_var(&self, var: &Var, out: &mut String) {
        use std::fmt::Write;
        match var {
            Var::RemoteAddr => {
                let _ = write!(out, "{}", self.remote);
            }
            Var::Host => {
                if let Some(h) = self.host {
                    out.push_str(&normalize_host(h));
                }
            }
            Var::RequestUri => out.push_str(
                self.original_uri
                    .path_and_query()
                    .map_or("/", |pq| pq.as_str()),
            ),
            Var::Uri => out.push_str(self.path),
            Var::Args => out.push_str(self.query.unwrap_or("")),
            Var::Scheme => out.push_str(self.conn.scheme()),
            Var::ServerPort => {
                let _ = write!(out, "{}", self.conn.listener.port());
            }
            Var::RequestMethod => out.push_str(self.parts.method.as_str()),
            Var::ProxyHost => out.push_str(self.proxy_host),
            Var::ServerName => out.push_str(self.server_name),
            Var::RequestId => {
                let id = self.request_id.get_or_init(|| fastrand::u128(..));
                let _ = write!(out, "{id:032x}");
            }
            Var::TimeIso8601 => super::access_log::write_time_iso8601(SystemTime::now(), out),
            Var::TimeLocal => super::access_log::write_time_local(SystemTime::now(), out),
            Var::Msec => {
                let d = SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
            }
            Var::Header(name) => {
                let values: Vec<&str> = self
                    .parts
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                out.push_str(&values.join(", "));
            }
            Var::Cookie(name) => {
                for value in self.parts.headers.get_all(header::COOKIE) {
                    let Ok(v) = value.to_str() else { continue };
                    for pair in v.split(';') {
                        if let Some((k, val)) = pair.trim().split_once('=') {
                            if k == name {
                                out.push_str(val);
                                return;
                            }
                        }
                    }
                }
            }
            Var::Capture(i) => {
                if let Some(c) = self.captures {
                    out.push_str(c.get(*i).unwrap_or(""));
                }
            }
            Var::Map(i) => self.map_values.write(*i, self.maps, self, out),
            Var::Arg(name) => {
                for pair in self.query.unwrap_or("").split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k == name {
                        out.push_str(v);
                        return;
                    }
                }
            }
        }
    }
}

/// What is known about a request when its response head is ready; the
/// metrics and the access log line are written from it once the body is
/// done.
struct Finished {
    rt: Arc<Runtime>,
    server: Arc<VirtualServer>,
    location: Option<usize>,
    method: http::Method,
    status: StatusCode,
    /// Only when the access log is on.
    log: Option<Box<LogDetail>>,
    /// limit_conn counts, given back when the response ends.
    _conn_limits: Vec<super::edge::limit_conn::ConnGuard>,
}

struct LogDetail {
    remote: IpAddr,
    user: Option<String>,
    time: SystemTime,
    uri: Uri,
    version: Version,
    referer: Option<String>,
    user_agent: Option<String>,
    host: Option<String>,
    upstream: Vec<(SocketAddr, Option<StatusCode>)>,
    upstream_time: Option<std::time::Duration>,
}

/// A response body that counts what it sends and records the request
/// (metrics, access log) when it ends or is dropped (client gone), as
/// nginx logs after the response, with `$body_bytes_sent` and the full
/// request time.
pub struct LoggedBody {
    inner: Body,
    bytes: u64,
    start: Instant,
    record: Option<Finished>,
}

impl LoggedBody {
    fn unlogged(inner: Body) -> Self {
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
        let location = r
            .location
            .map_or("", |i| r.server.locations[i].label.as_str());
        let metrics = &r.rt.metrics;
        metrics
            .http_requests
            .with_label_values(&[
                r.server.label.as_str(),
                location,
                r.method.as_str(),
                r.status.as_str(),
            ])
            .inc();
        metrics
            .http_request_duration
            .with_label_values(&[r.server.label.as_str(), location])
            .observe(elapsed.as_secs_f64());
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
            referer: log.referer.as_deref(),
            user_agent: log.user_agent.as_deref(),
            host: log.host.as_deref(),
            request_time: elapsed,
            upstream: &log.upstream,
            upstream_time: log.upstream_time,
            server: &r.server.label,
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

#[cfg(test)]
mod future_sizes {
    use super::*;

    fn size3<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// The whole request future is boxed once per request (see
    /// `server::serve_connection`); keep it from growing unnoticed.
    #[test]
    fn request_future_stays_small() {
        let handle = size3(handle as fn(Arc<Runtime>, &'static ConnInfo, Request<Incoming>) -> _);
        assert!(handle < 6144, "handle future is {handle} bytes");
    }
}
