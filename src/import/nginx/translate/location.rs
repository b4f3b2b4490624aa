//! `location` blocks → `[[server.location]]`: the path, then what the
//! location does (in nginx's phase order: `internal`, the rewrite phase's
//! `return`, the access phase's `deny all`, then the content handler:
//! proxy_pass, another handler vigil lacks, or files) and the headers.

use super::super::super::out::Block;
use super::super::super::report::Status;
use super::super::super::toml_out::Value;
use super::super::parse::Directive;
use super::super::values::{self, VarContext};
use super::idioms::{self, Ret};
use super::upstream::{Profile, Target, with_port};
use super::{Chain, Tr, absolute};

/// What a location is, for vigil's `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    Exact(String),
    Prefix { uri: String, no_regex: bool },
    Regex { re: String, ci: bool },
    Named(String),
}

impl Pattern {
    pub(crate) fn vigil(&self) -> String {
        match self {
            Pattern::Exact(u) => format!("= {u}"),
            Pattern::Prefix {
                uri,
                no_regex: true,
            } => format!("^~ {uri}"),
            Pattern::Prefix { uri, .. } => uri.clone(),
            Pattern::Regex { re, ci: false } => format!("~ {re}"),
            Pattern::Regex { re, ci: true } => format!("~* {re}"),
            Pattern::Named(n) => format!("@{n}"),
        }
    }

    pub(crate) fn is_regex(&self) -> bool {
        matches!(self, Pattern::Regex { .. })
    }
}

/// Reads `location [=|~|~*|^~] uri` (the modifier may be glued on).
pub(crate) fn pattern(d: &Directive) -> Result<Pattern, String> {
    let (m, uri) = match d.texts().as_slice() {
        [m, uri] => ((*m).to_owned(), (*uri).to_owned()),
        [one] => {
            let one = *one;
            if let Some(n) = one.strip_prefix('@') {
                return Ok(Pattern::Named(n.to_owned()));
            }
            let m = ["^~", "~*", "~", "="]
                .into_iter()
                .find(|m| one.starts_with(m) && one.len() > m.len())
                .unwrap_or("");
            (m.to_owned(), one[m.len()..].to_owned())
        }
        _ => return Err("invalid number of arguments in \"location\" directive".into()),
    };
    Ok(match m.as_str() {
        "=" => Pattern::Exact(uri),
        "^~" => Pattern::Prefix {
            uri,
            no_regex: true,
        },
        "~" | "~*" => {
            regex::RegexBuilder::new(&uri)
                .case_insensitive(m == "~*")
                .build()
                .map_err(|e| {
                    let first = e.to_string().lines().last().unwrap_or_default().trim().to_owned();
                    format!("the regex is not one vigil's regex engine accepts (no look-around or back-references): {first}")
                })?;
            Pattern::Regex {
                re: uri,
                ci: m == "~*",
            }
        }
        "" => Pattern::Prefix {
            uri,
            no_regex: false,
        },
        other => return Err(format!("invalid location modifier \"{other}\"")),
    })
}

/// The server a location belongs to, as the location needs it.
pub(crate) struct ServerCtx<'s> {
    pub name: Option<&'s str>,
    /// The server has TLS listeners (HSTS is set on the server there).
    pub hsts_from_server: bool,
}

/// How a location answers.
enum Kind {
    Return,
    Proxy,
    Static,
}

