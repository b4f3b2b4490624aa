//! `upstream { }` blocks and the pools locations use. nginx sets proxy
//! timeouts and retry rules per location, vigil per pool: a pool is made
//! for each distinct (upstream, settings) pair a location uses, the first
//! keeping the upstream's name.

use std::time::Duration;

use super::super::super::out::Block;
use super::super::super::report::Status;
use super::super::super::toml_out::Value;
use super::super::parse::Directive;
use super::super::values;
use super::{Chain, Tr};

/// What a proxy_pass points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// An `upstream` block.
    Named(String),
    /// A host (and port) written in the proxy_pass itself.
    Host { host_port: String, tls: bool },
}

/// TLS to the upstream, as nginx's proxy_ssl_* say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsProfile {
    pub verify: bool,
    pub ca: Option<String>,
    pub sni: Option<String>,
}

/// The per-location settings vigil keeps per pool.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Profile {
    pub connect: Option<Duration>,
    pub read: Option<Duration>,
    pub send: Option<Duration>,
    pub next_upstream: Option<Vec<String>>,
    pub tries: Option<u32>,
    pub next_upstream_timeout: Option<Duration>,
    pub tls: Option<TlsProfile>,
}

struct Pool {
    target: Target,
    profile: Profile,
    name: String,
    /// Where it was first used.
    first_use: String,
    copy_of: Option<String>,
}

/// The pools made so far.
#[derive(Default)]
pub struct Pools {
    pools: Vec<Pool>,
}

/// A name vigil reads as an upstream name (no `.` or `:`, which would
/// make proxy_pass read it as an address).
pub(crate) fn pool_name(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.trim_matches('_').to_owned()
}

impl Pools {
    /// The pool for `target` with `profile`, made if new.
    pub(crate) fn get(&mut self, target: &Target, profile: &Profile, used_at: &str) -> String {
        if let Some(p) = self
            .pools
            .iter()
            .find(|p| &p.target == target && &p.profile == profile)
        {
            return p.name.clone();
        }
        let base = match target {
            Target::Named(n) => pool_name(n),
            Target::Host { host_port, .. } => pool_name(host_port),
        };
        let base = if base.is_empty() {
            "upstream".to_owned()
        } else {
            base
        };
        let original = self
            .pools
            .iter()
            .find(|p| &p.target == target)
            .map(|p| p.name.clone());
        let mut name = base.clone();
        let mut n = 2;
        while self.pools.iter().any(|p| p.name == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.pools.push(Pool {
            target: target.clone(),
            profile: profile.clone(),
            name: name.clone(),
            first_use: used_at.to_owned(),
            copy_of: original,
        });
        name
    }
}

/// An upstream block, translated once.
pub(crate) struct Base {
    pub servers: Vec<Value>,
    pub keys: Vec<(String, Value, String)>,
}

impl<'a> Tr<'a> {
    /// The proxy settings of a location.
    pub(crate) fn profile(&mut self, chain: &Chain<'a>, tls: bool) -> Profile {
        let mut p = Profile::default();
        let time = |tr: &mut Tr<'a>, name: &str| -> Option<Duration> {
            let d = chain.get(name)?;
            match d.arg(0).map(values::parse_time) {
                Some(Ok(t)) => {
                    tr.use_(d);
                    (t != Duration::from_secs(60)).then_some(t)
                }
                _ => None,
            }
        };
        p.connect = time(self, "proxy_connect_timeout");
        p.read = time(self, "proxy_read_timeout");
        p.send = time(self, "proxy_send_timeout");
        if let Some(d) = chain.get("proxy_next_upstream_timeout") {
            if let Some(Ok(t)) = d.arg(0).map(values::parse_time) {
                self.use_(d);
                p.next_upstream_timeout = (!t.is_zero()).then_some(t);
            }
        }
        if let Some(d) = chain.get("proxy_next_upstream_tries") {
            if let Some(Ok(n)) = d.arg(0).map(str::parse::<u32>) {
                self.use_(d);
                p.tries = (n != 0).then_some(n);
            }
        }
        if let Some(d) = chain.get("proxy_next_upstream") {
            self.use_(d);
            let mut list = Vec::new();
            let mut dropped = Vec::new();
            for a in d.texts() {
                match a {
                    "error" | "timeout" | "http_500" | "http_502" | "http_503" | "http_504"
                    | "http_429" | "non_idempotent" | "off" => list.push(a.to_owned()),
                    "invalid_header" => {
                        // vigil counts a broken response head as an error.
                        if !list.iter().any(|x| x == "error") {
                            list.push("error".into());
                        }
                    }
                    "updating" => {}
                    other => dropped.push(other.to_owned()),
                }
            }
            if !dropped.is_empty() {
                self.report.add(
                    &d.place,
                    d.summary(),
                    Status::Approximated,
                    format!(
                        "vigil retries on error, timeout, http_500, http_502, http_503, http_504 and http_429, not on {}",
                        dropped.join(", ")
                    ),
                    "",
                );
            }
            let default = ["error", "timeout"];
            if list.len() != 2 || !default.iter().all(|x| list.iter().any(|l| l == x)) {
                p.next_upstream = Some(list);
            }
        }
        if tls {
            let verify = chain
                .get("proxy_ssl_verify")
                .inspect(|d| self.use_(d))
                .is_some_and(|d| d.arg(0) == Some("on"));
            let ca = chain.get("proxy_ssl_trusted_certificate").map(|d| {
                self.use_(d);
                super::absolute(&self.opts.conf_prefix, d.arg(0).unwrap_or_default())
            });
            let sni = chain.get("proxy_ssl_name").and_then(|d| {
                self.use_(d);
                d.arg(0).filter(|n| !values::has_vars(n)).map(str::to_owned)
            });
            if let Some(d) = chain.get("proxy_ssl_server_name") {
                self.note(
                    d,
                    Status::NotNeeded,
                    "vigil always sends the server's name as SNI (never for an IP address)",
                    "",
                );
            }
            p.tls = Some(TlsProfile {
                verify,
                ca: if verify { ca } else { None },
                sni,
            });
        }
        p
    }

