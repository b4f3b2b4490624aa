//! File → [`Config`]: every check, cross-reference and default lives here.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use regex::RegexBuilder;

use super::error::{Problems, index, join, line_at, line_of_key};
use super::file::*;
use super::template::Template;
use super::*;

pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file = deserialize(text, path)?;
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut problems = Problems::new();
    let mut warnings = Vec::new();
    let config = Validator {
        problems: &mut problems,
        warnings: &mut warnings,
        base_dir: &base_dir,
    }
    .config(file, path);
    problems.finish(path, text)?;
    // Every problem is recorded before a `None` is returned, so an empty
    // problem list means the config was built.
    let mut config = config.ok_or_else(|| ConfigError::Invalid {
        path: path.to_owned(),
        problems: vec![Problem {
            key: String::new(),
            line: None,
            reason: "invalid config".into(),
        }],
    })?;
    config.warnings = warnings
        .into_iter()
        .map(|(key, reason)| {
            let place = match line_of_key(text, &key) {
                Some(line) => format!("{}:{line}", path.display()),
                None => path.display().to_string(),
            };
            format!("{place}: {key}: {reason}")
        })
        .collect();
    Ok(config)
}

/// Deserializes with the key path of any type error.
fn deserialize(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    let invalid = |key: String, line: Option<usize>, reason: String| ConfigError::Invalid {
        path: path.to_owned(),
        problems: vec![Problem { key, line, reason }],
    };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        invalid(
            String::new(),
            e.span().map(|s| line_at(text, s.start)),
            e.message().trim().to_owned(),
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.span().map(|s| line_at(text, s.start));
        let key = if key == "." { String::new() } else { key };
        invalid(key, line, inner.message().trim().to_owned())
    })
}

struct Validator<'a> {
    problems: &'a mut Problems,
    /// `(key, why)`: accepted, but worth telling (see [`Config::warnings`]).
    warnings: &'a mut Vec<(String, String)>,
    base_dir: &'a Path,
}

const DEFAULT_INDEX: &str = "index.html";

