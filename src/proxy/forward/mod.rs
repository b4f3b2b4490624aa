//! Forwarding a request to an upstream pool: rewrite the request, pick a
//! server, retry on the next one when nginx would, stream the response
//! back (or tunnel it, for an upgrade).
//!
//! Retry rules (nginx proxy_next_upstream): connect errors and connect
//! timeouts are always safe to retry, since nothing was sent; after the
//! request was sent, only a request that can be sent again identically
//! (no body or one held whole, not streamed; an idempotent method, or
//! `non_idempotent` set) moves on. Retries
//! are bounded by `tries` and `next_upstream_timeout`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, Version, header,
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use smallvec::SmallVec;
use tokio::io::AsyncWriteExt;

use crate::config::{BalanceMethod, NextUpstream, ProxyPass};
use crate::proxy::body::Body;
use crate::proxy::client_body::{self, ClientBody, HeldBody, Upload};
use crate::proxy::headers::{self, AddedFields, ClientInfo};
use crate::proxy::request_body::RequestBody;
use crate::proxy::respond;
use crate::proxy::runtime::Pool;
use crate::proxy::upstream::conn::{self, Connection, InFlight};
use crate::proxy::upstream::exchange::{ExchangeError, UpstreamBody, UpstreamRequest};
use crate::proxy::upstream::h1::{Framing, ResponseHead};
use crate::proxy::upstream::peer_metrics::AttemptCode;
use crate::proxy::upstream::{Peer, PickKey};

mod request;
pub(crate) use self::request::encode_path;
use self::request::{build_request, is_idempotent, listed_status, prepare_headers, upstream_uri};

/// What the forwarder needs to know about the request beyond its parts.
pub struct ForwardRequest<'a> {
    pub parts: Parts,
    /// `None` after an internal redirect that dropped the body (an
    /// `error_page` after the body went to a server).
    pub body: Option<RequestBody>,
    pub client: ClientInfo<'a>,
    /// Normalized path (used when a URI prefix is replaced).
    pub normalized_path: &'a str,
    /// `proxy_set_header` values, rendered (empty = remove the header).
    pub set_headers: Vec<(HeaderName, String)>,
    /// The rendered `hash_key`, for `balance = "hash"`.
    pub hash_key: Option<String>,
    pub max_body_size: u64,
    pub body_timeout: Duration,
    /// Bytes of a body held in memory before the rest goes to a file.
    pub body_buffer_size: usize,
    /// Where the file goes (`client_body_temp_path`).
    pub body_temp_path: &'a std::path::Path,
    /// Where the upstream counters go.
    pub metrics: &'a crate::metrics::Metrics,
}

/// Each server tried, with the status it answered (None = no answer).
/// Inline for the usual single try: no allocation per request.
pub type Attempts = SmallVec<[(SocketAddr, Option<StatusCode>); 1]>;

/// What happened, for the access log and metrics.
#[derive(Debug, Default)]
pub struct ForwardReport {
    pub attempts: Attempts,
    /// Time until the response head arrived.
    pub header_time: Option<Duration>,
}

