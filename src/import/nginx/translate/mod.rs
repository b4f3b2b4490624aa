//! nginx directives → vigil keys. The walk follows nginx's own reading:
//! `http` → `server` → `location`, with each directive's inheritance rule
//! (a scalar is taken from the nearest level that sets it; an array such
//! as `proxy_set_header` or `add_header` from the nearest level that sets
//! any, the others are dropped, as nginx does). Every directive consumed
//! is marked; at the end every one left is reported with its fate, so the
//! report is complete by construction.

mod edge;
mod idioms;
mod location;
mod map;
mod rewrite;
mod server;
mod upstream;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::super::ParseError;
use super::super::out::{Block, Output};
use super::super::report::{Report, Status};
use super::super::toml_out::Value;
use super::directives::{self, Fate};
use super::parse::{Directive, IncludeNote, Parsed};
use super::values;

mod logs;

pub use upstream::Pools;

/// Paths nginx would resolve relative paths against.
#[derive(Debug, Clone)]
pub struct Options {
    /// nginx's prefix (`-p`): relative `root`, `alias` and the default
    /// `html` root are taken from here. Debian's is /usr/share/nginx.
    pub prefix: PathBuf,
    /// nginx's configuration prefix: relative certificate paths.
    pub conf_prefix: PathBuf,
}

/// One level of the inheritance chain: a block's directives.
pub(crate) type Level<'a> = &'a [Directive];

/// Levels from the innermost (a location) to the outermost (http).
#[derive(Clone)]
pub(crate) struct Chain<'a> {
    levels: Vec<Level<'a>>,
}

impl<'a> Chain<'a> {
    pub(crate) fn new(levels: Vec<Level<'a>>) -> Chain<'a> {
        Chain { levels }
    }

    /// `inner` inside this chain.
    pub(crate) fn inside(&self, inner: Level<'a>) -> Chain<'a> {
        let mut levels = Vec::with_capacity(self.levels.len() + 1);
        levels.push(inner);
        levels.extend(self.levels.iter().copied());
        Chain { levels }
    }

    /// A scalar directive: the first at the nearest level that has one.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Directive> {
        self.levels
            .iter()
            .find_map(|l| l.iter().find(|d| d.name == name))
    }

    /// An array directive: every one at the nearest level that has any.
    pub(crate) fn all(&self, name: &str) -> Vec<&'a Directive> {
        for level in &self.levels {
            let here: Vec<&Directive> = level.iter().filter(|d| d.name == name).collect();
            if !here.is_empty() {
                return here;
            }
        }
        Vec::new()
    }

    /// Only the innermost level.
    pub(crate) fn local(&self, name: &str) -> Vec<&'a Directive> {
        self.levels
            .first()
            .map(|l| l.iter().filter(|d| d.name == name).collect())
            .unwrap_or_default()
    }

    /// Whether `d` is written at the innermost level.
    pub(crate) fn is_local(&self, d: &Directive) -> bool {
        self.levels
            .first()
            .is_some_and(|l| l.iter().any(|x| std::ptr::eq(x, d)))
    }

    /// Whether the innermost level sets `name`.
    pub(crate) fn sets_here(&self, name: &str) -> bool {
        !self.local(name).is_empty()
    }
}

/// The translator's state.
pub(crate) struct Tr<'a> {
    pub(crate) opts: &'a Options,
    pub(crate) report: &'a mut Report,
    pub(crate) out: Output,
    used: HashSet<usize>,
    /// Blocks reported as not translated: what they hold is reported as
    /// inside them.
    dropped: HashSet<usize>,
    /// `upstream` blocks by name.
    pub(crate) upstreams: BTreeMap<String, &'a Directive>,
    /// Variables set by the websocket `map` idiom (`$connection_upgrade`).
    pub(crate) upgrade_vars: Vec<String>,
    pub(crate) log_formats: BTreeMap<String, &'a Directive>,
    pub(crate) pools: Pools,
    /// Upstream blocks translated so far.
    pub(crate) bases: BTreeMap<String, upstream::Base>,
    /// Whether the file is a whole nginx.conf (false: a conf.d fragment).
    pub(crate) whole: bool,
    /// Some listen has http2 / some has not.
    pub(crate) http2_on: bool,
    pub(crate) http2_off: bool,
    /// `[http]` values set by servers, to check they agree.
    pub(crate) server_settings: BTreeMap<&'static str, Vec<(String, &'a Directive)>>,
    /// `limit_req_zone` / `limit_conn_zone` tables made: (table, name).
    pub(crate) zones: HashSet<(&'static str, String)>,
    /// `[map.*]` tables made (their variables' names, without `$`).
    pub(crate) maps: std::sync::Arc<Vec<String>>,
}