impl Validator<'_> {
    fn config(&mut self, file: ConfigFile, path: &Path) -> Option<Config> {
        let http = self.http(&file.http);
        let log = self.log(&file.log);
        let admin = file.admin.as_ref().and_then(|a| self.admin(a));
        let vrrp = file
            .vrrp
            .as_ref()
            .and_then(|v| super::vrrp::validate(v, "vrrp", self.problems));

        let mut upstreams = BTreeMap::new();
        for (name, up) in &file.upstream {
            if let Some(u) = self.upstream(name, up) {
                upstreams.insert(name.clone(), Arc::new(u));
            }
        }

        let mut servers = Vec::new();
        for (i, server) in file.server.iter().enumerate() {
            if let Some(s) = self.server(i, server, &mut upstreams) {
                servers.push(s);
            }
        }
        if file.server.is_empty() && file.vrrp.is_none() {
            self.problems.add(
                "",
                "nothing to do: the config has no [[server]] and no [vrrp] section",
            );
        }
        let listeners = self.listeners(&file.server, &servers);
        if let Some(v) = &vrrp {
            self.check_tracking(v, &upstreams, !file.server.is_empty());
        }

        if !self.problems.is_empty() {
            return None;
        }
        Some(Config {
            path: path.to_owned(),
            servers: servers.into_iter().map(|(s, _)| Arc::new(s)).collect(),
            listeners,
            upstreams,
            http,
            log,
            admin,
            vrrp,
            warnings: Vec::new(),
        })
    }

    fn http(&mut self, f: &HttpFile) -> HttpSettings {
        let max_header_size = f.max_header_size.map_or(32 << 10, |s| s.0 as usize);
        if f.workers == Some(0) {
            self.problems.add(
                "http.workers",
                "must be at least 1 (or leave it out: one per core)",
            );
        }
        if max_header_size < 1024 {
            self.problems
                .add("http.max_header_size", "must be at least 1k");
        }
        HttpSettings {
            client_header_timeout: dur(f.client_header_timeout, 60),
            client_body_timeout: dur(f.client_body_timeout, 60),
            send_timeout: dur(f.send_timeout, 60),
            client_max_body_size: f.client_max_body_size.map_or(1 << 20, |s| s.0),
            max_header_size,
            http2: f.http2.unwrap_or(true),
            shutdown_timeout: dur(f.shutdown_timeout, 30),
            max_connections: f.max_connections.unwrap_or(100_000),
            workers: f.workers.filter(|&n| n > 0).unwrap_or_else(default_workers),
        }
    }

    fn log(&mut self, f: &LogFile) -> LogSettings {
        let access_log = match f.access_log.as_deref() {
            None | Some("stdout") => AccessLogTarget::Stdout,
            Some("stderr") => AccessLogTarget::Stderr,
            Some("off") => AccessLogTarget::Off,
            Some(path) => AccessLogTarget::File(self.resolve(Path::new(path))),
        };
        let access_log_format = match f.access_log_format.as_deref() {
            None | Some("combined") => AccessLogFormat::Combined,
            Some("json") => AccessLogFormat::Json,
            Some(other) => {
                self.problems.add(
                    "log.access_log_format",
                    format!("{other:?} is not a format; use \"combined\" or \"json\""),
                );
                AccessLogFormat::Combined
            }
        };
        let access_log_buffer = f.access_log_buffer.map_or(64 * 1024, |b| b.0);
        if access_log_buffer > MAX_ACCESS_LOG_BUFFER {
            self.problems.add(
                "log.access_log_buffer",
                format!("{access_log_buffer} bytes is more than the 16m a buffer may hold"),
            );
        }
        let access_log_flush = dur(f.access_log_flush, 1);
        if access_log_flush.is_zero() {
            self.problems.add(
                "log.access_log_flush",
                "must be more than 0 (e.g. \"1s\"); lines would never wait, so use access_log_buffer = 0 for that",
            );
        }
        let level = f.level.clone().unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            self.problems.add(
                "log.level",
                format!("{level:?} is not a level; use error, warn, info, debug or trace"),
            );
        }
        LogSettings {
            access_log,
            access_log_format,
            access_log_buffer: access_log_buffer.min(MAX_ACCESS_LOG_BUFFER) as usize,
            access_log_flush,
            level,
        }
    }

    fn admin(&mut self, f: &AdminFile) -> Option<AdminSettings> {
        let listen = self.problems.check(
            "admin.listen",
            parse_listen(f.listen.as_deref().unwrap_or("127.0.0.1:9090")),
        )?;
        Some(AdminSettings {
            listen,
            debug: f.debug,
        })
    }

    /// Relative paths are relative to the config file's directory.
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    // ---- upstreams -----------------------------------------------------

    fn upstream(&mut self, name: &str, f: &UpstreamFile) -> Option<UpstreamConfig> {
        let key = join("upstream", name);
        let balance = match f.balance.as_deref().unwrap_or("round_robin") {
            "round_robin" => BalanceMethod::RoundRobin,
            "least_conn" => BalanceMethod::LeastConn,
            "ip_hash" => BalanceMethod::IpHash,
            "random_two" => BalanceMethod::RandomTwo,
            "hash" => match &f.hash_key {
                Some(k) => BalanceMethod::Hash(
                    self.problems
                        .check(join(&key, "hash_key"), Template::parse(k))?,
                ),
                None => {
                    self.problems.add(
                        join(&key, "hash_key"),
                        "balance = \"hash\" needs a hash_key, e.g. \"$request_uri\" or \"$cookie_session\"",
                    );
                    return None;
                }
            },
            other => {
                self.problems.add(
                    join(&key, "balance"),
                    format!(
                        "{other:?} is not a method; use round_robin, least_conn, ip_hash, hash or random_two"
                    ),
                );
                return None;
            }
        };
        if f.hash_key.is_some() && !matches!(balance, BalanceMethod::Hash(_)) {
            self.problems.add(
                join(&key, "hash_key"),
                "hash_key only applies with balance = \"hash\"",
            );
        }
        if f.servers.is_empty() {
            self.problems.add(
                join(&key, "servers"),
                "an upstream needs at least one server",
            );
        }
        // A bad tls table has been reported; the upstream still gets
        // built (TLS with defaults) so that the locations using it are not
        // also reported as naming an unknown upstream.
        let tls = f.tls.as_ref().map(|t| {
            self.upstream_tls(&join(&key, "tls"), t)
                .unwrap_or(UpstreamTls {
                    verify: true,
                    ca: None,
                    sni: None,
                })
        });
        let mut servers = Vec::new();
        for (i, s) in f.servers.iter().enumerate() {
            servers.extend(self.upstream_server(
                &index(&join(&key, "servers"), i),
                s,
                tls.as_ref(),
            ));
        }
        let sticky = matches!(balance, BalanceMethod::IpHash | BalanceMethod::Hash(_));
        if sticky && servers.iter().any(|s| s.backup) {
            // nginx refuses this too: a hash maps keys to fixed servers, so
            // "use the backup only when all primaries are down" has no
            // consistent meaning.
            self.problems.add(
                join(&key, "servers"),
                "backup servers cannot be used with ip_hash or hash balancing",
            );
        }
        if !servers.is_empty() && servers.iter().all(|s| s.backup) {
            self.problems.add(
                join(&key, "servers"),
                "every server is a backup; at least one must be a primary",
            );
        }
        let next_upstream = self.next_upstream(&join(&key, "next_upstream"), &f.next_upstream)?;
        let health_check = match &f.health_check {
            Some(h) => Some(self.health_check(&join(&key, "health_check"), h)?),
            None => None,
        };
        let keepalive = f.keepalive.unwrap_or(32);
        Some(UpstreamConfig {
            name: name.to_owned(),
            balance,
            servers,
            keepalive,
            keepalive_timeout: dur(f.keepalive_timeout, 60),
            connect_timeout: dur(f.connect_timeout, 60),
            read_timeout: dur(f.read_timeout, 60),
            send_timeout: dur(f.send_timeout, 60),
            tries: f.tries.unwrap_or(0),
            next_upstream_timeout: f
                .next_upstream_timeout
                .map(|d| d.0)
                .filter(|d| !d.is_zero()),
            next_upstream,
            health_check,
            tls,
        })
    }

    fn upstream_tls(&mut self, key: &str, f: &UpstreamTlsFile) -> Option<UpstreamTls> {
        let verify = f.verify.unwrap_or(true);
        let ca = match &f.ca {
            None => None,
            Some(p) => {
                let path = self.resolve(p);
                let certs = self
                    .problems
                    .check(join(key, "ca"), super::certificate::parse_ca(&path))?;
                Some(CaBundle { path, certs })
            }
        };
        if !verify && ca.is_some() {
            self.problems.add(
                join(key, "ca"),
                "ca has no effect with verify = false; remove one of them",
            );
        }
        if let Some(sni) = &f.sni {
            self.problems.check(join(key, "sni"), tls_name(sni))?;
        }
        Some(UpstreamTls {
            verify,
            ca,
            sni: f.sni.clone(),
        })
    }

    fn upstream_server(
        &mut self,
        key: &str,
        f: &UpstreamServerFile,
        tls: Option<&UpstreamTls>,
    ) -> Vec<UpstreamServer> {
        let weight = f.weight.unwrap_or(1);
        if weight == 0 {
            self.problems
                .add(join(key, "weight"), "weight must be at least 1");
        }
        let default_port = if tls.is_some() { 443 } else { 80 };
        let addrs = match resolve_addr(&f.addr, default_port) {
            Ok(a) => a,
            Err(e) => {
                self.problems.add(join(key, "addr"), e);
                return Vec::new();
            }
        };
        let tls_name = match tls {
            None => None,
            Some(t) => {
                let name = t.sni.clone().unwrap_or_else(|| host_part(&f.addr));
                match self.problems.check(join(key, "addr"), tls_name(&name)) {
                    Some(n) => Some(n),
                    None => return Vec::new(),
                }
            }
        };
        addrs
            .into_iter()
            .map(|addr| UpstreamServer {
                addr,
                label: addr.to_string(),
                weight: weight.max(1),
                max_fails: f.max_fails.unwrap_or(1),
                fail_timeout: dur(f.fail_timeout, 10),
                backup: f.backup,
                down: f.down,
                tls_name: tls_name.clone(),
            })
            .collect()
    }

    fn next_upstream(&mut self, key: &str, f: &Option<Vec<String>>) -> Option<NextUpstream> {
        let Some(list) = f else {
            return Some(NextUpstream {
                error: true,
                timeout: true,
                ..Default::default()
            });
        };
        let mut n = NextUpstream::default();
        for (i, item) in list.iter().enumerate() {
            match item.as_str() {
                "error" => n.error = true,
                "timeout" => n.timeout = true,
                "http_500" => n.http_500 = true,
                "http_502" => n.http_502 = true,
                "http_503" => n.http_503 = true,
                "http_504" => n.http_504 = true,
                "http_429" => n.http_429 = true,
                "non_idempotent" => n.non_idempotent = true,
                "off" => {}
                other => self.problems.add(
                    index(key, i),
                    format!(
                        "{other:?} is not a condition; use error, timeout, http_500, http_502, \
                         http_503, http_504, http_429, non_idempotent or off"
                    ),
                ),
            }
        }
        if list.iter().any(|s| s == "off") && list.len() > 1 {
            self.problems
                .add(key, "\"off\" cannot be combined with other conditions");
        }
        Some(n)
    }

    fn health_check(&mut self, key: &str, f: &HealthCheckFile) -> Option<HealthCheck> {
        let path = f.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') {
            self.problems
                .add(join(key, "path"), "must start with /, e.g. \"/health\"");
        }
        let interval = dur(f.interval, 5);
        let timeout = f.timeout.map_or(Duration::from_secs(1), |d| d.0);
        if interval.is_zero() {
            self.problems
                .add(join(key, "interval"), "must be more than 0");
        }
        if timeout.is_zero() {
            self.problems
                .add(join(key, "timeout"), "must be more than 0");
        }
        let (rise, fall) = (f.rise.unwrap_or(2), f.fall.unwrap_or(3));
        if rise == 0 {
            self.problems.add(join(key, "rise"), "must be at least 1");
        }
        if fall == 0 {
            self.problems.add(join(key, "fall"), "must be at least 1");
        }
        let mut expect = Vec::new();
        match &f.expect_status {
            None => expect.push(200..=399),
            Some(list) => {
                for (i, v) in list.iter().enumerate() {
                    match status_range(v) {
                        Some(r) => expect.push(r),
                        None => self.problems.add(
                            index(&join(key, "expect_status"), i),
                            format!("{v} is not a status; use e.g. 200 or \"2xx\""),
                        ),
                    }
                }
            }
        }
        Some(HealthCheck {
            path,
            host: f.host.clone(),
            interval,
            timeout,
            rise: rise.max(1),
            fall: fall.max(1),
            expect,
        })
    }

    // ---- servers -------------------------------------------------------

    fn server(
        &mut self,
        i: usize,
        f: &ServerFile,
        upstreams: &mut BTreeMap<String, Arc<UpstreamConfig>>,
    ) -> Option<(VirtualServer, Vec<SocketAddr>)> {
        let key = index("server", i);
        if f.listen.is_empty() {
            self.problems.add(
                join(&key, "listen"),
                "a server needs at least one listen address, e.g. [\"0.0.0.0:8080\"]",
            );
        }
        let mut listen = Vec::new();
        for (j, l) in f.listen.iter().enumerate() {
            if let Some(a) = self
                .problems
                .check(index(&join(&key, "listen"), j), parse_listen(l))
            {
                if listen.contains(&a) {
                    self.problems.add(
                        index(&join(&key, "listen"), j),
                        format!("{a} is listed twice"),
                    );
                }
                listen.push(a);
            }
        }
        let mut names = Vec::new();
        for (j, n) in f.server_name.iter().enumerate() {
            if let Some(n) = self
                .problems
                .check(index(&join(&key, "server_name"), j), parse_server_name(n))
            {
                names.extend(n);
            }
        }
        let label = f.server_name.first().cloned().unwrap_or_else(|| "_".into());

        let tls = f
            .tls
            .as_ref()
            .and_then(|t| self.server_tls(&join(&key, "tls"), t, &names));
        // A certificate that failed to load has been reported; the server
        // is then left out, so it is not also reported as a plain-HTTP
        // server mixed into a TLS listener.
        let tls_failed = f.tls.is_some() && tls.is_none();
        let redirect_https = if f.redirect_https {
            if f.tls.is_some() {
                self.problems.add(
                    join(&key, "redirect_https"),
                    "redirect_https belongs on a plain-HTTP server, not on one with tls",
                );
            }
            Some(RedirectHttps {
                port: f.https_port.unwrap_or(443),
            })
        } else {
            if f.https_port.is_some() {
                self.problems.add(
                    join(&key, "https_port"),
                    "https_port only applies with redirect_https = true",
                );
            }
            None
        };
        let hsts = f.hsts.as_ref().and_then(|h| {
            self.problems.check(
                join(&key, "hsts"),
                HeaderValue::from_str(h).map_err(|_| format!("{h:?} is not a header value")),
            )
        });
        if hsts.is_some() && f.tls.is_none() {
            self.problems.add(
                join(&key, "hsts"),
                "hsts is only sent over TLS; this server has no tls",
            );
        }
        let add_header = self.headers(&join(&key, "add_header"), &f.add_header);

        let defaults = ServerDefaults {
            root: f.root.as_ref().map(|r| self.resolve(r)),
            index: f.index.clone(),
        };
        let mut locations = Vec::new();
        for (j, l) in f.location.iter().enumerate() {
            let lkey = index(&join(&key, "location"), j);
            if let Some(loc) = self.location(&lkey, l, &defaults, upstreams) {
                locations.push(loc);
            }
        }
        if f.location.is_empty() && redirect_https.is_none() {
            if let Some(root) = &defaults.root {
                // A server with just a root serves it, as nginx does.
                locations.push(Location {
                    label: "/".into(),
                    pattern: LocationPattern::Prefix {
                        prefix: "/".into(),
                        skip_regex: false,
                    },
                    action: Action::Static(Box::new(StaticSite {
                        base: FileBase::Root(root.clone()),
                        index: defaults.index(),
                        try_files: Vec::new(),
                        fallback: None,
                        expires: None,
                        gzip_static: false,
                    })),
                    add_header: Vec::new(),
                    client_max_body_size: None,
                });
            } else {
                self.problems.add(
                    join(&key, "location"),
                    "a server needs at least one [[server.location]] (or a root, or redirect_https)",
                );
            }
        }
        self.check_duplicate_locations(&key, &locations);
        self.check_named_references(&key, &f.location, &locations);
        if tls_failed {
            return None;
        }

        Some((
            VirtualServer {
                index: i,
                label,
                names,
                locations,
                client_max_body_size: f.client_max_body_size.map(|s| s.0),
                tls,
                redirect_https,
                hsts,
                add_header,
            },
            listen,
        ))
    }

    /// Loads a server's certificate and key; warns about expiry and about
    /// server names the certificate does not cover.
    fn server_tls(&mut self, key: &str, f: &TlsFile, names: &[ServerName]) -> Option<TlsSettings> {
        let cert = self.resolve(&f.cert);
        let key_path = self.resolve(&f.key);
        let certificate = match super::certificate::load(&cert, &key_path) {
            Ok(c) => c,
            Err(e) => {
                let field = if e.file() == key_path && key_path != cert {
                    "key"
                } else {
                    "cert"
                };
                self.problems.add(join(key, field), e.to_string());
                return None;
            }
        };
        if let Some(w) = certificate.validity_warning(std::time::SystemTime::now()) {
            self.warnings.push((join(key, "cert"), w));
        }
        for name in names {
            let (shown, covered) = match name {
                ServerName::Exact(host) => (host.clone(), certificate.covers(host)),
                ServerName::Suffix { suffix, also_bare } => {
                    let wildcard = format!("*{suffix}");
                    let bare_ok = !also_bare || certificate.covers(&suffix[1..]);
                    (
                        wildcard.clone(),
                        certificate.names.contains(&wildcard) && bare_ok,
                    )
                }
                // Patterns cannot be compared with certificate names.
                ServerName::Prefix(_) | ServerName::Regex(_) => continue,
            };
            if !covered {
                self.warnings.push((
                    join(key, "cert"),
                    format!(
                        "{} does not cover server_name {shown:?} (it is for: {}); \
                         clients asking for that name will see a certificate error",
                        cert.display(),
                        if certificate.names.is_empty() {
                            "no names".to_owned()
                        } else {
                            certificate.names.join(", ")
                        }
                    ),
                ));
            }
        }
        Some(TlsSettings {
            cert,
            key: key_path,
            certificate,
        })
    }

    fn headers(
        &mut self,
        key: &str,
        map: &BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (name, value) in map {
            let k = join(key, name);
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                self.problems
                    .add(k, format!("{name:?} is not a header name"));
                continue;
            };
            let Ok(v) = HeaderValue::from_str(value) else {
                self.problems
                    .add(k, format!("{value:?} is not a header value"));
                continue;
            };
            out.push((n, v));
        }
        out
    }

    fn location(
        &mut self,
        key: &str,
        f: &LocationFile,
        defaults: &ServerDefaults,
        upstreams: &mut BTreeMap<String, Arc<UpstreamConfig>>,
    ) -> Option<Location> {
        let pattern = self
            .problems
            .check(join(key, "path"), parse_location_pattern(&f.path))?;
        let add_header = self.headers(&join(key, "add_header"), &f.add_header);

        let actions = [
            f.return_.is_some(),
            f.proxy_pass.is_some(),
            f.root.is_some() || f.alias.is_some(),
        ];
        if actions.iter().filter(|a| **a).count() > 1 {
            self.problems.add(
                key,
                "a location does one thing: choose return, proxy_pass, or root/alias",
            );
            return None;
        }
        let static_only = [
            ("try_files", f.try_files.is_some()),
            ("index", f.index.is_some()),
            ("expires", f.expires.is_some()),
            ("gzip_static", f.gzip_static),
        ];
        let proxy_only = [
            ("proxy_set_header", !f.proxy_set_header.is_empty()),
            ("websocket", f.websocket),
        ];

        let action = if let Some(r) = &f.return_ {
            for (name, set) in static_only.iter().chain(&proxy_only) {
                if *set {
                    self.problems.add(
                        join(key, name),
                        format!("{name} has no effect in a location that uses return"),
                    );
                }
            }
            Action::Return(self.return_action(&join(key, "return"), r)?)
        } else if let Some(target) = &f.proxy_pass {
            for (name, set) in &static_only {
                if *set {
                    self.problems.add(
                        join(key, name),
                        format!("{name} has no effect in a location that uses proxy_pass"),
                    );
                }
            }
            Action::Proxy(self.proxy_pass(key, target, &pattern, f, upstreams)?)
        } else {
            for (name, set) in &proxy_only {
                if *set {
                    self.problems.add(
                        join(key, name),
                        format!("{name} only applies with proxy_pass"),
                    );
                }
            }
            Action::Static(Box::new(self.static_site(key, f, &pattern, defaults)?))
        };
        Some(Location {
            label: f.path.clone(),
            pattern,
            action,
            add_header,
            client_max_body_size: f.client_max_body_size.map(|s| s.0),
        })
    }

    fn return_action(&mut self, key: &str, r: &ReturnFile) -> Option<ReturnAction> {
        let status = match StatusCode::from_u16(r.status) {
            Ok(s) if (200..=599).contains(&r.status) => s,
            _ => {
                self.problems.add(
                    join(key, "status"),
                    format!("{} is not a status code between 200 and 599", r.status),
                );
                return None;
            }
        };
        let is_redirect = matches!(r.status, 301 | 302 | 303 | 307 | 308);
        if is_redirect && r.location.is_none() {
            self.problems.add(
                join(key, "location"),
                format!("a {} redirect needs location = \"...\"", r.status),
            );
        }
        if !is_redirect && r.location.is_some() {
            self.problems.add(
                join(key, "location"),
                "location is only sent with a redirect status (301, 302, 303, 307, 308)",
            );
        }
        let body = match &r.body {
            Some(b) => Some(self.problems.check(join(key, "body"), Template::parse(b))?),
            None => None,
        };
        let location = match &r.location {
            Some(l) => Some(
                self.problems
                    .check(join(key, "location"), Template::parse(l))?,
            ),
            None => None,
        };
        let content_type = r.content_type.as_deref().unwrap_or("text/plain");
        let content_type = self.problems.check(
            join(key, "content_type"),
            HeaderValue::from_str(content_type)
                .map_err(|_| format!("{content_type:?} is not a header value")),
        )?;
        Some(ReturnAction {
            status,
            body,
            location,
            content_type,
        })
    }

    fn proxy_pass(
        &mut self,
        key: &str,
        target: &str,
        pattern: &LocationPattern,
        f: &LocationFile,
        upstreams: &mut BTreeMap<String, Arc<UpstreamConfig>>,
    ) -> Option<ProxyPass> {
        let pkey = join(key, "proxy_pass");
        let parsed = self.problems.check(&pkey, parse_proxy_target(target))?;
        let upstream = match parsed.authority {
            Authority::Named(name) => {
                if !upstreams.contains_key(&name) {
                    let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                    self.problems.add(
                        &pkey,
                        if known.is_empty() {
                            format!("unknown upstream {name:?}: no [upstream.{name}] is defined")
                        } else {
                            format!("unknown upstream {name:?}; defined: {}", known.join(", "))
                        },
                    );
                    return None;
                }
                if parsed.tls && upstreams.get(&name).is_some_and(|u| u.tls.is_none()) {
                    // The pool decides how its servers are reached; an
                    // https:// here would otherwise be silently ignored.
                    self.problems.add(
                        &pkey,
                        format!(
                            "https://{name}: [upstream.{name}] does not use TLS; add \
                             tls = {{}} to it (or write http://{name})"
                        ),
                    );
                    return None;
                }
                name
            }
            Authority::Address(text) => {
                // nginx's implicit upstream: one server, default settings.
                let default_port = if parsed.tls { 443 } else { 80 };
                let addrs = self
                    .problems
                    .check(&pkey, resolve_addr(&text, default_port))?;
                let tls = parsed.tls.then_some(UpstreamTls {
                    verify: true,
                    ca: None,
                    sni: None,
                });
                let tls_name = match &tls {
                    Some(_) => Some(self.problems.check(&pkey, tls_name(&host_part(&text)))?),
                    None => None,
                };
                let name = text.clone();
                if upstreams
                    .get(&name)
                    .is_some_and(|u| u.tls.is_some() != parsed.tls)
                {
                    self.problems.add(
                        &pkey,
                        format!(
                            "{text} is used with both http:// and https://; \
                             define an [upstream] for each"
                        ),
                    );
                    return None;
                }
                upstreams.entry(name.clone()).or_insert_with(|| {
                    Arc::new(UpstreamConfig {
                        name: name.clone(),
                        balance: BalanceMethod::RoundRobin,
                        servers: addrs
                            .into_iter()
                            .map(|addr| UpstreamServer {
                                addr,
                                label: addr.to_string(),
                                weight: 1,
                                max_fails: 1,
                                fail_timeout: Duration::from_secs(10),
                                backup: false,
                                down: false,
                                tls_name: tls_name.clone(),
                            })
                            .collect(),
                        keepalive: 32,
                        keepalive_timeout: Duration::from_secs(60),
                        connect_timeout: Duration::from_secs(60),
                        read_timeout: Duration::from_secs(60),
                        send_timeout: Duration::from_secs(60),
                        tries: 0,
                        next_upstream_timeout: None,
                        next_upstream: NextUpstream {
                            error: true,
                            timeout: true,
                            ..Default::default()
                        },
                        health_check: None,
                        tls,
                    })
                });
                name
            }
        };
        let replace_prefix = match (parsed.path, pattern) {
            (None, _) => None,
            (Some(with), LocationPattern::Prefix { prefix, .. }) => Some(ReplacePrefix {
                location_prefix: prefix.clone(),
                with,
            }),
            (Some(with), LocationPattern::Exact(path)) => Some(ReplacePrefix {
                location_prefix: path.clone(),
                with,
            }),
            (Some(_), _) => {
                // Same rule as nginx: with a regex or named location there is
                // no prefix to replace.
                self.problems.add(
                    &pkey,
                    "proxy_pass cannot have a URI part in a regex or named location; \
                     write it without the path",
                );
                return None;
            }
        };
        let mut set_headers = Vec::new();
        for (name, value) in &f.proxy_set_header {
            let k = join(&join(key, "proxy_set_header"), name);
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                self.problems
                    .add(k, format!("{name:?} is not a header name"));
                continue;
            };
            if let Some(t) = self.problems.check(k, Template::parse(value)) {
                set_headers.push((n, t));
            }
        }
        Some(ProxyPass {
            upstream,
            replace_prefix,
            set_headers,
            websocket: f.websocket,
        })
    }

    fn static_site(
        &mut self,
        key: &str,
        f: &LocationFile,
        pattern: &LocationPattern,
        defaults: &ServerDefaults,
    ) -> Option<StaticSite> {
        let base = if let Some(alias) = &f.alias {
            let prefix = match pattern {
                LocationPattern::Prefix { prefix, .. } => prefix.clone(),
                LocationPattern::Exact(p) => p.clone(),
                _ => {
                    self.problems.add(
                        join(key, "alias"),
                        "alias needs a prefix or exact location; use root in regex and named locations",
                    );
                    return None;
                }
            };
            // nginx pitfall: location "/img/" with alias "/srv/img" (no
            // trailing slash) maps /img/a.png to /srv/imga.png. Refuse it.
            if prefix.ends_with('/') != alias.to_string_lossy().ends_with('/') {
                self.problems.add(
                    join(key, "alias"),
                    format!(
                        "alias {:?} and location {prefix:?} must both end with / or both not \
                         (otherwise paths are glued together)",
                        alias.display()
                    ),
                );
            }
            FileBase::Alias {
                prefix,
                dir: self.resolve(alias),
            }
        } else if let Some(root) = &f.root {
            FileBase::Root(self.resolve(root))
        } else if let Some(root) = &defaults.root {
            FileBase::Root(root.clone())
        } else {
            self.problems.add(
                key,
                "this location has nothing to do: set proxy_pass, return, root or alias \
                 (or a root on the server)",
            );
            return None;
        };
        let dir = match &base {
            FileBase::Root(d) | FileBase::Alias { dir: d, .. } => d,
        };
        if !dir.is_dir() {
            // Not fatal: the directory may be mounted later, and nginx does
            // not check either; but say so, it is usually a typo.
            tracing::warn!(key, dir = %dir.display(), "static directory does not exist (yet)");
        }
        let (try_files, fallback) = match &f.try_files {
            None => (Vec::new(), None),
            Some(list) if list.len() < 2 => {
                self.problems.add(
                    join(key, "try_files"),
                    "try_files needs at least one file and a fallback, e.g. [\"$uri\", \"=404\"]",
                );
                return None;
            }
            Some(list) => {
                let (last, files) = list.split_last()?;
                let fallback = if let Some(code) = last.strip_prefix('=') {
                    match code
                        .parse::<u16>()
                        .ok()
                        .and_then(|c| StatusCode::from_u16(c).ok())
                    {
                        Some(s) => TryFallback::Status(s),
                        None => {
                            self.problems.add(
                                index(&join(key, "try_files"), list.len() - 1),
                                format!("{last:?} is not a status; write e.g. \"=404\""),
                            );
                            return None;
                        }
                    }
                } else if let Some(name) = last.strip_prefix('@') {
                    TryFallback::Named(name.to_owned())
                } else if last.starts_with('/') {
                    TryFallback::Uri(last.clone())
                } else {
                    self.problems.add(
                        index(&join(key, "try_files"), list.len() - 1),
                        "the last try_files entry must be \"=CODE\", \"@name\" or a URI starting with /",
                    );
                    return None;
                };
                for (j, file) in files.iter().enumerate() {
                    if !(file.starts_with('/') || file.starts_with("$uri")) {
                        self.problems.add(
                            index(&join(key, "try_files"), j),
                            format!("{file:?} must start with / or $uri"),
                        );
                    }
                }
                (files.iter().cloned().map(TryFile).collect(), Some(fallback))
            }
        };
        let expires = match f.expires.as_deref() {
            None | Some("off") => None,
            Some("epoch") => Some(Expires::Epoch),
            Some("max") => Some(Expires::Max),
            Some(d) => Some(Expires::After(
                self.problems.check(
                    join(key, "expires"),
                    super::units::ConfigDuration::parse(d)
                        .map(|d| d.0)
                        .map_err(|e| format!("{e}; or use \"off\", \"epoch\", \"max\"")),
                )?,
            )),
        };
        let index_files = f.index.clone().unwrap_or_else(|| defaults.index());
        for (j, name) in index_files.iter().enumerate() {
            if name.is_empty() || name.contains('/') || name == ".." || name == "." {
                self.problems.add(
                    index(&join(key, "index"), j),
                    format!("{name:?} must be a plain file name"),
                );
            }
        }
        Some(StaticSite {
            base,
            index: index_files,
            try_files,
            fallback,
            expires,
            gzip_static: f.gzip_static,
        })
    }

    fn check_duplicate_locations(&mut self, key: &str, locations: &[Location]) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (j, loc) in locations.iter().enumerate() {
            let id = match &loc.pattern {
                LocationPattern::Exact(p) => format!("= {p}"),
                LocationPattern::Prefix { prefix, .. } => format!("prefix {prefix}"),
                LocationPattern::Regex(r) => format!("~ {}", r.as_str()),
                LocationPattern::Named(n) => format!("@{n}"),
            };
            if let Some(first) = seen.insert(id, j) {
                self.problems.add(
                    join(&index(&join(key, "location"), j), "path"),
                    format!(
                        "duplicate location {:?} (also location[{first}])",
                        loc.label
                    ),
                );
            }
        }
    }

    fn check_named_references(
        &mut self,
        key: &str,
        files: &[LocationFile],
        locations: &[Location],
    ) {
        let named: Vec<&str> = locations
            .iter()
            .filter_map(|l| match &l.pattern {
                LocationPattern::Named(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        for (j, f) in files.iter().enumerate() {
            let Some(last) = f.try_files.as_ref().and_then(|t| t.last()) else {
                continue;
            };
            if let Some(name) = last.strip_prefix('@') {
                if !named.contains(&name) {
                    self.problems.add(
                        index(
                            &join(&index(&join(key, "location"), j), "try_files"),
                            f.try_files.as_ref().map_or(0, |t| t.len() - 1),
                        ),
                        format!("no location \"@{name}\" in this server"),
                    );
                }
            }
        }
    }

    /// `[vrrp.instance.track]` refers to the proxy: check the references.
    fn check_tracking(
        &mut self,
        vrrp: &super::vrrp::VrrpConfig,
        upstreams: &BTreeMap<String, Arc<UpstreamConfig>>,
        has_servers: bool,
    ) {
        for (i, instance) in vrrp.instances.iter().enumerate() {
            let key = format!("vrrp.instance[{i}].track");
            for (name, _) in &instance.track.upstreams {
                if !upstreams.contains_key(name) {
                    let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                    self.problems.add(
                        join(&join(&key, "upstreams"), name),
                        format!(
                            "unknown upstream {name:?}; defined: {}",
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
            if instance.track.proxy.is_some() && !has_servers {
                self.problems.add(
                    join(&key, "proxy"),
                    "there is no [[server]] to probe; remove proxy or add a server",
                );
            }
        }
    }

    // ---- listeners -----------------------------------------------------

    fn listeners(
        &mut self,
        files: &[ServerFile],
        servers: &[(VirtualServer, Vec<SocketAddr>)],
    ) -> Vec<ListenerConfig> {
        let mut listeners: Vec<ListenerConfig> = Vec::new();
        for (pos, (server, addrs)) in servers.iter().enumerate() {
            for addr in addrs {
                let l = match listeners.iter_mut().find(|l| l.addr == *addr) {
                    Some(l) => l,
                    None => {
                        listeners.push(ListenerConfig {
                            addr: *addr,
                            servers: Vec::new(),
                            default_server: pos,
                            tls: server.tls.is_some(),
                        });
                        listeners.last_mut().expect("just pushed")
                    }
                };
                if l.tls != server.tls.is_some() {
                    self.problems.add(
                        join(&index("server", server.index), "listen"),
                        format!(
                            "{addr} mixes TLS and plain-HTTP servers; give every server on it tls, or none"
                        ),
                    );
                }
                l.servers.push(pos);
            }
        }
        for l in &mut listeners {
            let defaults: Vec<usize> = l
                .servers
                .iter()
                .copied()
                .filter(|&s| files[servers[s].0.index].default_server)
                .collect();
            match defaults.as_slice() {
                [] => l.default_server = l.servers[0],
                [one] => l.default_server = *one,
                [_, second, ..] => self.problems.add(
                    join(&index("server", servers[*second].0.index), "default_server"),
                    format!("{} already has a default server", l.addr),
                ),
            }
        }
        // Wildcard and specific addresses on the same port cannot both be
        // bound without SO_REUSEPORT games; nginx binds the wildcard only and
        // dispatches by destination. Keep it simple and explicit: refuse.
        for l in &listeners {
            if l.addr.ip().is_unspecified() {
                if let Some(other) = listeners.iter().find(|o| {
                    o.addr.port() == l.addr.port()
                        && !o.addr.ip().is_unspecified()
                        && o.addr.is_ipv4() == l.addr.is_ipv4()
                }) {
                    self.problems.add(
                        "server",
                        format!(
                            "{} and {} share a port; listen on the wildcard only and use server_name",
                            l.addr, other.addr
                        ),
                    );
                }
            }
        }
        listeners
    }
}

struct ServerDefaults {
    root: Option<PathBuf>,
    index: Option<Vec<String>>,
}

impl ServerDefaults {
    fn index(&self) -> Vec<String> {
        self.index
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_INDEX.to_owned()])
    }
}

/// A worker's access-log buffer is allocated whole; past this it only
/// costs memory (nginx's own limit is far lower in practice: 64k).
/// One worker per available core, as nginx's `worker_processes auto`
/// (see `proxy::workers` for why workers are threads with a runtime each).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

const MAX_ACCESS_LOG_BUFFER: u64 = 16 << 20;

fn dur(v: Option<units::ConfigDuration>, default_secs: u64) -> Duration {
    v.map_or(Duration::from_secs(default_secs), |d| d.0)
}

/// `"0.0.0.0:8080"`, `"[::]:443"`, `"127.0.0.1:80"`, or a bare port.
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{text:?} is not a listen address; write \"0.0.0.0:8080\", \"[::]:8080\" or \"8080\""
        )
    })
}