pub async fn forward(
    pool: &Pool,
    pass: &ProxyPass,
    req: ForwardRequest<'_>,
    report: &mut ForwardReport,
) -> Response<Body> {
    let ForwardRequest {
        mut parts,
        body,
        client,
        normalized_path,
        set_headers,
        hash_key,
        max_body_size,
        body_timeout,
        body_buffer_size,
        body_temp_path,
        metrics,
    } = req;
    let config = &pool.config;

    let client_upgrade = parts.extensions.remove::<OnUpgrade>();
    let forwarding = pass.forwarding_headers.then_some(&client);
    let mut added = AddedFields::default();
    let upgrade = prepare_headers(&mut parts.headers, &mut added, set_headers, forwarding);
    // Only where the location opts in: a tunnel takes the connection past
    // every routing rule (issue 13: `Upgrade: h2c` reached a location
    // that `= /bad/admin` refused).
    let upgrade = upgrade.filter(|_| {
        pass.websocket && parts.version == Version::HTTP_11 && client_upgrade.is_some()
    });
    if let Some(protocol) = &upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, protocol.clone());
    }
    let uri = match upstream_uri(&parts.uri, pass, normalized_path) {
        Some(u) => u,
        None => return respond::status(StatusCode::BAD_REQUEST),
    };
    if !headers::has(&parts.headers, &header::HOST) {
        // HTTP/2 (authority only) or HTTP/1.0 without Host: name the host
        // the client asked for, else the upstream (nginx's $proxy_host).
        let host = client.host.unwrap_or(&config.name);
        if let Ok(v) = HeaderValue::from_str(host) {
            parts.headers.insert(header::HOST, v);
        }
    }

    let body = body.filter(|b| !http_body::Body::is_end_stream(b));
    let streamed = body.is_some() && !pass.request_buffering;
    let mut held = None;
    let (body, upload) = if let Some(body) = body {
        let (b, u) = ClientBody::new(body, max_body_size, body_timeout);
        let body = if pass.request_buffering {
            // Boxed: reading a body is a rare, larger future.
            match Box::pin(client_body::read_whole(b, body_buffer_size, body_temp_path)).await {
                Ok(h) => {
                    match h {
                        HeldBody::Memory(_) => metrics.request_bodies_in_memory.inc(),
                        HeldBody::File(_) => metrics.request_bodies_in_file.inc(),
                    }
                    held.insert(h).body()
                }
                // Refused before any server saw it: nothing to blame on one.
                Err(status) => return respond::status(status),
            }
        } else {
            Body::stream(b)
        };
        (body, Some(u))
    } else {
        (Body::empty(), None)
    };
    let max_tries = pool.max_tries();
    // A request that may be sent again after it went out once: kept as a
    // template (nginx: only a body it holds whole, and only idempotent
    // methods unless non_idempotent is listed). Not worth a copy with one
    // try.
    let replayable = max_tries > 1
        && !streamed
        && (is_idempotent(&parts.method) || config.next_upstream.non_idempotent);
    let template = replayable.then(|| {
        let method = parts.method.clone();
        let headers = (parts.headers.clone(), added.clone());
        (method, uri.clone(), headers, held.clone())
    });
    let mut request = Some(build_request(parts.method, uri, parts.headers, added, body));

    let key = match (&config.balance, &hash_key) {
        (BalanceMethod::IpHash, _) => PickKey::Client(client.addr),
        (BalanceMethod::Hash(_), Some(k)) => PickKey::Bytes(k.as_bytes()),
        _ => PickKey::None,
    };

    // Inline up to 4 tries: no allocation per request.
    let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
    let mut last = Failure::NoLiveUpstreams;
    // When the first attempt started: `upstream_header_time` and the
    // retry budget run from there, as nginx's do (after a buffered body
    // was read).
    let mut started = None;
    while tried.len() < max_tries {
        // One clock reading dates the attempt, the pick and the cached
        // connection's idle check.
        let attempt_start = Instant::now();
        let started = *started.get_or_insert(attempt_start);
        if let Some(budget) = config.next_upstream_timeout {
            if !tried.is_empty() && attempt_start - started >= budget {
                break;
            }
        }
        let Some(index) = pool.pick_at(&tried, key, attempt_start) else {
            break;
        };
        tried.push(index);
        let Some(req) = request.take().or_else(|| {
            template.as_ref().map(|(m, u, (h, a), held)| {
                let body = held.as_ref().map_or(Body::Empty, HeldBody::body);
                build_request(m.clone(), u.clone(), h.clone(), a.clone(), body)
            })
        }) else {
            break;
        };
        let peer = &pool.peers[index];
        let in_flight = InFlight::new(peer);
        if tried.len() > 1 {
            peer.metrics.retry(metrics, &config.name);
        }
        let timeouts = (config.connect_timeout, config.read_timeout);
        let outcome = attempt(peer, req, timeouts, attempt_start).await;
        let answered = outcome.as_ref().ok().map(|(head, _)| head.status);
        let code = match (&answered, &outcome) {
            (Some(status), _) => AttemptCode::Status(*status),
            (None, Err(e)) if e.failure.is_timeout() => AttemptCode::Timeout,
            (None, _) => AttemptCode::Error,
        };
        peer.metrics
            .attempt(metrics, &config.name, &peer.server.label, code);
        match outcome {
            Ok((head, connection)) => {
                let answered_at = Instant::now();
                let seconds = (answered_at - attempt_start).as_secs_f64();
                peer.metrics.response_time(metrics, &config.name, seconds);
                let status = head.status;
                report.attempts.push((peer.server.addr, Some(status)));
                let can_retry = template.is_some() && tried.len() < max_tries;
                if can_retry && listed_status(&config.next_upstream, status) {
                    peer.record_failure(answered_at);
                    last = Failure::Status(status);
                    tracing::info!(upstream = %config.name, server = %peer.server.label, %status, "trying next upstream server");
                    continue;
                }
                if listed_status(&config.next_upstream, status) {
                    peer.record_failure(answered_at);
                } else {
                    peer.record_success();
                }
                report.header_time = Some(answered_at - started);
                return finish_response(
                    head,
                    connection,
                    in_flight,
                    config.read_timeout,
                    upgrade.is_some().then_some(client_upgrade).flatten(),
                );
            }
            Err(AttemptError {
                failure,
                request: back,
            }) => {
                report.attempts.push((peer.server.addr, None));
                if let Some(status) = upload.as_ref().and_then(Upload::client_fault) {
                    // The client's body was the problem, not the server:
                    // nothing is counted against it (nginx: 400 / 408 /
                    // 413 / 499, no server marked failed).
                    tracing::debug!(upstream = %config.name, server = %peer.server.label, %status, error = %failure, "request body failed");
                    return respond::status(status);
                }
                peer.record_failure(Instant::now());
                tracing::warn!(upstream = %config.name, server = %peer.server.label, error = %failure, "upstream attempt failed");
                let allowed = match failure {
                    Failure::ConnectTimeout | Failure::ResponseTimeout => {
                        config.next_upstream.timeout
                    }
                    _ => config.next_upstream.error,
                };
                request = back;
                last = failure;
                if !allowed || (request.is_none() && template.is_none()) {
                    break;
                }
            }
        }
    }
    respond::status(last.status())
}

