//! `[[server.location]]`: the path pattern and the action (return,
//! proxy_pass, static files), and the checks across a server's locations.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use regex::{Regex, RegexBuilder};

use super::Validator;
use super::server::ServerDefaults;
use super::upstream::{host_name, host_part, resolve_addr, tls_name};
use crate::config::error::{index, join};
use crate::config::file::*;
use crate::config::*;

impl Validator<'_> {
    pub(super) fn location(
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
        let (_, compression) = self.compression_at(key, &f.compression(), &defaults.compression);

        let rewrites = self.rewrites(key, &f.rewrite);
        let error_pages = self.error_pages(key, &f.error_page);
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
            ("request_buffering", f.request_buffering.is_some()),
            ("forwarding_headers", f.forwarding_headers.is_some()),
            ("proxy_intercept_errors", f.proxy_intercept_errors),
        ];
        // A location that only rewrites (`rewrite ... last`), as nginx
        // allows: whatever its rules do not send elsewhere gets 404.
        let only_rewrites = !rewrites.is_empty()
            && actions.iter().all(|a| !a)
            && defaults.root.is_none()
            && static_only.iter().all(|(_, set)| !set);

        let action = if let Some(r) = &f.return_ {
            for (name, set) in static_only.iter().chain(&proxy_only) {
                if *set {
                    self.problems.add(
                        join(key, name),
                        format!("{name} has no effect in a location that uses return"),
                    );
                }
            }
            Action::Return(self.return_action(&join(key, "return"), r, regex_of(&pattern))?)
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
        } else if only_rewrites {
            Action::Return(ReturnAction {
                status: StatusCode::NOT_FOUND,
                body: None,
                location: None,
                content_type: HeaderValue::from_static("text/plain"),
            })
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
        let edge = self.location_edge(key, f, &defaults.edge);
        Some(Location {
            label: f.path.clone(),
            pattern,
            action,
            add_header,
            client_max_body_size: f.client_max_body_size.map(|s| s.0),
            edge,
            compression,
            rewrites,
            error_pages,
            internal: f.internal,
        })
    }

    fn return_action(
        &mut self,
        key: &str,
        r: &ReturnFile,
        captures: Option<&Regex>,
    ) -> Option<ReturnAction> {
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
            Some(b) => Some(self.template(join(key, "body"), b, captures)?),
            None => None,
        };
        let location = match &r.location {
            Some(l) => Some(self.template(join(key, "location"), l, captures)?),
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
                                resolved_from: host_name(&text, default_port),
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
                        resolve_interval: None,
                        resolve: host_name(&text, default_port)
                            .map(|(host, port)| {
                                let any = std::net::SocketAddr::from(([0, 0, 0, 0], port));
                                ResolveName {
                                    template: UpstreamServer {
                                        addr: any,
                                        label: any.to_string(),
                                        weight: 1,
                                        max_fails: 1,
                                        fail_timeout: Duration::from_secs(10),
                                        backup: false,
                                        down: false,
                                        tls_name: tls_name.clone(),
                                        resolved_from: Some((host.clone(), port)),
                                    },
                                    host,
                                    port,
                                }
                            })
                            .into_iter()
                            .collect(),
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
            if let Some(t) = self.template(k, value, regex_of(pattern)) {
                set_headers.push((n, t));
            }
        }
        Some(ProxyPass {
            upstream,
            replace_prefix,
            set_headers,
            // nginx tunnels where the config passes `Upgrade` on: the
            // `proxy_set_header Upgrade $http_upgrade` idiom opts in.
            websocket: f.websocket
                || f.proxy_set_header
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("upgrade")),
            forwarding_headers: f.forwarding_headers.unwrap_or(true),
            request_buffering: f.request_buffering.unwrap_or(true),
            intercept_errors: f.proxy_intercept_errors,
        })
    }

    pub(super) fn check_duplicate_locations(&mut self, key: &str, locations: &[Location]) {
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

    pub(super) fn check_named_references(
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
}

/// A regex location's regex: its groups are `$1`.. in its templates.
fn regex_of(pattern: &LocationPattern) -> Option<&Regex> {
    match pattern {
        LocationPattern::Regex(re) => Some(re),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_patterns() {
        use super::parse_location_pattern as p;
        assert!(matches!(p("= /a").unwrap(), LocationPattern::Exact(s) if s == "/a"));
        assert!(matches!(p("=/a").unwrap(), LocationPattern::Exact(s) if s == "/a"));
        assert!(
            matches!(p("^~ /img/").unwrap(), LocationPattern::Prefix { prefix, skip_regex: true } if prefix == "/img/")
        );
        assert!(matches!(
            p("/x").unwrap(),
            LocationPattern::Prefix {
                skip_regex: false,
                ..
            }
        ));
        let LocationPattern::Regex(r) = p("~* \\.(gif|jpg)$").unwrap() else {
            panic!()
        };
        assert!(r.is_match("/A.JPG"));
        let LocationPattern::Regex(r) = p("~ \\.(gif|jpg)$").unwrap() else {
            panic!()
        };
        assert!(!r.is_match("/A.JPG"));
        assert!(matches!(p("@app").unwrap(), LocationPattern::Named(n) if n == "app"));
        assert!(p("x").is_err());
        assert!(p("=").is_err());
    }
}