/// `host:port` (port defaults to `default_port`: 80, or 443 for TLS),
/// resolved now to every address.
fn resolve_addr(text: &str, default_port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, default_port)]);
    }
    let with_port = if text
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        text.to_owned()
    } else {
        format!("{text}:{default_port}")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{text:?} resolved to no address"));
    }
    Ok(addrs)
}

/// The host of `host:port`, `host`, `ip`, `ip:port` or `[v6]:port`.
fn host_part(text: &str) -> String {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return a.ip().to_string();
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return ip.to_string();
    }
    match text.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host.to_owned(),
        _ => text.to_owned(),
    }
}

/// The name an upstream's certificate is verified against: a DNS name
/// (also sent as SNI) or an IP address (verified against IP SANs).
fn tls_name(name: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|_| {
        format!("{name:?} is not a DNS name or IP address to verify the upstream's certificate")
    })
}

fn parse_server_name(text: &str) -> Result<Option<ServerName>, String> {
    let lower = text.to_ascii_lowercase();
    if lower.is_empty() || lower == "_" {
        return Ok(None);
    }
    if let Some(re) = text.strip_prefix('~') {
        return RegexBuilder::new(re)
            .case_insensitive(true)
            .build()
            .map(|r| Some(ServerName::Regex(r)))
            .map_err(|e| format!("bad regex: {e}"));
    }
    if let Some(rest) = lower.strip_prefix("*.") {
        check_hostname(rest)?;
        return Ok(Some(ServerName::Suffix {
            suffix: format!(".{rest}"),
            also_bare: false,
        }));
    }
    if let Some(rest) = lower.strip_prefix('.') {
        check_hostname(rest)?;
        return Ok(Some(ServerName::Suffix {
            suffix: format!(".{rest}"),
            also_bare: true,
        }));
    }
    if let Some(rest) = lower.strip_suffix(".*") {
        check_hostname(rest)?;
        return Ok(Some(ServerName::Prefix(format!("{rest}."))));
    }
    check_hostname(&lower)?;
    Ok(Some(ServerName::Exact(lower)))
}