/// Sends one request to `peer`: on a cached connection if there is one,
/// else on a new connection. A cached connection that fails before any of
/// the request went out (or, for a bodiless idempotent request, closes
/// before any answer: the server timed it out as we picked it) is
/// replaced by a fresh one, as nginx does for its keep-alive cache.
/// `(connect_timeout, read_timeout)`; `now`: when the attempt started.
async fn attempt(
    peer: &Peer,
    mut req: Box<UpstreamRequest>,
    (connect_timeout, read_timeout): (Duration, Duration),
    now: Instant,
) -> Result<(Box<ResponseHead>, Box<Connection>), AttemptError> {
    let replayable = http_body::Body::is_end_stream(&req.body) && is_idempotent(&req.method);
    let mut cached = peer.idle.take(now);
    loop {
        let mut connection = match cached.take() {
            Some(c) => c,
            // Boxed: dialing (TCP, TLS) needs a large future but happens
            // rarely with keep-alive; inline it would make every request's
            // future, which hyper moves into place per request, that much
            // larger.
            None => match Box::pin(conn::connect(
                peer.server.addr,
                peer.tls.as_ref(),
                connect_timeout,
            ))
            .await
            {
                Ok(c) => c,
                Err(conn::ConnectError::Timeout { .. }) => {
                    return Err(AttemptError::unsent(Failure::ConnectTimeout, req));
                }
                Err(e) => return Err(AttemptError::unsent(Failure::Connect(e), req)),
            },
        };
        let reused = connection.is_reused();
        match connection.exchange(&mut req, read_timeout).await {
            Ok(head) => return Ok((head, connection)),
            Err(ExchangeError::Unsent(_)) if reused => {}
            Err(ExchangeError::Closed) if reused && replayable => {}
            Err(ExchangeError::Unsent(e)) => {
                return Err(AttemptError::unsent(
                    Failure::Upstream(ExchangeError::Io(e)),
                    req,
                ));
            }
            Err(e) => return Err(AttemptError::sent(Failure::from(e))),
        }
    }
}