    /// Translates an upstream block's servers and balancing, once.
    pub(crate) fn upstream_base(&mut self, up: &'a Directive) -> Base {
        self.use_(up);
        let mut servers = Vec::new();
        let mut keys: Vec<(String, Value, String)> = Vec::new();
        for d in up.children() {
            match d.name.as_str() {
                "server" => {
                    if let Some(v) = self.upstream_server(d) {
                        servers.push(v);
                    }
                }
                "least_conn" => {
                    self.use_(d);
                    keys.push((
                        "balance".into(),
                        Value::str("least_conn"),
                        d.place.to_string(),
                    ));
                }
                "ip_hash" => {
                    self.use_(d);
                    keys.push(("balance".into(), Value::str("ip_hash"), d.place.to_string()));
                }
                "hash" => {
                    let key = d.arg(0).unwrap_or_default();
                    let ctx = values::VarContext {
                        server_name: None,
                        proxy_host: None,
                        maps: &[],
                    };
                    match values::template(key, &ctx) {
                        Ok(t) => {
                            keys.push(("balance".into(), Value::str("hash"), d.place.to_string()));
                            keys.push(("hash_key".into(), Value::str(t), String::new()));
                            if d.arg(1) == Some("consistent") {
                                self.use_(d);
                            } else {
                                self.note(
                                    d,
                                    Status::Approximated,
                                    "vigil's hash is always consistent (ketama): keys map to other servers than nginx's plain hash, and move less when servers change",
                                    "",
                                );
                            }
                        }
                        Err(e) => self.note(
                            d,
                            Status::NotSupported,
                            format!("hash key: {e}"),
                            "balance on a key vigil knows, e.g. $request_uri or $cookie_NAME",
                        ),
                    }
                }
                "random" => {
                    keys.push((
                        "balance".into(),
                        Value::str("random_two"),
                        d.place.to_string(),
                    ));
                    if d.arg(0) == Some("two") && d.args.len() == 1
                        || d.texts() == ["two", "least_conn"]
                    {
                        self.use_(d);
                    } else {
                        self.note(
                            d,
                            Status::Approximated,
                            "vigil's random_two picks the less busy of two random servers",
                            "",
                        );
                    }
                }
                "keepalive" => {
                    if let Some(n) = d.arg(0).and_then(|a| a.parse::<i64>().ok()) {
                        self.use_(d);
                        keys.push(("keepalive".into(), Value::Int(n), d.place.to_string()));
                    }
                }
                "keepalive_timeout" => {
                    if let Some(t) = d.arg(0).and_then(|a| values::parse_time(a).ok()) {
                        self.use_(d);
                        keys.push((
                            "keepalive_timeout".into(),
                            Value::str(values::duration(t)),
                            d.place.to_string(),
                        ));
                    }
                }
                _ => {}
            }
        }
        Base { servers, keys }
    }