fn check_hostname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a host name; use example.com, *.example.com, .example.com, \
             www.example.*, ~regex or _"
        ))
    }
}

pub(crate) fn parse_location_pattern(text: &str) -> Result<LocationPattern, String> {
    let text = text.trim();
    let (modifier, rest) = if let Some(r) = text.strip_prefix("^~") {
        ("^~", r)
    } else if let Some(r) = text.strip_prefix("~*") {
        ("~*", r)
    } else if let Some(r) = text.strip_prefix('~') {
        ("~", r)
    } else if let Some(r) = text.strip_prefix('=') {
        ("=", r)
    } else if let Some(r) = text.strip_prefix('@') {
        ("@", r)
    } else {
        ("", text)
    };
    let rest = rest.trim();
    if rest.is_empty() {
        return Err("empty location path".into());
    }
    match modifier {
        "~" | "~*" => RegexBuilder::new(rest)
            .case_insensitive(modifier == "~*")
            .build()
            .map(LocationPattern::Regex)
            .map_err(|e| format!("bad regex: {e}")),
        "@" => {
            if rest.contains(char::is_whitespace) || rest.contains('/') {
                return Err(format!("{text:?}: a named location is @ and a plain name"));
            }
            Ok(LocationPattern::Named(rest.to_owned()))
        }
        _ => {
            if !rest.starts_with('/') {
                return Err(format!(
                    "{text:?} must start with / (or be \"= /x\", \"^~ /x\", \"~ regex\", \"~* regex\", \"@name\")"
                ));
            }
            Ok(match modifier {
                "=" => LocationPattern::Exact(rest.to_owned()),
                "^~" => LocationPattern::Prefix {
                    prefix: rest.to_owned(),
                    skip_regex: true,
                },
                _ => LocationPattern::Prefix {
                    prefix: rest.to_owned(),
                    skip_regex: false,
                },
            })
        }
    }
}