impl<'a> Tr<'a> {
    pub(crate) fn use_(&mut self, d: &Directive) {
        self.used.insert(d as *const Directive as usize);
    }

    pub(crate) fn used(&self, d: &Directive) -> bool {
        self.used.contains(&(d as *const Directive as usize))
    }

    /// Reports a block as not translated, with all it holds.
    pub(crate) fn drop_block(
        &mut self,
        d: &Directive,
        status: Status,
        why: impl Into<String>,
        instead: impl Into<String>,
    ) {
        self.dropped.insert(d as *const Directive as usize);
        self.note(d, status, why, instead);
    }

    /// Marks `d` and reports it.
    pub(crate) fn note(
        &mut self,
        d: &Directive,
        status: Status,
        why: impl Into<String>,
        instead: impl Into<String>,
    ) {
        self.use_(d);
        self.report.add(&d.place, d.summary(), status, why, instead);
    }
}

/// Translates a parsed nginx configuration into `report` and the output.
pub fn translate(
    parsed: &Parsed,
    opts: &Options,
    report: &mut Report,
) -> Result<Output, ParseError> {
    let top = &parsed.directives;
    let https: Vec<&Directive> = top.iter().filter(|d| d.name == "http").collect();
    if https.len() > 1 {
        let d = https[1];
        return Err(ParseError {
            file: d.place.file.to_string(),
            line: d.place.line,
            message: "\"http\" directive is duplicate".into(),
        });
    }
    let whole = !https.is_empty()
        || top.iter().any(|d| {
            matches!(
                d.name.as_str(),
                "events" | "worker_processes" | "user" | "pid"
            )
        });
    super::check::check(
        top,
        if whole {
            directives::MAIN
        } else {
            directives::HTTP
        },
    )?;
    for note in &parsed.includes {
        match note {
            IncludeNote::Missing { place, path, why } => report.add(
                place,
                format!("include {}", path.display()),
                Status::NotSupported,
                format!("the included file could not be read ({why}); what it holds is not translated"),
                "import again with the file present (or with --conf-prefix pointing where nginx finds it)",
            ),
            IncludeNote::NoMatch { place, pattern } => report.add(
                place,
                format!("include {}", pattern.display()),
                Status::Note,
                "no file matches (nginx accepts an empty glob)",
                "",
            ),
            IncludeNote::BesideFile { place, path } => report.add(
                place,
                format!("include {}", path.display()),
                Status::Note,
                "not found in the configuration prefix, where nginx looks; read from beside the including file",
                "pass --conf-prefix with nginx's configuration directory if this is not what nginx reads",
            ),
        }
    }
    let mut tr = Tr {
        opts,
        report,
        out: Output::default(),
        used: HashSet::new(),
        dropped: HashSet::new(),
        upstreams: BTreeMap::new(),
        upgrade_vars: Vec::new(),
        log_formats: BTreeMap::new(),
        pools: Pools::default(),
        bases: BTreeMap::new(),
        whole,
        http2_on: false,
        http2_off: false,
        server_settings: BTreeMap::new(),
        zones: HashSet::new(),
        maps: Default::default(),
    };
    let http: &[Directive] = match https.first() {
        Some(h) => {
            tr.use_(h);
            h.children()
        }
        None => top,
    };
    if !whole {
        tr.report.add(
            "",
            "",
            Status::Note,
            "no http block: the file is read as one included inside http { } (conf.d, sites-enabled)",
            "",
        );
    }
    tr.out.http = Block::new("[http]: connection settings (nginx's http level)");
    tr.out.log = Block::new("[log]");
    if whole {
        tr.main_level(top);
    }
    tr.http_level(http)?;
    tr.leftovers(top, None);
    Ok(tr.out)
}

