//! Configuration: the TOML file schema ([`file`]), its validation
//! ([`validate`]) and the validated form the rest of vigil reads
//! ([`Config`] and the types below).
//!
//! "Parse, don't validate": request-handling code never sees a string
//! from the file. Addresses are resolved, regexes compiled, durations
//! parsed and cross-references (proxy_pass → upstream) checked once, here.

pub(crate) mod certificate;
pub(crate) mod cidr;
pub(crate) mod compression;
pub(crate) mod edge;
pub mod error;
pub(crate) mod error_page;
pub mod file;
pub(crate) mod htpasswd;
pub(crate) mod map;
pub(crate) mod rewrite;
mod static_site;
pub(crate) mod template;
pub(crate) mod units;
mod validate;
pub mod vrrp;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use regex::Regex;

pub use self::certificate::{Certificate, CertificateError};
pub use self::compression::Compression;
pub use self::edge::{EdgeControls, RealIp};
pub use self::error::{ConfigError, Problem};
pub use self::static_site::{Expires, FileBase, StaticSite, TryFallback, TryFile};
pub use self::template::Template;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub servers: Vec<Arc<VirtualServer>>,
    /// One entry per distinct listen address, with the servers on it.
    pub listeners: Vec<ListenerConfig>,
    pub upstreams: BTreeMap<String, Arc<UpstreamConfig>>,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub admin: Option<AdminSettings>,
    pub vrrp: Option<vrrp::VrrpConfig>,
    /// `[limit_req_zone.*]` by name (locations hold them too).
    pub limit_req_zones: BTreeMap<String, Arc<edge::LimitReqZone>>,
    /// `[limit_conn_zone.*]` by name.
    pub limit_conn_zones: BTreeMap<String, Arc<edge::LimitConnZone>>,
    /// `[map.*]` variables; `Var::Map(i)` is `maps[i]`.
    pub maps: Vec<map::MapDef>,
    /// Things that work but deserve attention (an expired certificate, a
    /// server name its certificate does not cover), each as
    /// `file:line: key: why`. `vigil check` prints them; a running vigil
    /// logs them when it loads the config.
    pub warnings: Vec<String>,
}

impl Config {
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates config `text`; `path` names it in errors and anchors
    /// relative paths (`root = "www"` is relative to the config's directory's
    /// parent when the file lives in `conf/`, see [`validate`]).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        validate::parse(text, path)
    }
}

/// Connection-level settings (`[http]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Time allowed to send a request head; also how long an idle
    /// keep-alive connection is kept (slowloris protection).
    pub client_header_timeout: Duration,
    /// Longest pause between two reads of a request body.
    pub client_body_timeout: Duration,
    /// Longest pause while the client reads the response.
    pub send_timeout: Duration,
    /// Request bodies larger than this get 413; 0 = no limit.
    pub client_max_body_size: u64,
    /// A proxied request body is read whole before a server is picked
    /// (unless the location turns `request_buffering` off): up to this
    /// many bytes in memory, the rest into a file in `client_body_temp_path`.
    pub client_body_buffer_size: usize,
    /// Directory for request bodies over `client_body_buffer_size`; the
    /// files are unlinked from the start, so nothing is left behind.
    pub client_body_temp_path: PathBuf,
    /// Largest request head accepted; larger gets 431.
    pub max_header_size: usize,
    /// Accept HTTP/2 (prior knowledge on plain listeners, ALPN on TLS).
    pub http2: bool,
    /// Plain HTTP/1 requests without a body are read and answered by
    /// vigil's own code (`proxy/conn/own_h1`); the rest, and all of them
    /// when off, by hyper.
    pub own_http1: bool,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_timeout: Duration,
    /// Connections beyond this wait in the kernel backlog.
    pub max_connections: usize,
    /// Worker threads (one single-threaded runtime each); read at start.
    pub workers: usize,
    /// Whether workers are pinned to CPUs; read at start.
    pub worker_cpu_affinity: CpuAffinity,
    /// Time allowed for the PROXY protocol header on listeners that
    /// expect one.
    pub proxy_protocol_timeout: Duration,
    /// DNS servers for re-resolving upstream names (nginx `resolver`);
    /// empty: the system's (`/etc/resolv.conf`).
    pub resolver: Vec<SocketAddr>,
    /// Time allowed for one lookup (nginx `resolver_timeout`).
    pub resolver_timeout: Duration,
}