    /// `server 10.0.0.1:8080 weight=3 max_fails=2 fail_timeout=30s backup;`
    fn upstream_server(&mut self, d: &'a Directive) -> Option<Value> {
        let addr = d.arg(0)?;
        if addr.starts_with("unix:") {
            self.note(
                d,
                Status::NotSupported,
                "vigil reaches upstream servers over TCP only, not Unix sockets",
                "make the server listen on 127.0.0.1:PORT",
            );
            return None;
        }
        let addr = with_port(addr, 80);
        let mut fields = vec![("addr".to_owned(), Value::str(addr))];
        let mut unsupported = Vec::new();
        for p in d.texts().iter().skip(1) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k {
                "weight" | "max_fails" => match v.parse::<i64>() {
                    Ok(n) => fields.push((k.to_owned(), Value::Int(n))),
                    Err(_) => unsupported.push(p.to_string()),
                },
                "fail_timeout" => match values::parse_time(v) {
                    Ok(t) => fields.push((k.to_owned(), Value::str(values::duration(t)))),
                    Err(_) => unsupported.push(p.to_string()),
                },
                "backup" | "down" => fields.push((k.to_owned(), Value::Bool(true))),
                // vigil follows DNS for every server name (docs/CONFIG.md).
                "resolve" => {}
                _ => unsupported.push(p.to_string()),
            }
        }
        if unsupported.is_empty() {
            self.use_(d);
        } else {
            self.note(
                d,
                Status::NotSupported,
                format!("vigil's upstream servers take weight, max_fails, fail_timeout, backup and down, not {}", unsupported.join(", ")),
                "",
            );
        }
        Some(Value::Inline(fields))
    }

    /// Writes every pool made as `[upstream.<name>]`.
    pub(crate) fn emit_pools(&mut self) {
        let pools = std::mem::take(&mut self.pools.pools);
        for pool in &pools {
            let mut block = Block::default();
            let (servers, base_keys) = match &pool.target {
                Target::Named(n) => {
                    let Some(&up) = self.upstreams.get(n) else {
                        continue;
                    };
                    let Some(b) = self.bases.get(n) else { continue };
                    block.comment.push(format!("upstream {n}, {}", up.place));
                    (b.servers.clone(), b.keys.clone())
                }
                Target::Host { host_port, .. } => {
                    block.comment.push(format!(
                        "the server named in proxy_pass at {} (nginx's implicit upstream)",
                        pool.first_use
                    ));
                    (
                        vec![Value::Inline(vec![(
                            "addr".into(),
                            Value::str(host_port.clone()),
                        )])],
                        Vec::new(),
                    )
                }
            };
            if let Some(orig) = &pool.copy_of {
                block.comment.push(format!(
                    "a copy of [upstream.{orig}] with the proxy settings of the location at {} \
                     (nginx sets them per location, vigil per pool; each copy counts failures on its own)",
                    pool.first_use
                ));
            }
            if servers.is_empty() {
                continue;
            }
            block.set("servers", Value::Array(servers), "");
            for (k, v, note) in base_keys {
                block.set(&k, v, note);
            }
            let p = &pool.profile;
            for (key, t) in [
                ("connect_timeout", p.connect),
                ("read_timeout", p.read),
                ("send_timeout", p.send),
                ("next_upstream_timeout", p.next_upstream_timeout),
            ] {
                if let Some(t) = t {
                    block.set(key, Value::str(values::duration(t)), "");
                }
            }
            if let Some(list) = &p.next_upstream {
                block.set("next_upstream", Value::strs(list), "");
            }
            if let Some(n) = p.tries {
                block.set("tries", Value::Int(n.into()), "");
            }
            if let Some(tls) = &p.tls {
                let mut fields = vec![("verify".to_owned(), Value::Bool(tls.verify))];
                if let Some(ca) = &tls.ca {
                    fields.push(("ca".into(), Value::str(ca.clone())));
                }
                if let Some(sni) = &tls.sni {
                    fields.push(("sni".into(), Value::str(sni.clone())));
                }
                let note = if tls.verify {
                    "proxy_ssl_verify on"
                } else {
                    "nginx does not verify upstream certificates unless proxy_ssl_verify is on"
                };
                block.set("tls", Value::Inline(fields), note);
            }
            self.out.upstreams.push((pool.name.clone(), block));
        }
        self.pools.pools = pools;
        // Upstream blocks no proxy_pass uses are reported as unused.
    }

    /// The pool a location with `profile` uses for `target`; `None` when
    /// the upstream has no server vigil can reach (reported already).
    pub(crate) fn pool(
        &mut self,
        target: &Target,
        profile: &Profile,
        used_at: &str,
    ) -> Option<String> {
        if let Target::Named(n) = target {
            let up = *self.upstreams.get(n)?;
            if !self.bases.contains_key(n) {
                let base = self.upstream_base(up);
                self.bases.insert(n.clone(), base);
            }
            if self.bases.get(n).is_none_or(|b| b.servers.is_empty()) {
                return None;
            }
        }
        Some(self.pools.get(target, profile, used_at))
    }
}

/// `host` → `host:port`; `[::1]` → `[::1]:port`; keeps a given port.
pub(crate) fn with_port(addr: &str, port: u16) -> String {
    if addr.starts_with('[') {
        if addr.contains("]:") {
            addr.to_owned()
        } else {
            format!("{addr}:{port}")
        }
    } else if addr.contains(':') {
        addr.to_owned()
    } else {
        format!("{addr}:{port}")
    }
}