impl<'a> Tr<'a> {
    fn main_level(&mut self, top: &'a [Directive]) {
        for d in top {
            match d.name.as_str() {
                "worker_processes" => match d.arg(0) {
                    Some("auto") => self.note(
                        d,
                        Status::NotNeeded,
                        "vigil starts one worker thread per core by default",
                        "",
                    ),
                    Some(n) if n.parse::<u32>().is_ok_and(|n| n > 0) => {
                        self.use_(d);
                        let n: i64 = n.parse().unwrap_or(1);
                        self.out.http.set(
                            "workers",
                            Value::Int(n),
                            format!("worker_processes, {}", d.place),
                        );
                    }
                    _ => {}
                },
                "error_log" => self.error_log(d),
                _ => {}
            }
        }
    }

    fn http_level(&mut self, http: &'a [Directive]) -> Result<(), ParseError> {
        for d in http {
            match d.name.as_str() {
                "upstream" => {
                    let name = d.arg(0).unwrap_or_default().to_owned();
                    if self.upstreams.insert(name.clone(), d).is_some() {
                        return Err(ParseError {
                            file: d.place.file.to_string(),
                            line: d.place.line,
                            message: format!("duplicate upstream \"{name}\""),
                        });
                    }
                }
                "log_format" => {
                    if let Some(n) = d.arg(0) {
                        self.log_formats.insert(n.to_owned(), d);
                    }
                }
                "error_log" => self.error_log(d),
                _ => {}
            }
        }
        self.maps(http);
        let chain = Chain::new(vec![http]);
        self.http_settings(&chain);
        self.zones(http);
        self.edge_http(&chain);
        let servers: Vec<&Directive> = http.iter().filter(|d| d.name == "server").collect();
        let ssl_addrs = self.ssl_addresses(&servers, &chain);
        for s in servers {
            self.use_(s);
            self.server(s, &chain, &ssl_addrs);
        }
        self.agree_on_server_settings();
        self.access_log(http);
        self.emit_pools();
        if self.http2_off && !self.http2_on {
            self.out.http.set(
                "http2",
                Value::Bool(false),
                "no listen has http2: nginx speaks HTTP/1.1 only",
            );
        } else if self.http2_off {
            self.report.add(
                "",
                "listen without http2",
                Status::Approximated,
                "vigil's [http] http2 is one switch for every listener: servers whose nginx listen had no http2 accept HTTP/2 too",
                "",
            );
        }
        Ok(())
    }

    /// `map $http_upgrade $connection_upgrade { default upgrade; '' close; }`.
    fn map_idiom(&mut self, d: &Directive) {
        let (Some(src), Some(var)) = (d.arg(0), d.arg(1)) else {
            return;
        };
        let mut default = None;
        let mut empty = None;
        let mut other = false;
        for line in d.children() {
            match (line.name.as_str(), line.arg(0)) {
                ("default", Some(v)) => default = Some(v.to_ascii_lowercase()),
                ("", Some(v)) => empty = Some(v.to_ascii_lowercase()),
                _ => other = true,
            }
        }
        if src == "$http_upgrade"
            && !other
            && default.as_deref() == Some("upgrade")
            && matches!(empty.as_deref(), Some("close") | Some(""))
        {
            self.upgrade_vars.push(var.to_owned());
            self.note(
                d,
                Status::NotNeeded,
                format!("the WebSocket idiom: locations passing Connection {var} get vigil's websocket = true"),
                "",
            );
        }
    }