/// `[http] worker_cpu_affinity`: see `proxy::workers::cpu_plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuAffinity {
    /// Pin worker i to the i-th CPU the process may run on, when there
    /// is exactly one worker per such CPU (the default count).
    Auto,
    /// Leave the workers to the kernel's scheduler.
    Off,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub access_log: AccessLogTarget,
    pub access_log_format: AccessLogFormat,
    /// Bytes each worker collects before the buffer is written (0: every
    /// line is handed to the writer at once).
    pub access_log_buffer: usize,
    /// Longest a line waits in a worker's buffer.
    pub access_log_flush: Duration,
    pub level: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    Stderr,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// nginx's `combined` plus request time and upstream address.
    Combined,
    /// One JSON object per line.
    Json,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// Enables `POST /debug/stall?ms=N` (blocks every worker thread), used
    /// by failover tests and benchmarks to simulate a wedged proxy.
    pub debug: bool,
}

/// A listen address and the virtual servers sharing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    /// Indexes into [`Config::servers`], in file order.
    pub servers: Vec<usize>,
    /// The server for requests whose host matches no name.
    pub default_server: usize,
    /// True when the servers on this address terminate TLS.
    pub tls: bool,
    /// Every connection starts with a PROXY protocol header (v1 or v2).
    pub proxy_protocol: bool,
}

/// A `[[server]]`: a virtual host.
#[derive(Debug, Clone)]
pub struct VirtualServer {
    /// Position in the file; stable label for metrics.
    pub index: usize,
    /// First server name, or `_`; used in logs and metric labels.
    pub label: String,
    pub names: Vec<ServerName>,
    pub locations: Vec<Location>,
    pub client_max_body_size: Option<u64>,
    pub tls: Option<TlsSettings>,
    /// Plain-HTTP server answering everything with a redirect to https.
    pub redirect_https: Option<RedirectHttps>,
    /// `Strict-Transport-Security` value added on TLS responses.
    pub hsts: Option<HeaderValue>,
    /// Headers added to every response of this server.
    pub add_header: Vec<(HeaderName, HeaderText)>,
    /// Some `add_header` here or in a location is a template: the request
    /// head is kept for it.
    pub add_header_vars: bool,
    /// Where the client's real address comes from; `None` when no peer
    /// is trusted to say.
    pub real_ip: Option<RealIp>,
    /// On-the-fly compression for responses no location answered (a 404
    /// before any location matched); locations carry their own.
    pub compression: Option<Arc<Compression>>,
    /// Rewrites run before the location search.
    pub rewrites: Vec<rewrite::Rewrite>,
    /// Error pages for locations that have none of their own.
    pub error_pages: Vec<error_page::ErrorPage>,
}

/// A server name as nginx matches them.
#[derive(Debug, Clone)]
pub enum ServerName {
    /// `example.com`.
    Exact(String),
    /// `*.example.com` (stored as `.example.com`): any subdomain.
    /// `.example.com` also matches `example.com` itself (`also_bare`).
    Suffix { suffix: String, also_bare: bool },
    /// `www.example.*` (stored as `www.example.`).
    Prefix(String),
    /// `~^www\d+\.example\.com$`.
    Regex(Regex),
}

/// `tls = { cert, key }`, with the certificate loaded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The chain and key read from `cert` and `key` at load time; a
    /// reload reads the files again.
    pub certificate: Certificate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectHttps {
    /// Port to put in the Location (omitted when 443).
    pub port: u16,
}