enum Authority {
    /// A name that must be an `[upstream.x]`.
    Named(String),
    /// `host:port` or an IP address: an implicit one-server upstream.
    Address(String),
}

struct ProxyTarget {
    authority: Authority,
    path: Option<String>,
    /// `https://`.
    tls: bool,
}

/// `app`, `http://app`, `http://app/v1/`, `http://127.0.0.1:9000/`,
/// `https://api.example.com/`.
fn parse_proxy_target(text: &str) -> Result<ProxyTarget, String> {
    let (rest, tls) = if let Some(r) = text.strip_prefix("http://") {
        (r, false)
    } else if let Some(r) = text.strip_prefix("https://") {
        (r, true)
    } else if text.contains("://") {
        return Err(format!("{text:?}: use http:// or https://"));
    } else {
        (text, false)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
        None => (rest, None),
    };
    if authority.is_empty() {
        return Err(format!("{text:?} has no upstream name or address"));
    }
    let looks_like_address =
        authority.contains(':') || authority.parse::<IpAddr>().is_ok() || authority.contains('.');
    let authority = if looks_like_address {
        Authority::Address(authority.to_owned())
    } else {
        Authority::Named(authority.to_owned())
    };
    Ok(ProxyTarget {
        authority,
        path,
        tls,
    })
}

fn status_range(v: &toml::Value) -> Option<std::ops::RangeInclusive<u16>> {
    match v {
        toml::Value::Integer(i) => {
            let code = u16::try_from(*i).ok().filter(|c| (100..=599).contains(c))?;
            Some(code..=code)
        }
        toml::Value::String(s) => {
            let b = s.as_bytes();
            if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && &s[1..] == "xx" {
                let base = u16::from(b[0] - b'0') * 100;
                Some(base..=base + 99)
            } else {
                s.parse::<u16>()
                    .ok()
                    .filter(|c| (100..=599).contains(c))
                    .map(|c| c..=c)
            }
        }
        _ => None,
    }
}