    /// `[http]` keys from the http level.
    fn http_settings(&mut self, chain: &Chain<'a>) {
        for (name, key) in [
            ("client_header_timeout", "client_header_timeout"),
            ("client_body_timeout", "client_body_timeout"),
            ("send_timeout", "send_timeout"),
        ] {
            if let Some(d) = chain.get(name) {
                if let Some(t) = d.arg(0).and_then(|a| values::parse_time(a).ok()) {
                    self.use_(d);
                    self.out
                        .http
                        .set(key, Value::str(values::duration(t)), d.place.to_string());
                }
            }
        }
        if let Some(d) = chain.get("client_max_body_size") {
            if let Some(s) = d.arg(0).and_then(|a| values::size(a).ok()) {
                self.use_(d);
                self.out
                    .http
                    .set("client_max_body_size", Value::str(s), d.place.to_string());
            }
        }
        self.body_buffering(
            chain.get("client_body_buffer_size"),
            chain.get("client_body_temp_path"),
            false,
        );
        if let Some(d) = chain.get("large_client_header_buffers") {
            if let Some(s) = d.arg(1).and_then(|a| values::size(a).ok()) {
                self.note(
                    d,
                    Status::Approximated,
                    "vigil's max_header_size limits the request line (414) and all header fields together (431); nginx limits each line to one buffer",
                    "",
                );
                self.out
                    .http
                    .set("max_header_size", Value::str(s), d.place.to_string());
            }
        }
        self.common_settings(chain);
    }

    /// Directives read the same way at every level.
    pub(crate) fn common_settings(&mut self, chain: &Chain<'a>) {
        for d in chain.local("keepalive_timeout") {
            if d.arg(0).and_then(|a| values::parse_time(a).ok()) == Some(std::time::Duration::ZERO)
            {
                self.note(
                    d,
                    Status::NotSupported,
                    "keepalive_timeout 0 turns client keep-alive off; vigil always allows it",
                    "",
                );
            } else {
                self.note(
                    d,
                    Status::NotNeeded,
                    "vigil closes an idle keep-alive connection after [http] client_header_timeout",
                    "set client_header_timeout if you want idle connections closed sooner",
                );
            }
        }
        for d in chain.local("merge_slashes") {
            if d.arg(0) == Some("off") {
                self.note(
                    d,
                    Status::NotSupported,
                    "vigil always merges // in paths before matching",
                    "",
                );
            } else {
                self.note(d, Status::NotNeeded, "vigil always merges // in paths", "");
            }
        }
        for d in chain.local("default_type") {
            let v = d.arg(0).unwrap_or_default();
            if v == "application/octet-stream" {
                self.note(
                    d,
                    Status::NotNeeded,
                    "vigil serves files of unknown type as application/octet-stream",
                    "",
                );
            }
            // Otherwise used by return (content_type) and reported there.
        }
        for d in chain.local("gzip_static") {
            if d.arg(0) == Some("off") {
                self.note(d, Status::NotNeeded, "off is vigil's default", "");
            }
        }
    }

    /// Reports every directive that was not consumed.
    fn leftovers(&mut self, directives: &'a [Directive], inside: Option<&'a Directive>) {
        for d in directives {
            let spec = directives::spec(&d.name);
            if !self.used(d) && d.name == "upstream" {
                self.report.add(
                    &d.place,
                    d.summary(),
                    Status::NotNeeded,
                    "no proxy_pass uses it (vigil has no other protocol to reach it by)",
                    "",
                );
            } else if !self.used(d) {
                let in_untranslated = inside.filter(|p| {
                    !self.used(p)
                        || p.name == "if"
                        || self.dropped.contains(&(*p as *const Directive as usize))
                });
                match (spec.map(|s| s.fate), in_untranslated) {
                    (_, Some(p)) if p.name == "if" && !self.used(d) => {
                        let p = p.clone();
                        self.report.add(
                            &d.place,
                            d.summary(),
                            Status::NotSupported,
                            format!("inside `{}` ({}), which is not translated", p.summary(), p.place),
                            "",
                        );
                    }
                    (Some(Fate::NotNeeded(why)), _) => {
                        self.report.add(&d.place, d.summary(), Status::NotNeeded, why, "")
                    }
                    (Some(Fate::NotSupported(why, instead)), _) => self.report.add(
                        &d.place,
                        d.summary(),
                        Status::NotSupported,
                        why,
                        instead,
                    ),
                    (Some(Fate::Translated), Some(p)) => {
                        let p = p.clone();
                        self.report.add(
                            &d.place,
                            d.summary(),
                            Status::NotSupported,
                            format!("inside `{}` ({}), which is not translated", p.summary(), p.place),
                            "",
                        );
                    }
                    (Some(Fate::Translated), None) => self.report.add(
                        &d.place,
                        d.summary(),
                        Status::NotSupported,
                        "not translated in this form or position",
                        "",
                    ),
                    (None, _) => self.report.add(
                        &d.place,
                        d.summary(),
                        Status::Unknown,
                        "not a directive of the nginx modules the importer knows (a third-party module?); not translated",
                        "check what it does and whether vigil needs an equivalent",
                    ),
                }
            }
            let data_block = spec.is_some_and(|s| s.data) || d.name == "stream" || d.name == "mail";
            let upstream_block = d.name == "upstream";
            if !data_block && d.block.is_some() && !upstream_block {
                self.leftovers(d.children(), Some(d));
            }
            if upstream_block {
                self.upstream_leftovers(d);
            }
        }
    }