fn finish_response(
    head: Box<ResponseHead>,
    connection: Box<Connection>,
    in_flight: InFlight,
    read_timeout: Duration,
    client_upgrade: Option<OnUpgrade>,
) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    if let Some(reason) = head
        .reason
        .clone()
        .and_then(|r| hyper::ext::ReasonPhrase::try_from(r).ok())
    {
        response.extensions_mut().insert(reason);
    }
    if head.framing == Framing::Upgrade {
        if head.status != StatusCode::SWITCHING_PROTOCOLS {
            // A 2xx to CONNECT, which vigil never forwards as a tunnel.
            return respond::status(StatusCode::BAD_GATEWAY);
        }
        let Some(client_upgrade) = client_upgrade else {
            // 101 to a request that did not ask for it: protocol violation.
            return respond::status(StatusCode::BAD_GATEWAY);
        };
        // The one hop-by-hop pair carried across on purpose.
        let mut headers = head.headers;
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(p) = head.upgrade {
            headers.insert(header::UPGRADE, p);
        }
        *response.headers_mut() = headers;
        tokio::spawn(tunnel(client_upgrade, connection, in_flight));
        return response;
    }
    let body = UpstreamBody::new(connection, &head, Some(in_flight), read_timeout);
    // Hop-by-hop fields were left out by the parser.
    *response.headers_mut() = head.headers;
    *response.body_mut() = Body::Upstream(body);
    response
}

/// Copies bytes both ways between an upgraded client and the upstream
/// connection, starting with what the upstream sent after its 101.
async fn tunnel(client: OnUpgrade, upstream: Box<Connection>, _in_flight: InFlight) {
    let client = match client.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let (mut upstream, early) = (*upstream).into_parts();
    if !early.is_empty() && client.write_all(&early).await.is_err() {
        return;
    }
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended");
    }
}

/// Why an attempt failed; decides the status code and whether a retry may
/// follow.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no live upstream server")]
    NoLiveUpstreams,
    #[error("{0}")]
    Connect(conn::ConnectError),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("no response within read_timeout")]
    ResponseTimeout,
    #[error("{0}")]
    Upstream(ExchangeError),
    #[error("status {0}")]
    Status(StatusCode),
}

impl From<ExchangeError> for Failure {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Timeout => Failure::ResponseTimeout,
            e => Failure::Upstream(e),
        }
    }
}

impl Failure {
    fn is_timeout(&self) -> bool {
        matches!(self, Failure::ConnectTimeout | Failure::ResponseTimeout)
    }