/// An `add_header` value: fixed text, or a template rendered for each
/// response (`$http_origin`, a map).
#[derive(Debug, Clone)]
pub enum HeaderText {
    Fixed(HeaderValue),
    Template(Template),
}

impl HeaderText {
    /// Whether rendering needs the request (a template).
    pub fn is_template(&self) -> bool {
        matches!(self, HeaderText::Template(_))
    }
}

/// A `[[server.location]]`.
#[derive(Debug, Clone)]
pub struct Location {
    /// The `path` as written; the metric label for the route.
    pub label: String,
    pub pattern: LocationPattern,
    pub action: Action,
    pub add_header: Vec<(HeaderName, HeaderText)>,
    pub client_max_body_size: Option<u64>,
    /// access, auth_basic, limit_req, limit_conn (inheritance applied).
    pub edge: EdgeControls,
    /// On-the-fly compression (the location's keys over the server's over
    /// `[http]`'s); `None` when no coding is on.
    pub compression: Option<Arc<Compression>>,
    /// Rewrites run when this location is chosen.
    pub rewrites: Vec<rewrite::Rewrite>,
    /// Error pages; when empty, the server's apply (nginx inheritance).
    pub error_pages: Vec<error_page::ErrorPage>,
    /// Only internal redirects reach it (nginx `internal`).
    pub internal: bool,
}

/// How a location matches a path (nginx `location` modifiers).
#[derive(Debug, Clone)]
pub enum LocationPattern {
    /// `= /path`: exact match; stops the search.
    Exact(String),
    /// `/path` or `^~ /path`: prefix; `^~` skips regexes when it is the
    /// longest prefix match.
    Prefix { prefix: String, skip_regex: bool },
    /// `~ re` (case-sensitive) or `~* re` (case-insensitive).
    Regex(Regex),
    /// `@name`: reachable only from try_files.
    Named(String),
}

/// What a location does with a request.
#[derive(Debug, Clone)]
pub enum Action {
    Return(ReturnAction),
    Static(Box<StaticSite>),
    Proxy(ProxyPass),
}

/// `return = { status, body | location }`.
#[derive(Debug, Clone)]
pub struct ReturnAction {
    pub status: StatusCode,
    pub body: Option<Template>,
    pub location: Option<Template>,
    pub content_type: HeaderValue,
}

/// `proxy_pass` to a pool.
#[derive(Debug, Clone)]
pub struct ProxyPass {
    /// Key in [`Config::upstreams`].
    pub upstream: String,
    /// nginx's "proxy_pass with a URI": the matched location prefix is
    /// replaced by this (e.g. location `/api/` + `http://app/v1/` sends
    /// `/api/x` as `/v1/x`). `None` passes the request URI unchanged.
    pub replace_prefix: Option<ReplacePrefix>,
    /// `proxy_set_header`; an empty value removes the header.
    pub set_headers: Vec<(HeaderName, Template)>,
    /// `websocket = true`: an `Upgrade` request is passed on with its
    /// `Upgrade` header and, on a 101, tunnelled. Off by default, as in
    /// nginx (which tunnels only where the config passes `Upgrade` on):
    /// a tunnel carries raw bytes past every later routing rule.
    pub websocket: bool,
    /// vigil's own forwarding headers (X-Forwarded-For appended,
    /// X-Real-IP, X-Forwarded-Proto, X-Forwarded-Host), on by default;
    /// `forwarding_headers = false` leaves the request's own values, as
    /// nginx does, and `proxy_set_header` says what to send (the importer
    /// turns it off and writes nginx's headers out: no renders twice).
    pub forwarding_headers: bool,
    /// The request body is read whole (memory, then a temporary file)
    /// before a server is picked, as nginx's `proxy_request_buffering on`:
    /// a slow upload holds no upstream connection, and a failed attempt
    /// can be sent again. `false` streams it as it comes.
    pub request_buffering: bool,
    /// `proxy_intercept_errors`: the upstream's statuses that have an
    /// `error_page` are answered by it.
    pub intercept_errors: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacePrefix {
    pub location_prefix: String,
    pub with: String,
}

/// `[upstream.<name>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub name: String,
    pub balance: BalanceMethod,
    pub servers: Vec<UpstreamServer>,
    /// Idle keep-alive connections kept per server.
    pub keepalive: usize,
    pub keepalive_timeout: Duration,
    pub connect_timeout: Duration,
    /// Time to wait for the response head, and between body reads.
    pub read_timeout: Duration,
    /// Longest pause while sending the request body.
    pub send_timeout: Duration,
    /// Servers tried per request (nginx proxy_next_upstream_tries);
    /// 0 = every server once.
    pub tries: u32,
    /// Give up retrying after this long; `None` = no limit.
    pub next_upstream_timeout: Option<Duration>,
    pub next_upstream: NextUpstream,
    pub health_check: Option<HealthCheck>,
    /// Speak TLS to the servers (`tls = {...}` or `https://` in proxy_pass).
    pub tls: Option<UpstreamTls>,
    /// How often server names are looked up again; `None`: at each
    /// answer's TTL.
    pub resolve_interval: Option<Duration>,
    /// The servers given by name, looked up again in the background.
    pub resolve: Vec<ResolveName>,
}

