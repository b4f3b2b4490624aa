//! `[[server]]`: listen addresses, server names, certificates, headers;
//! and the listeners they add up to.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use regex::RegexBuilder;

use super::Validator;
use crate::config::error::{index, join};
use crate::config::file::*;
use crate::config::*;

const DEFAULT_INDEX: &str = "index.html";

impl Validator<'_> {
    pub(super) fn server(
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
        let http_compression = self.compression.clone();
        let (compression_keys, compression) =
            self.compression_at(&key, &f.compression(), &http_compression);

        let real_ip = self.server_real_ip(&key, f);
        let rewrites = self.rewrites(&key, &f.rewrite);
        let error_pages = self.error_pages(&key, &f.error_page);
        let defaults = ServerDefaults {
            root: f.root.as_ref().map(|r| self.resolve(r)),
            index: f.index.clone(),
            edge: self.server_edge(&key, f),
            compression: compression_keys,
        };
        let mut locations = Vec::new();
        let mut location_keys = Vec::new();
        for (j, l) in f.location.iter().enumerate() {
            let lkey = index(&join(&key, "location"), j);
            if let Some(loc) = self.location(&lkey, l, &defaults, upstreams) {
                locations.push(loc);
                location_keys.push(lkey);
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
                    edge: self.location_edge(
                        &join(&key, "location"),
                        &LocationFile::default(),
                        &defaults.edge,
                    ),
                    compression: compression.clone(),
                    rewrites: Vec::new(),
                    error_pages: Vec::new(),
                    internal: false,
                });
                location_keys.push(join(&key, "root"));
            } else {
                self.problems.add(
                    join(&key, "location"),
                    "a server needs at least one [[server.location]] (or a root, or redirect_https)",
                );
            }
        }
        self.check_duplicate_locations(&key, &locations);
        self.check_named_references(&key, &f.location, &locations);
        self.check_error_pages(&key, &error_pages, &locations, &location_keys);
        if tls_failed {
            return None;
        }

        let add_header_vars = add_header
            .iter()
            .chain(locations.iter().flat_map(|l| l.add_header.iter()))
            .any(|(_, v)| v.is_template());
        Some((
            VirtualServer {
                index: i,
                label,
                names,
                locations,
                add_header_vars,
                client_max_body_size: f.client_max_body_size.map(|s| s.0),
                tls,
                redirect_https,
                hsts,
                add_header,
                real_ip,
                compression,
                rewrites,
                error_pages,
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

    /// `add_header` values: fixed text, or templates when they use a
    /// variable (maps in scope).
    pub(super) fn headers(
        &mut self,
        key: &str,
        map: &BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderText)> {
        let mut out = Vec::new();
        for (name, value) in map {
            let k = join(key, name);
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                self.problems
                    .add(k, format!("{name:?} is not a header name"));
                continue;
            };
            if value.contains('$') {
                if let Some(t) = self.template(k, value, None) {
                    out.push((n, HeaderText::Template(t)));
                }
                continue;
            }
            let Ok(v) = HeaderValue::from_str(value) else {
                self.problems
                    .add(k, format!("{value:?} is not a header value"));
                continue;
            };
            out.push((n, HeaderText::Fixed(v)));
        }
        out
    }

    pub(super) fn listeners(
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
                            proxy_protocol: files[server.index].proxy_protocol,
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
                if l.proxy_protocol != files[server.index].proxy_protocol {
                    self.problems.add(
                        join(&index("server", server.index), "proxy_protocol"),
                        format!(
                            "{addr} has servers with and without proxy_protocol; a listen \
                             address either expects the PROXY header or not: set it on every \
                             server on it, or on none"
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

/// Server-level `root`, `index` and edge controls, inherited by its
/// locations.
pub(super) struct ServerDefaults {
    pub(super) root: Option<PathBuf>,
    index: Option<Vec<String>>,
    pub(super) edge: super::edge::EdgeDefaults,
    /// The server's compression keys (over `[http]`'s).
    pub(super) compression: crate::config::compression::CompressionKeys,
}

impl ServerDefaults {
    /// The `index` files, nginx's `index.html` when none are set.
    pub(super) fn index(&self) -> Vec<String> {
        self.index
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_INDEX.to_owned()])
    }
}

/// `"0.0.0.0:8080"`, `"[::]:443"`, `"127.0.0.1:80"`, or a bare port.
pub(super) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{text:?} is not a listen address; write \"0.0.0.0:8080\", \"[::]:8080\" or \"8080\""
        )
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