impl<'a> Tr<'a> {
    /// Translates one (flattened) location; `chain` starts with its own
    /// directives, then enclosing locations (`loc_levels` of them, the
    /// location included), then the server and http.
    pub(crate) fn location(
        &mut self,
        loc: &'a Directive,
        chain: &Chain<'a>,
        loc_levels: usize,
        nested_in: Option<&'a Directive>,
        sctx: &ServerCtx<'_>,
    ) -> Option<Block> {
        let pat = match pattern(loc) {
            Ok(p) => p,
            Err(e) => {
                self.drop_block(
                    loc,
                    Status::NotSupported,
                    format!("{e}; the location and what it holds are not translated"),
                    "rewrite the pattern without look-around, or as prefix locations",
                );
                return None;
            }
        };
        self.use_(loc);
        let mut block = Block::new(format!(
            "location {}, {}",
            loc.summary().trim_start_matches("location "),
            loc.place
        ));
        if let Some(parent) = nested_in {
            block.comment.push(format!(
                "(nested in {} at {}; vigil's locations are one level)",
                parent.summary(),
                parent.place
            ));
            if pat.is_regex() {
                self.report.add(
                    &loc.place,
                    loc.summary(),
                    Status::Approximated,
                    format!(
                        "a regex nested in {}: nginx tries it only for requests whose location is its parent; vigil tries it, before the server's own regexes, for every request",
                        parent.summary()
                    ),
                    "move the regex to the server level with a pattern that includes the parent's prefix",
                );
            }
        }
        block.set("path", Value::str(pat.vigil()), "");
        let here = loc.children();
        let maps = self.maps.clone();
        let vars = VarContext {
            server_name: sctx.name,
            proxy_host: None,
            maps: &maps,
        };

        // nginx's phases, in order.
        let mut answered_before_access = false;
        if let Some(d) = here.iter().find(|d| d.name == "internal") {
            block.set("internal", Value::Bool(true), d.place.to_string());
            self.use_(d);
        }
        let kind = if let Some((d, ret)) = self.location_return(here, &vars) {
            let value = self.return_value(d, ret, chain, &vars)?;
            block.set("return", value, d.place.to_string());
            self.dead_content(
                here,
                "never used: the return answers first (nginx's rewrite phase comes before content)",
            );
            answered_before_access = true;
            Kind::Return
        } else if let Some(pass) = here.iter().find(|d| d.name == "proxy_pass") {
            match self.proxy(loc, pass, &pat, chain, &mut block, &vars) {
                Some(()) => Kind::Proxy,
                None => {
                    self.placeholder(&mut block, pass, 502);
                    Kind::Return
                }
            }
        } else if let Some(h) = here.iter().find(|d| {
            matches!(
                d.name.as_str(),
                "uwsgi_pass"
                    | "fastcgi_pass"
                    | "scgi_pass"
                    | "grpc_pass"
                    | "memcached_pass"
                    | "stub_status"
                    | "empty_gif"
            )
        }) {
            // Reported with its own reason by the leftover pass.
            self.placeholder(&mut block, h, 501);
            Kind::Return
        } else {
            if !self.static_files(loc, &pat, chain, &mut block) {
                return None;
            }
            Kind::Static
        };

        if let Some(rules) = self.rewrites(here, &vars) {
            block.set("rewrite", rules, "");
        }
        self.edge_location(chain, loc_levels, answered_before_access, &mut block);
        self.add_headers(chain, &kind, &mut block, sctx, &vars);
        self.expires(chain, &kind, &mut block);
        self.location_body_size(chain, loc_levels, &mut block);
        self.method_ifs(here);
        for d in here.iter().filter(|d| d.name == "error_log") {
            self.error_log(d);
        }
        Some(block)
    }

    /// The first rewrite-phase directive that ends the request: a `return`
    /// or a redirecting `rewrite`.
    fn location_return(
        &mut self,
        here: &'a [Directive],
        vars: &VarContext<'_>,
    ) -> Option<(&'a Directive, Ret)> {
        for d in here {
            match d.name.as_str() {
                "return" => return idioms::ret(d).map(|r| (d, r)),
                "rewrite" => {
                    if let Some(r) = idioms::rewrite_redirect(d, vars) {
                        if let Some(c) = &r.caveat {
                            self.report.add(
                                &d.place,
                                d.summary(),
                                Status::Approximated,
                                c.clone(),
                                "",
                            );
                        }
                        return Some((
                            d,
                            Ret::Redirect(r.status, d.arg(1).unwrap_or_default().to_owned()),
                        ));
                    }
                }
                "break" => return None,
                _ => {}
            }
        }
        None
    }