/// A server entry given by host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveName {
    pub host: String,
    pub port: u16,
    /// The entry's settings; each address found becomes a copy of it.
    pub template: UpstreamServer,
}

/// `[upstream.x] tls = { verify, ca, sni }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Verify the server's certificate (default true).
    pub verify: bool,
    /// Trust only this CA bundle instead of the public roots.
    pub ca: Option<CaBundle>,
    /// Name to send as SNI and verify, instead of each server's host.
    pub sni: Option<String>,
}

/// A CA bundle file, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub path: PathBuf,
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// How a pool picks a server.
#[derive(Debug, Clone, PartialEq)]
pub enum BalanceMethod {
    /// nginx's smooth weighted round robin.
    RoundRobin,
    /// Fewest active requests relative to weight; ties by round robin.
    LeastConn,
    /// Client IPv4 /24 (or full IPv6 address) hashed: sticky per client.
    IpHash,
    /// Consistent (ketama) hash of a key template.
    Hash(Template),
    /// Power of two random choices, by active requests / weight.
    RandomTwo,
}

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    pub addr: SocketAddr,
    /// As written (`app1.internal:8080`); distinct from `addr` when a
    /// name resolved to several addresses.
    pub label: String,
    pub weight: u32,
    /// Failures within `fail_timeout` that mark the server down;
    /// 0 = never mark it down passively.
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub backup: bool,
    pub down: bool,
    /// For a TLS pool: the name verified in this server's certificate and
    /// sent as SNI (the pool's `sni`, else the host as written).
    pub tls_name: Option<rustls::pki_types::ServerName<'static>>,
    /// The host name and port this address was resolved from, when the
    /// server was given by name: it is looked up again in the background
    /// and the pool follows the answers (`proxy::upstream::resolve`).
    pub resolved_from: Option<(String, u16)>,
}

/// `next_upstream`: which failures move a request to the next server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NextUpstream {
    pub error: bool,
    pub timeout: bool,
    pub http_500: bool,
    pub http_502: bool,
    pub http_503: bool,
    pub http_504: bool,
    pub http_429: bool,
    /// Also retry POST, PATCH, LOCK after the request was sent.
    pub non_idempotent: bool,
}

/// Active health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes to mark a server up.
    pub rise: u32,
    /// Consecutive failures to mark a server down.
    pub fall: u32,
    /// Accepted status codes.
    pub expect: Vec<std::ops::RangeInclusive<u16>>,
}

impl HealthCheck {
    pub fn accepts(&self, status: u16) -> bool {
        self.expect.iter().any(|r| r.contains(&status))
    }
}
