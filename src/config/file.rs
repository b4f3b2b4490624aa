//! The config file as written: serde structs mirroring the TOML.
//!
//! Nothing here is trusted; `validate` turns it into [`super::Config`].
//! Every struct denies unknown keys so a typo (`proxy_pas`) is an error with
//! a line number, never a silently ignored setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::compression::CompressionKeys;
use super::units::{ByteSize, ConfigDuration};

/// The compression keys a level of the file holds (the same names in
/// `[http]`, `[[server]]` and `[[server.location]]`).
macro_rules! compression_keys {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn compression(&self) -> CompressionKeys {
                CompressionKeys {
                    gzip: self.gzip,
                    gzip_comp_level: self.gzip_comp_level,
                    gzip_types: self.gzip_types.clone(),
                    gzip_min_length: self.gzip_min_length,
                    gzip_vary: self.gzip_vary,
                    gzip_proxied: self.gzip_proxied.clone(),
                    gzip_http_version: self.gzip_http_version.clone(),
                    brotli: self.brotli,
                    brotli_comp_level: self.brotli_comp_level,
                    zstd: self.zstd,
                    zstd_comp_level: self.zstd_comp_level,
                }
            }
        }
    )*};
}
compression_keys!(HttpFile, ServerFile, LocationFile);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub server: Vec<ServerFile>,
    #[serde(default)]
    pub upstream: BTreeMap<String, UpstreamFile>,
    #[serde(default)]
    pub http: HttpFile,
    #[serde(default)]
    pub log: LogFile,
    pub admin: Option<AdminFile>,
    pub vrrp: Option<crate::config::vrrp::VrrpFile>,
    /// nginx `limit_req_zone KEY zone=NAME:SIZE rate=R`.
    #[serde(default)]
    pub limit_req_zone: BTreeMap<String, LimitReqZoneFile>,
    /// nginx `limit_conn_zone KEY zone=NAME:SIZE`.
    #[serde(default)]
    pub limit_conn_zone: BTreeMap<String, LimitConnZoneFile>,
    /// `[map.<name>]`: variables looked up from another value.
    #[serde(default)]
    pub map: BTreeMap<String, crate::config::map::MapFile>,
}

/// `[limit_req_zone.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitReqZoneFile {
    pub key: String,
    pub rate: String,
    pub size: Option<ByteSize>,
}

/// `[limit_conn_zone.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConnZoneFile {
    pub key: String,
    pub size: Option<ByteSize>,
}

/// `limit_req = [{ zone = "api", burst = 20, nodelay = true }]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitReqFile {
    pub zone: String,
    pub burst: Option<u32>,
    #[serde(default)]
    pub nodelay: bool,
    pub delay: Option<u32>,
}

/// `limit_conn = [{ zone = "addr", limit = 10 }]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConnFile {
    pub zone: String,
    pub limit: u32,
}