    fn upstream_leftovers(&mut self, up: &'a Directive) {
        for d in up.children() {
            if self.used(d) {
                continue;
            }
            let why = if self.used(up) {
                match directives::upstream_spec(&d.name).map(|s| s.fate) {
                    Some(Fate::NotNeeded(w)) => (Status::NotNeeded, w.to_owned(), String::new()),
                    Some(Fate::NotSupported(w, i)) => {
                        (Status::NotSupported, w.to_owned(), i.to_owned())
                    }
                    Some(Fate::Translated) => (
                        Status::NotSupported,
                        "not translated in this form".to_owned(),
                        String::new(),
                    ),
                    None => (
                        Status::Unknown,
                        "not an upstream directive the importer knows".to_owned(),
                        String::new(),
                    ),
                }
            } else {
                (
                    Status::NotNeeded,
                    format!(
                        "in upstream {}, which no proxy_pass uses",
                        up.arg(0).unwrap_or_default()
                    ),
                    String::new(),
                )
            };
            self.report.add(&d.place, d.summary(), why.0, why.1, why.2);
        }
    }

    /// `[http]` timeouts written in servers: one value if they agree.
    fn agree_on_server_settings(&mut self) {
        let settings = std::mem::take(&mut self.server_settings);
        for (key, values) in settings {
            let first = &values[0].0;
            if values.iter().all(|(v, _)| v == first) {
                let places: Vec<String> = values.iter().map(|(_, d)| d.place.to_string()).collect();
                self.out
                    .http
                    .set(key, Value::str(first.clone()), places.join(", "));
                for (_, d) in values {
                    self.use_(d);
                }
            } else {
                for (v, d) in values {
                    self.note(
                        d,
                        Status::Approximated,
                        format!(
                            "vigil has one {key} for every server; the servers disagree ({v} here)"
                        ),
                        format!("choose one value for [http] {key}"),
                    );
                }
            }
        }
    }

    /// `client_body_buffer_size` and `client_body_temp_path`: `[http]` keys
    /// in vigil. At the http level they are set at once; in a server or a
    /// location they must agree across servers.
    pub(crate) fn body_buffering(
        &mut self,
        size: Option<&'a Directive>,
        temp: Option<&'a Directive>,
        per_server: bool,
    ) {
        let size = size.and_then(|d| Some((values::size(d.arg(0)?).ok()?, d)));
        // nginx's extra arguments are directory levels, which an unnamed
        // file does not need.
        let temp = temp.and_then(|d| Some((absolute(&self.opts.prefix, d.arg(0)?), d)));
        for (key, found) in [
            ("client_body_buffer_size", size),
            ("client_body_temp_path", temp),
        ] {
            let Some((value, d)) = found else { continue };
            if per_server {
                self.server_setting(key, value, d);
            } else {
                self.use_(d);
                self.out
                    .http
                    .set(key, Value::str(value), d.place.to_string());
            }
        }
    }

    pub(crate) fn server_setting(&mut self, key: &'static str, value: String, d: &'a Directive) {
        self.server_settings
            .entry(key)
            .or_default()
            .push((value, d));
    }
}

/// Resolves a path nginx reads relative to `base`.
pub(crate) fn absolute(base: &Path, p: &str) -> String {
    let path = Path::new(p);
    if path.is_absolute() {
        p.to_owned()
    } else {
        base.join(path).display().to_string()
    }
}