    /// `return ...` → `return = { ... }`.
    pub(crate) fn return_value(
        &mut self,
        d: &'a Directive,
        ret: Ret,
        chain: &Chain<'a>,
        vars: &VarContext<'_>,
    ) -> Option<Value> {
        self.use_(d);
        match ret {
            Ret::Redirect(status, target) => {
                let r = if d.name == "rewrite" {
                    idioms::rewrite_redirect(d, vars)
                } else {
                    match idioms::redirect(status, &target, vars) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            self.note(d, Status::NotSupported, e, "");
                            None
                        }
                    }
                }?;
                if let Some(c) = &r.caveat {
                    self.report
                        .add(&d.place, d.summary(), Status::Approximated, c.clone(), "");
                }
                Some(Value::Inline(vec![
                    ("status".into(), Value::Int(r.status.into())),
                    ("location".into(), Value::str(r.location)),
                ]))
            }
            Ret::Status(code, body) => {
                if !(200..=599).contains(&code) {
                    self.note(
                        d,
                        Status::NotSupported,
                        format!("vigil returns statuses 200 to 599, not {code}"),
                        "",
                    );
                    return None;
                }
                if code == 444 {
                    self.report.add(
                        &d.place,
                        d.summary(),
                        Status::Approximated,
                        "nginx closes the connection without answering; vigil answers with status 444 and no body",
                        "",
                    );
                }
                let mut fields = vec![("status".to_owned(), Value::Int(code.into()))];
                if let Some(text) = body {
                    let (body, dropped) = values::template_lossy(&text, vars);
                    if !dropped.is_empty() {
                        self.report.add(
                            &d.place,
                            d.summary(),
                            Status::Approximated,
                            format!(
                                "vigil has no variable {}: left out of the body",
                                dropped.join(", ")
                            ),
                            "",
                        );
                    }
                    fields.push(("body".into(), Value::str(body)));
                    let ct = self.return_content_type(chain);
                    if ct != "text/plain" {
                        fields.push(("content_type".into(), Value::str(ct)));
                    }
                }
                Some(Value::Inline(fields))
            }
        }
    }

    /// nginx sends a return's text with `default_type` (and a location's
    /// `add_header Content-Type` on top).
    fn return_content_type(&mut self, chain: &Chain<'a>) -> String {
        if let Some(h) = chain.local("add_header").into_iter().find(|h| {
            h.arg(0)
                .is_some_and(|n| n.eq_ignore_ascii_case("content-type"))
        }) {
            self.use_(h);
            return h.arg(1).unwrap_or("text/plain").to_owned();
        }
        match chain.get("default_type") {
            Some(d) => {
                self.use_(d);
                d.arg(0).unwrap_or("text/plain").to_owned()
            }
            // The stock nginx.conf, which a conf.d file is included from,
            // sets application/octet-stream; nginx's own default is text/plain.
            None if !self.whole => "application/octet-stream".to_owned(),
            None => "text/plain".to_owned(),
        }
    }

    /// Content directives a location never reaches.
    fn dead_content(&mut self, here: &'a [Directive], why: &str) {
        for d in here {
            if matches!(
                d.name.as_str(),
                "proxy_pass"
                    | "root"
                    | "alias"
                    | "try_files"
                    | "index"
                    | "uwsgi_pass"
                    | "fastcgi_pass"
                    | "stub_status"
            ) && !self.used(d)
            {
                self.note(d, Status::NotNeeded, why, "");
            }
        }
    }

    /// A handler vigil lacks: the location answers `status` saying so,
    /// so requests do not fall through to another location.
    fn placeholder(&mut self, block: &mut Block, d: &Directive, status: i64) {
        block.set(
            "return",
            Value::Inline(vec![
                ("status".into(), Value::Int(status)),
                (
                    "body".into(),
                    Value::str(format!(
                        "not translated by vigil import: {} ({})\n",
                        d.summary(),
                        d.place
                    )),
                ),
            ]),
            format!("stands in for {} (see the import report)", d.name),
        );
    }

    /// `proxy_pass` and what goes with it.
    fn proxy(
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
    fn proxy_headers(&mut self, chain: &Chain<'a>, block: &mut Block, vars: &VarContext<'_>) {
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
                ("x-forwarded-for", "$proxy_add_x_forwarded_for") => {
                    self.note(
                        d,
                        Status::NotNeeded,
                        "vigil appends the client to X-Forwarded-For itself",
                        "",
                    );
                    continue;
                }
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
        // vigil adds these four by default; nginx adds none of them and
        // passes on what the client sent. Unless the config sets one, the
        // client's own value goes on (and none when it sent none).
        for name in [
            "X-Forwarded-For",
            "X-Real-IP",
            "X-Forwarded-Proto",
            "X-Forwarded-Host",
        ] {
            let set_here = set
                .iter()
                .any(|d| d.arg(0).is_some_and(|n| n.eq_ignore_ascii_case(name)));
            if !set_here {
                let var = format!("$http_{}", name.to_ascii_lowercase().replace('-', "_"));
                headers.push((name.to_owned(), Value::str(var)));
            }
        }
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

    /// A location that serves files.
    fn static_files(
        &mut self,
        loc: &'a Directive,
        pat: &Pattern,
        chain: &Chain<'a>,
        block: &mut Block,
    ) -> bool {
        if let Some(alias) = chain.local("alias").first().copied() {
            let a = alias.arg(0).unwrap_or_default();
            let prefix = match pat {
                Pattern::Exact(u) | Pattern::Prefix { uri: u, .. } => u.clone(),
                _ => {
                    self.note(
                        alias,
                        Status::NotSupported,
                        "vigil's alias works in prefix and exact locations; in a regex location nginx fills it from captures",
                        "use root, or a prefix location",
                    );
                    return false;
                }
            };
            if values::has_vars(a) {
                self.note(
                    alias,
                    Status::NotSupported,
                    "an alias with variables",
                    "use a fixed directory",
                );
                return false;
            }
            let mut dir = absolute(&self.opts.prefix, a);
            match (prefix.ends_with('/'), dir.ends_with('/')) {
                (false, true) if dir.len() > 1 => {
                    // /docs + /srv/docs/: nginx serves /docs/x from
                    // /srv/docs//x; the same files without the extra slash.
                    dir.pop();
                    self.use_(alias);
                }
                (true, false) => {
                    self.note(
                        alias,
                        Status::Approximated,
                        format!("nginx glues the paths: {prefix}x is read from {dir}x (a known pitfall); vigil reads {dir}/x"),
                        "end the alias with / as the location does",
                    );
                    dir.push('/');
                }
                _ => self.use_(alias),
            }
            block.set("alias", Value::str(dir), alias.place.to_string());
        } else {
            let (root, note) = match chain.get("root") {
                Some(r) if values::has_vars(r.arg(0).unwrap_or_default()) => {
                    self.note(
                        r,
                        Status::NotSupported,
                        "a root with variables",
                        "use a fixed directory",
                    );
                    return false;
                }
                Some(r) => {
                    self.use_(r);
                    (
                        absolute(&self.opts.prefix, r.arg(0).unwrap_or_default()),
                        r.place.to_string(),
                    )
                }
                None => (
                    absolute(&self.opts.prefix, "html"),
                    "no root: nginx's default, html in its prefix".to_owned(),
                ),
            };
            block.set("root", Value::str(root), note);
        }
        let index = chain.all("index");
        if !index.is_empty() {
            let mut names = Vec::new();
            for d in &index {
                self.use_(d);
                for n in d.texts() {
                    if n.contains('/') || values::has_vars(n) {
                        self.report.add(
                            &d.place,
                            d.summary(),
                            Status::NotSupported,
                            format!("vigil's index entries are file names; {n:?} is left out"),
                            "",
                        );
                    } else {
                        names.push(n.to_owned());
                    }
                }
            }
            if !names.is_empty() && names != ["index.html"] {
                block.set("index", Value::strs(&names), "");
            }
        }
        if let Some(t) = chain.local("try_files").first().copied() {
            match try_files(t) {
                Ok(list) => {
                    self.use_(t);
                    block.set("try_files", Value::strs(&list), t.place.to_string());
                }
                Err(e) => self.note(t, Status::NotSupported, e, ""),
            }
        }
        if let Some(g) = chain.get("gzip_static") {
            match g.arg(0) {
                Some("on") => {
                    self.use_(g);
                    block.set("gzip_static", Value::Bool(true), g.place.to_string());
                }
                Some("always") => {
                    self.note(
                        g,
                        Status::Approximated,
                        "vigil serves .gz files only to clients that accept gzip",
                        "",
                    );
                    block.set("gzip_static", Value::Bool(true), g.place.to_string());
                }
                _ => {}
            }
        }
        let _ = loc;
        true
    }

    /// `add_header`s in effect (nginx: those of the nearest level that
    /// has any; `always` also for errors).
    fn add_headers(
        &mut self,
        chain: &Chain<'a>,
        kind: &Kind,
        block: &mut Block,
        sctx: &ServerCtx<'_>,
        vars: &VarContext<'_>,
    ) {
        let all = chain.all("add_header");
        let local = chain.sets_here("add_header");
        let mut headers: Vec<(String, String)> = Vec::new();
        for d in all {
            let (Some(name), Some(value)) = (d.arg(0), d.arg(1)) else {
                continue;
            };
            let lname = name.to_ascii_lowercase();
            if lname == "strict-transport-security" && sctx.hsts_from_server && !chain.is_local(d) {
                continue;
            }
            if lname == "content-type" && matches!(kind, Kind::Return) {
                // Used as the return's content_type (or not applicable).
                self.use_(d);
                continue;
            }
            if lname == "content-length" {
                self.note(d, Status::NotNeeded, "vigil sets Content-Length itself", "");
                continue;
            }
            let value = match values::template(value, vars) {
                Ok(v) => v,
                Err(why) => {
                    self.note(
                        d,
                        Status::NotSupported,
                        why,
                        "set the header in the application",
                    );
                    continue;
                }
            };
            if d.arg(2) == Some("always") {
                self.report.add(
                    &d.place,
                    d.summary(),
                    Status::Approximated,
                    "vigil adds headers to 2xx and 3xx responses only (nginx's rule without always), not to errors",
                    "",
                );
            }
            self.use_(d);
            match headers
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                Some((_, v)) => {
                    self.report.add(
                        &d.place,
                        d.summary(),
                        Status::Approximated,
                        format!(
                            "nginx sends {name} twice; vigil sends one header with both values"
                        ),
                        "",
                    );
                    v.push_str(", ");
                    v.push_str(&value);
                }
                None => headers.push((name.to_owned(), value)),
            }
        }
        let _ = local;
        if !headers.is_empty() {
            block.set(
                "add_header",
                Value::Inline(
                    headers
                        .into_iter()
                        .map(|(k, v)| (k, Value::Str(v)))
                        .collect(),
                ),
                "",
            );
        }
    }

    /// `expires`: on files vigil's own; elsewhere a Cache-Control header.
    fn expires(&mut self, chain: &Chain<'a>, kind: &Kind, block: &mut Block) {
        let Some(d) = chain.get("expires") else {
            return;
        };
        let args = d.texts();
        let value = match args.as_slice() {
            ["off"] => {
                self.use_(d);
                return;
            }
            ["epoch"] => "epoch".to_owned(),
            ["max"] => "max".to_owned(),
            [t] if t.starts_with('$') => {
                self.note(
                    d,
                    Status::NotSupported,
                    "vigil's expires is a fixed value per location, not a variable",
                    "write a location per kind of file (by extension) with its own expires",
                );
                return;
            }
            [t] if t.starts_with('-') => {
                self.note(
                    d,
                    Status::Approximated,
                    "a negative expires is translated as epoch (no-cache)",
                    "",
                );
                "epoch".to_owned()
            }
            [t] => match values::parse_time(t.trim_start_matches('+')) {
                Ok(t) => values::duration(t.min(std::time::Duration::from_secs(10 * 365 * 86400))),
                Err(e) => {
                    self.note(d, Status::NotSupported, e, "");
                    return;
                }
            },
            _ => {
                self.note(
                    d,
                    Status::NotSupported,
                    "expires modified / @time are not supported",
                    "use a duration",
                );
                return;
            }
        };
        let seconds = match value.as_str() {
            "epoch" => None,
            "max" => Some(315_360_000),
            v => values::parse_time(v).ok().map(|t| t.as_secs()),
        };
        let cc = match seconds {
            Some(s) => format!("max-age={s}"),
            None => "no-cache".to_owned(),
        };
        let mut headers = match block.get("add_header") {
            Some(Value::Inline(h)) => h.clone(),
            _ => Vec::new(),
        };
        let explicit = headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case("cache-control"));
        match kind {
            Kind::Static => {
                self.use_(d);
                block.set("expires", Value::str(value), d.place.to_string());
                // nginx sends its Cache-Control beside an add_header one;
                // vigil's add_header would replace expires' header.
                if let Some((_, Value::Str(v))) = explicit {
                    *v = format!("{cc}, {v}");
                    block.set("add_header", Value::Inline(headers), "");
                }
            }
            Kind::Proxy | Kind::Return => {
                match explicit {
                    Some((_, Value::Str(v))) => *v = format!("{cc}, {v}"),
                    _ => headers.push(("Cache-Control".into(), Value::str(cc))),
                }
                block.set("add_header", Value::Inline(headers), "");
                self.note(
                    d,
                    Status::Approximated,
                    "vigil's expires applies to files it serves; here it becomes add_header Cache-Control (max-age), without an Expires date",
                    "",
                );
            }
        }
    }

    /// `client_max_body_size` written in this location (or one around it).
    fn location_body_size(&mut self, chain: &Chain<'a>, loc_levels: usize, block: &mut Block) {
        for level in chain.levels.iter().take(loc_levels) {
            if let Some(d) = level.iter().find(|d| d.name == "client_max_body_size") {
                if let Some(s) = d.arg(0).and_then(|a| values::size(a).ok()) {
                    self.use_(d);
                    block.set("client_max_body_size", Value::str(s), d.place.to_string());
                }
                return;
            }
        }
    }

    /// `if ($request_method ...)` blocks: say why they are left out.
    fn method_ifs(&mut self, here: &'a [Directive]) {
        for d in here.iter().filter(|d| d.name == "if") {
            if let Some(idioms::Cond::Compare { var, value, .. }) = idioms::condition(d) {
                if var == "$request_method" {
                    let why = if value.eq_ignore_ascii_case("options") {
                        "vigil has no per-method conditions: CORS preflight (OPTIONS) requests are not answered here but passed on like other requests"
                    } else {
                        "vigil has no per-method conditions"
                    };
                    self.note(
                        d,
                        Status::NotSupported,
                        why,
                        "answer OPTIONS in the application (most CORS libraries do)",
                    );
                }
            }
        }
    }
}

