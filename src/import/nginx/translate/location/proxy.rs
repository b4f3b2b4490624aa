//! A proxying location: `proxy_pass` with or without a URI, the prefix
//! strip idiom, and the headers sent upstream.

use super::*;

impl<'a> Tr<'a> {
    /// `proxy_pass` and what goes with it.
    pub(super) fn proxy(
        &mut self,
        loc: &'a Directive,
        pass: &'a Directive,
        pat: &Pattern,
        chain: &Chain<'a>,
        block: &mut Block,
        vars: &VarContext<'_>,
    ) -> Option<()> {
        let url = pass.arg(0).unwrap_or_default();
        if values::has_vars(url) {
            self.note(
                pass,
                Status::NotSupported,
                "a proxy_pass with variables picks its upstream per request; vigil's is fixed",
                "write one location per upstream",
            );
            return None;
        }
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            self.note(
                pass,
                Status::NotSupported,
                "not an http:// or https:// URL",
                "",
            );
            return None;
        };
        if rest.starts_with("unix:") {
            self.note(
                pass,
                Status::NotSupported,
                "vigil reaches upstreams over TCP only, not Unix sockets",
                "make the application listen on 127.0.0.1:PORT",
            );
            return None;
        }
        let (host, mut uri) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
            None => (rest, None),
        };
        // `rewrite ^/api/(.*)$ /$1 break;` + proxy_pass without a URI:
        // nginx's way of writing proxy_pass http://app/.
        if uri.is_none() {
            if let Some((d, with)) = strip_prefix_rewrite(loc, pat) {
                self.use_(d);
                uri = Some(with);
            }
        }
        if uri.is_some() && matches!(pat, Pattern::Regex { .. } | Pattern::Named(_)) {
            self.note(
                pass,
                Status::NotSupported,
                "nginx refuses a URI part in proxy_pass inside a regex or named location",
                "remove the path from proxy_pass",
            );
            return None;
        }
        let target = match self.upstreams.get(host) {
            Some(_) => Target::Named(host.to_owned()),
            None => Target::Host {
                host_port: with_port(host, if tls { 443 } else { 80 }),
                tls,
            },
        };
        if let Target::Host { .. } = &target {
            if !host.contains([':', '.', '[']) && !host.eq_ignore_ascii_case("localhost") {
                self.report.add(
                    &pass.place,
                    pass.summary(),
                    Status::Note,
                    format!("no upstream block named {host} was read: nginx resolves it as a host name, and so does this translation (port {})", if tls { 443 } else { 80 }),
                    "import with the file that defines the upstream, if there is one",
                );
            }
        }
        let profile = self.profile(chain, tls);
        let value = match &target {
            // vigil's implicit one-server upstream has nginx's defaults.
            Target::Host {
                host_port,
                tls: false,
            } if profile == Profile::default() => {
                format!("http://{host_port}{}", uri.as_deref().unwrap_or(""))
            }
            _ => {
                let pool = self.pool(&target, &profile, &loc.place.to_string())?;
                match (tls, &uri) {
                    (true, u) => format!("https://{pool}{}", u.as_deref().unwrap_or("")),
                    (false, Some(u)) => format!("http://{pool}{u}"),
                    (false, None) => pool.clone(),
                }
            }
        };
        self.use_(pass);
        block.set("proxy_pass", Value::str(value), pass.place.to_string());

        // proxy_redirect: nginx rewrites Location headers by default when
        // proxy_pass has a URI.
        match chain.get("proxy_redirect") {
            Some(d) if d.arg(0) == Some("off") => {
                self.note(d, Status::NotNeeded, "vigil never rewrites the upstream's Location headers", "")
            }
            Some(d) => self.note(
                d,
                Status::NotSupported,
                "vigil does not rewrite the upstream's Location and Refresh headers",
                "make the application send the public URLs",
            ),
            None if uri.is_some() => self.report.add(
                &pass.place,
                pass.summary(),
                Status::Approximated,
                "nginx rewrites Location headers the upstream sends from its URI to the location's (proxy_redirect default); vigil passes them as sent",
                "make the application send the public URLs (or relative ones)",
            ),
            None => {}
        }
        if let Some(d) = chain.get("proxy_http_version") {
            self.note(
                d,
                Status::NotNeeded,
                "vigil always speaks HTTP/1.1 (keep-alive) to upstreams",
                "",
            );
        }
        match chain.get("proxy_request_buffering") {
            Some(d) if d.arg(0) == Some("off") => {
                self.use_(d);
                block.set("request_buffering", Value::Bool(false), d.place.to_string());
            }
            Some(d) => self.note(
                d,
                Status::NotNeeded,
                "vigil reads request bodies whole before passing them on, by default",
                "",
            ),
            None => {}
        }
        let proxy_host = match &target {
            Target::Named(n) => n.clone(),
            Target::Host { .. } => host.to_owned(),
        };
        let vars = VarContext {
            server_name: vars.server_name,
            proxy_host: Some(&proxy_host),
            maps: vars.maps,
        };
        self.proxy_headers(chain, block, &vars);
        Some(())
    }

    /// `proxy_set_header`s in effect → `proxy_set_header` and `websocket`.
    pub(super) fn proxy_headers(
        &mut self,
        chain: &Chain<'a>,
        block: &mut Block,
        vars: &VarContext<'_>,
    ) {
        let set = chain.all("proxy_set_header");
        let value_of = |name: &str| {
            set.iter()
                .rev()
                .find(|d| d.arg(0).is_some_and(|n| n.eq_ignore_ascii_case(name)))
                .copied()
        };
        let upgrade = value_of("Upgrade");
        let connection = value_of("Connection");
        let upgrade_var = upgrade.and_then(|d| d.arg(1)) == Some("$http_upgrade");
        let conn_value = connection.and_then(|d| d.arg(1)).unwrap_or_default();
        let conn_upgrade = conn_value.eq_ignore_ascii_case("upgrade")
            || conn_value == "$http_connection"
            || self.upgrade_vars.iter().any(|v| v == conn_value)
            || conn_value == "$connection_upgrade";
        let http11 = chain
            .get("proxy_http_version")
            .is_some_and(|d| d.arg(0) == Some("1.1"));
        let websocket = upgrade_var && conn_upgrade;
        if websocket {
            if http11 {
                block.set(
                    "websocket",
                    Value::Bool(true),
                    "proxy_set_header Upgrade $http_upgrade + Connection upgrade",
                );
                for d in [upgrade, connection].into_iter().flatten() {
                    self.use_(d);
                }
                if conn_value == "$connection_upgrade"
                    && !self.upgrade_vars.iter().any(|v| v == conn_value)
                {
                    if let Some(c) = connection {
                        self.report.add(
                            &c.place,
                            c.summary(),
                            Status::Note,
                            "$connection_upgrade is defined by a map that was not read (the usual WebSocket idiom); read as that idiom",
                            "",
                        );
                    }
                }
            } else {
                for d in [upgrade, connection].into_iter().flatten() {
                    self.note(
                        d,
                        Status::NotNeeded,
                        "nginx does not tunnel WebSocket here (proxy_http_version is 1.0): vigil's websocket stays off",
                        "",
                    );
                }
            }
        }
        let mut headers: Vec<(String, Value)> = Vec::new();
        let mut has_host = false;
        for d in &set {
            if self.used(d) && (websocket && (Some(*d) == upgrade || Some(*d) == connection)) {
                continue;
            }
            let (Some(name), value) = (d.arg(0), d.arg(1).unwrap_or_default()) else {
                continue;
            };
            let lower = name.to_ascii_lowercase();
            if lower == "host" {
                has_host = true;
            }
            match (lower.as_str(), value) {
                ("connection", v)
                    if v.is_empty()
                        || v.eq_ignore_ascii_case("keep-alive")
                        || v.eq_ignore_ascii_case("close") =>
                {
                    self.note(
                        d,
                        Status::NotNeeded,
                        "vigil manages upstream connections itself (HTTP/1.1 keep-alive)",
                        "",
                    );
                    continue;
                }
                ("connection", _) | ("upgrade", _) => {
                    self.note(
                        d,
                        Status::NotSupported,
                        "vigil sets Connection and Upgrade itself (websocket = true passes an upgrade on)",
                        "",
                    );
                    continue;
                }
                _ => {}
            }
            match values::template(value, vars) {
                Ok(v) => {
                    self.use_(d);
                    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    headers.push((name.to_owned(), Value::str(v)));
                }
                Err(e) => self.note(
                    d,
                    Status::NotSupported,
                    format!("{e}; the header is not sent"),
                    "",
                ),
            }
        }
        // vigil adds X-Forwarded-For/-Real-IP/-Proto/-Host by default;
        // nginx adds none of them and passes on what the client sent. Off
        // here, so only what the config sets is sent, as with nginx (and
        // nothing is rendered twice per request).
        block.set(
            "forwarding_headers",
            Value::Bool(false),
            "nginx adds no forwarding headers of its own",
        );
        if !has_host {
            // nginx's default: Host is the proxy_pass host ($proxy_host).
            headers.insert(
                0,
                (
                    "Host".into(),
                    Value::str(vars.proxy_host.unwrap_or_default()),
                ),
            );
        }
        block.set("proxy_set_header", Value::Inline(headers), "");
    }
}

