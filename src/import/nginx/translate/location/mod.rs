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

mod proxy;
mod static_files;

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
        for level in chain.levels.iter().take(loc_levels) {
            let find = |name: &str| level.iter().find(|d| d.name == name);
            self.body_buffering(
                find("client_body_buffer_size"),
                find("client_body_temp_path"),
                true,
            );
        }
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