/// `rewrite ^/api/(.*)$ /$1 break;` in location `/api/`: the same as a
/// proxy_pass URI of `/`. Returns the rewrite and the URI.
fn strip_prefix_rewrite<'a>(loc: &'a Directive, pat: &Pattern) -> Option<(&'a Directive, String)> {
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
fn literal(re: &str) -> Option<String> {
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

/// `try_files` in vigil's form: candidates starting with `$uri` or `/`,
/// and a last entry `=code`, `@name` or a URI.
fn try_files(d: &Directive) -> Result<Vec<String>, String> {
    let list = d.texts();
    let Some((last, files)) = list.split_last() else {
        return Err("try_files needs at least one entry".into());
    };
    if files.is_empty() {
        return Err("a try_files with only a fallback".into());
    }
    for f in files {
        let ok = (f.starts_with("$uri") || f.starts_with('/'))
            && f.matches('$').count() == usize::from(f.starts_with("$uri"));
        if !ok {
            return Err(format!(
                "vigil's try_files candidates start with $uri or /, with no other variable; {f:?} does not"
            ));
        }
    }
    let ok = last.starts_with('=')
        || last.starts_with('@')
        || (last.starts_with('/') && !last.contains('$'));
    if !ok {
        return Err(format!(
            "vigil's try_files ends with =CODE, @name or a fixed URI; {last:?} does not"
        ));
    }
    Ok(list.iter().map(|s| (*s).to_owned()).collect())
}