/// `rewrite ^/api/(.*)$ /$1 break;` in location `/api/`: the same as a
/// proxy_pass URI of `/`. Returns the rewrite and the URI.
pub(super) fn strip_prefix_rewrite<'a>(
    loc: &'a Directive,
    pat: &Pattern,
) -> Option<(&'a Directive, String)> {
    let Pattern::Prefix { uri: prefix, .. } = pat else {
        return None;
    };
    let rewrites: Vec<&Directive> = loc
        .children()
        .iter()
        .filter(|d| d.name == "rewrite")
        .collect();
    let [d] = rewrites.as_slice() else {
        return None;
    };
    let [re, with, flag] = d.texts()[..] else {
        return None;
    };
    if flag != "break" {
        return None;
    }
    let body = re.strip_prefix('^')?;
    let body = body
        .strip_suffix("(.*)$")
        .or_else(|| body.strip_suffix("(.*)"))?;
    if literal(body)? != *prefix {
        return None;
    }
    let base = with.strip_suffix("$1")?;
    if base.contains('$') || !base.starts_with('/') {
        return None;
    }
    Some((d, base.to_owned()))
}

/// The text a regex fragment matches when it is a plain literal (`\.`
/// allowed), else `None`.
pub(super) fn literal(re: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '.' | '[' | ']' | '(' | ')' | '*' | '+' | '?' | '{' | '}' | '|' | '^' | '$' => {
                return None;
            }
            c => out.push(c),
        }
    }
    Some(out)
}