    fn status(&self) -> StatusCode {
        match self {
            Failure::ConnectTimeout | Failure::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            Failure::Status(s) if *s == StatusCode::GATEWAY_TIMEOUT => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

struct AttemptError {
    failure: Failure,
    /// The request, when it was never sent (so it can go elsewhere as is).
    request: Option<Box<UpstreamRequest>>,
}

impl AttemptError {
    fn sent(failure: Failure) -> Self {
        Self {
            failure,
            request: None,
        }
    }

    fn unsent(failure: Failure, request: Box<UpstreamRequest>) -> Self {
        Self {
            failure,
            request: Some(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplacePrefix;

    fn pass(replace: Option<(&str, &str)>) -> ProxyPass {
        ProxyPass {
            upstream: "u".into(),
            replace_prefix: replace.map(|(p, w)| ReplacePrefix {
                location_prefix: p.into(),
                with: w.into(),
            }),
            set_headers: Vec::new(),
            websocket: false,
            forwarding_headers: true,
            request_buffering: true,
            intercept_errors: false,
        }
    }

    /// `proxy_set_header` takes over a forwarding field of its name,
    /// whether it sets it or (empty) removes it, as in nginx.
    #[test]
    fn set_headers_override_the_forwarding_fields() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("a.test"));
        headers.insert("x-real-ip", HeaderValue::from_static("forged"));
        let ip = "192.0.2.1".parse().unwrap();
        let addr = headers::addr_header(ip);
        let client = ClientInfo {
            addr: ip,
            addr_header: &addr,
            scheme: "https",
            host: Some("a.test"),
        };
        let set = vec![
            (HeaderName::from_static("x-real-ip"), "10.9.9.9".to_owned()),
            (HeaderName::from_static("x-forwarded-proto"), String::new()),
        ];
        let mut added = AddedFields::default();
        prepare_headers(&mut headers, &mut added, set, Some(&client));
        let mut head = Vec::new();
        let framing = crate::proxy::upstream::h1::RequestFraming::None;
        crate::proxy::upstream::h1::encode_request_head(
            &mut head,
            &Method::GET,
            "/",
            (&headers, &added),
            framing,
        );
        let head = String::from_utf8(head).unwrap();
        let mut fields: Vec<_> = head
            .split("\r\n")
            .skip(1)
            .filter(|l| !l.is_empty())
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "host: a.test",
                "x-forwarded-for: 192.0.2.1",
                "x-forwarded-host: a.test",
                "x-real-ip: 10.9.9.9",
            ]
        );
    }

    #[test]
    fn uri_passes_unchanged_without_a_uri_part() {
        let uri: Uri = "/api/x%20y?q=1".parse().unwrap();
        assert_eq!(
            upstream_uri(&uri, &pass(None), "/api/x y").unwrap(),
            "/api/x%20y?q=1"
        );
        // HTTP/2 absolute form becomes origin form.
        let uri: Uri = "https://example.com/a?b".parse().unwrap();
        assert_eq!(upstream_uri(&uri, &pass(None), "/a").unwrap(), "/a?b");
    }

    #[test]
    fn uri_part_replaces_the_location_prefix() {
        let p = pass(Some(("/api/", "/v1/")));
        let uri: Uri = "/api/users/7?x=1".parse().unwrap();
        assert_eq!(
            upstream_uri(&uri, &p, "/api/users/7").unwrap(),
            "/v1/users/7?x=1"
        );
        let p = pass(Some(("/api/", "/")));
        assert_eq!(
            upstream_uri(&uri, &p, "/api/users/7").unwrap(),
            "/users/7?x=1"
        );
        // Raw path differs from the prefix (encoded, dot segments): the
        // normalized path is used and re-encoded.
        let uri: Uri = "/x/../api/a%20b".parse().unwrap();
        let p = pass(Some(("/api/", "/v1/")));
        assert_eq!(upstream_uri(&uri, &p, "/api/a b").unwrap(), "/v1/a%20b");
    }

    #[test]
    fn idempotency_and_status_rules() {
        assert!(is_idempotent(&Method::GET) && is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST) && !is_idempotent(&Method::PATCH));
        let n = NextUpstream {
            http_502: true,
            ..Default::default()
        };
        assert!(listed_status(&n, StatusCode::BAD_GATEWAY));
        assert!(!listed_status(&n, StatusCode::SERVICE_UNAVAILABLE));
        assert!(!listed_status(&n, StatusCode::NOT_FOUND));
        assert_eq!(
            Failure::ConnectTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(Failure::NoLiveUpstreams.status(), StatusCode::BAD_GATEWAY);
    }
}

#[cfg(test)]
mod future_sizes {
    use super::*;
    use crate::proxy::future_size::future_size;

    /// Futures on the request path are moved around whole; dialing (TCP,
    /// TLS, handshake) is boxed so it does not inflate every request. This
    /// guards that: with dialing inline, `attempt` was 4.5 KB.
    #[test]
    fn request_path_futures_stay_small() {
        let forward = future_size(
            forward
                as fn(
                    &'static Pool,
                    &'static ProxyPass,
                    ForwardRequest<'static>,
                    &'static mut ForwardReport,
                ) -> _,
        );
        let attempt = future_size(
            attempt as fn(&'static Peer, Box<UpstreamRequest>, (Duration, Duration), Instant) -> _,
        );
        assert!(attempt < 2048, "attempt future is {attempt} bytes");
        assert!(forward < 4096, "forward future is {forward} bytes");
    }
}