/// `[http]`: connection-level settings shared by every server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub client_header_timeout: Option<ConfigDuration>,
    pub client_body_timeout: Option<ConfigDuration>,
    pub send_timeout: Option<ConfigDuration>,
    pub client_max_body_size: Option<ByteSize>,
    /// Request bodies up to this size are held in memory before they go
    /// upstream; larger ones go to a temporary file first.
    pub client_body_buffer_size: Option<ByteSize>,
    /// Where request bodies larger than `client_body_buffer_size` wait.
    pub client_body_temp_path: Option<PathBuf>,
    pub max_header_size: Option<ByteSize>,
    pub http2: Option<bool>,
    /// Plain HTTP/1 requests without a body answered by vigil's own code.
    pub own_http1: Option<bool>,
    pub shutdown_timeout: Option<ConfigDuration>,
    pub max_connections: Option<usize>,
    /// Worker threads; default one per core.
    pub workers: Option<usize>,
    /// `"auto"` (pin each worker to a CPU of its own when there is one
    /// per CPU) or `"off"`.
    pub worker_cpu_affinity: Option<String>,
    /// Trusted proxies for the real client address (servers inherit it).
    pub set_real_ip_from: Option<Vec<String>>,
    pub real_ip_header: Option<String>,
    pub real_ip_recursive: Option<bool>,
    /// Time allowed for a PROXY protocol header on listeners that expect it.
    pub proxy_protocol_timeout: Option<ConfigDuration>,
    /// DNS servers for upstream names, `"ip"` or `"ip:port"` (nginx `resolver`).
    pub resolver: Option<Vec<String>>,
    pub resolver_timeout: Option<ConfigDuration>,
    // On-the-fly compression (see `config::compression`).
    pub gzip: Option<bool>,
    pub gzip_comp_level: Option<i64>,
    pub gzip_types: Option<Vec<String>>,
    pub gzip_min_length: Option<ByteSize>,
    pub gzip_vary: Option<bool>,
    pub gzip_proxied: Option<Vec<String>>,
    pub gzip_http_version: Option<String>,
    pub brotli: Option<bool>,
    pub brotli_comp_level: Option<i64>,
    pub zstd: Option<bool>,
    pub zstd_comp_level: Option<i64>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// `"stdout"`, `"stderr"`, `"off"` or a file path.
    pub access_log: Option<String>,
    /// `"combined"` or `"json"`.
    pub access_log_format: Option<String>,
    /// Per-worker buffer; full buffers are written whole (nginx `buffer=`).
    pub access_log_buffer: Option<ByteSize>,
    /// Longest a line waits in a buffer (nginx `flush=`).
    pub access_log_flush: Option<ConfigDuration>,
    /// tracing level for everything else: error, warn, info, debug, trace.
    pub level: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    pub listen: Option<String>,
    /// Test hooks (`POST /debug/stall`); never in production.
    #[serde(default)]
    pub debug: bool,
}

/// `[[server]]`: a virtual server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub listen: Vec<String>,
    #[serde(default)]
    pub server_name: Vec<String>,
    #[serde(default)]
    pub default_server: bool,
    /// Default `root` for locations that set neither root, alias,
    /// proxy_pass nor return.
    pub root: Option<PathBuf>,
    pub index: Option<Vec<String>>,
    pub client_max_body_size: Option<ByteSize>,
    pub tls: Option<TlsFile>,
    #[serde(default)]
    pub redirect_https: bool,
    pub https_port: Option<u16>,
    pub hsts: Option<String>,
    #[serde(default)]
    pub add_header: BTreeMap<String, String>,
    /// nginx `allow` / `deny`, in order: `["allow 10.0.0.0/8", "deny all"]`.
    pub access: Option<Vec<String>>,
    pub limit_req: Option<Vec<LimitReqFile>>,
    pub limit_req_status: Option<u16>,
    pub limit_conn: Option<Vec<LimitConnFile>>,
    pub limit_conn_status: Option<u16>,
    /// The realm, or `"off"`.
    pub auth_basic: Option<String>,
    pub auth_basic_user_file: Option<PathBuf>,
    pub set_real_ip_from: Option<Vec<String>>,
    pub real_ip_header: Option<String>,
    pub real_ip_recursive: Option<bool>,
    /// Every connection on this server's listen addresses starts with a
    /// PROXY protocol header (nginx `listen ... proxy_protocol`).
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub location: Vec<LocationFile>,
    #[serde(default)]
    pub rewrite: Vec<crate::config::rewrite::RewriteFile>,
    #[serde(default)]
    pub error_page: Vec<crate::config::error_page::ErrorPageFile>,
    // On-the-fly compression (see `config::compression`).
    pub gzip: Option<bool>,
    pub gzip_comp_level: Option<i64>,
    pub gzip_types: Option<Vec<String>>,
    pub gzip_min_length: Option<ByteSize>,
    pub gzip_vary: Option<bool>,
    pub gzip_proxied: Option<Vec<String>>,
    pub gzip_http_version: Option<String>,
    pub brotli: Option<bool>,
    pub brotli_comp_level: Option<i64>,
    pub zstd: Option<bool>,
    pub zstd_comp_level: Option<i64>,
}

/// `tls = { cert = "...", key = "..." }` on a server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[[server.location]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationFile {
    pub path: String,
    #[serde(rename = "return")]
    pub return_: Option<ReturnFile>,
    pub root: Option<PathBuf>,
    pub alias: Option<PathBuf>,
    pub index: Option<Vec<String>>,
    pub try_files: Option<Vec<String>>,
    pub expires: Option<String>,
    #[serde(default)]
    pub gzip_static: bool,
    pub proxy_pass: Option<String>,
    #[serde(default)]
    pub proxy_set_header: BTreeMap<String, String>,
    #[serde(default)]
    pub add_header: BTreeMap<String, String>,
    pub client_max_body_size: Option<ByteSize>,
    /// Tunnel `Upgrade` requests (WebSocket) to the upstream.
    #[serde(default)]
    pub websocket: bool,
    /// `false`: the request body streams upstream as it arrives (nginx
    /// `proxy_request_buffering off`), not read whole first.
    pub request_buffering: Option<bool>,
    /// `false`: vigil adds none of its X-Forwarded-For / X-Real-IP /
    /// X-Forwarded-Proto / X-Forwarded-Host (nginx adds none either).
    pub forwarding_headers: Option<bool>,
    /// nginx `internal`: reachable only by an internal redirect (an
    /// error page, try_files, a rewrite); a client asking directly gets 404.
    #[serde(default)]
    pub internal: bool,
    /// nginx `allow` / `deny`, in order: `["allow 10.0.0.0/8", "deny all"]`.
    pub access: Option<Vec<String>>,
    pub limit_req: Option<Vec<LimitReqFile>>,
    pub limit_req_status: Option<u16>,
    pub limit_conn: Option<Vec<LimitConnFile>>,
    pub limit_conn_status: Option<u16>,
    /// The realm, or `"off"`.
    pub auth_basic: Option<String>,
    pub auth_basic_user_file: Option<PathBuf>,
    #[serde(default)]
    pub rewrite: Vec<crate::config::rewrite::RewriteFile>,
    #[serde(default)]
    pub error_page: Vec<crate::config::error_page::ErrorPageFile>,
    /// Answer the upstream's error statuses with `error_page`.
    #[serde(default)]
    pub proxy_intercept_errors: bool,
    // On-the-fly compression (see `config::compression`).
    pub gzip: Option<bool>,
    pub gzip_comp_level: Option<i64>,
    pub gzip_types: Option<Vec<String>>,
    pub gzip_min_length: Option<ByteSize>,
    pub gzip_vary: Option<bool>,
    pub gzip_proxied: Option<Vec<String>>,
    pub gzip_http_version: Option<String>,
    pub brotli: Option<bool>,
    pub brotli_comp_level: Option<i64>,
    pub zstd: Option<bool>,
    pub zstd_comp_level: Option<i64>,
}

/// `return = { status = 200, body = "ok\n" }` or
/// `return = { status = 301, location = "https://$host$request_uri" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnFile {
    pub status: u16,
    pub body: Option<String>,
    pub location: Option<String>,
    pub content_type: Option<String>,
}

/// `[upstream.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub balance: Option<String>,
    pub hash_key: Option<String>,
    pub keepalive: Option<usize>,
    pub keepalive_timeout: Option<ConfigDuration>,
    pub connect_timeout: Option<ConfigDuration>,
    pub read_timeout: Option<ConfigDuration>,
    pub send_timeout: Option<ConfigDuration>,
    pub tries: Option<u32>,
    pub next_upstream_timeout: Option<ConfigDuration>,
    pub next_upstream: Option<Vec<String>>,
    #[serde(default)]
    pub servers: Vec<UpstreamServerFile>,
    pub health_check: Option<HealthCheckFile>,
    pub tls: Option<UpstreamTlsFile>,
    /// Re-resolve server names this often instead of at their DNS TTL.
    pub resolve_interval: Option<ConfigDuration>,
}

/// `tls = { verify = true, ca = "ca.pem", sni = "app.internal" }` on an
/// upstream; `tls = {}` turns TLS on with the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    pub verify: Option<bool>,
    pub ca: Option<PathBuf>,
    pub sni: Option<String>,
}

/// One entry of `servers = [...]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamServerFile {
    pub addr: String,
    pub weight: Option<u32>,
    pub max_fails: Option<u32>,
    pub fail_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub backup: bool,
    #[serde(default)]
    pub down: bool,
}

/// `health_check = { path = "/health", interval = "2s", ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    pub path: Option<String>,
    pub interval: Option<ConfigDuration>,
    pub timeout: Option<ConfigDuration>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub host: Option<String>,
    /// Accepted status codes, e.g. `["2xx", "3xx"]` (the default) or `[200]`.
    pub expect_status: Option<Vec<toml::Value>>,
}
