//! Strings with nginx-style variables: `https://$host$request_uri`.
//!
//! Parsed once at load time into literal and variable parts, so rendering
//! on the request path is a walk over a short vector, never a parse.

use std::fmt;

use http::HeaderName;
use regex::Regex;

/// A variable a template may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `$remote_addr`: the client's IP address.
    RemoteAddr,
    /// `$host`: request host without port, lowercased.
    Host,
    /// `$request_uri`: the original path and query, as sent.
    RequestUri,
    /// `$uri`: the normalized path.
    Uri,
    /// `$args` / `$query_string`: the query string without `?`.
    Args,
    /// `$scheme`: `http` or `https`.
    Scheme,
    /// `$server_port`: the port the request arrived on.
    ServerPort,
    /// `$request_method`.
    RequestMethod,
    /// `$proxy_host`: the upstream's name (or host:port of a URL).
    ProxyHost,
    /// `$server_name`: the virtual server's first name (`_` without one).
    ServerName,
    /// `$request_id`: 32 random hex digits, the same wherever one request
    /// uses it (a header to the upstream, a body, the response).
    RequestId,
    /// `$time_iso8601`: `2026-12-04T05:00:00+00:00` (UTC, as the access
    /// log: containers rarely have a local zone).
    TimeIso8601,
    /// `$time_local`: `04/Dec/2026:05:00:00 +0000`.
    TimeLocal,
    /// `$msec`: seconds since the epoch, with milliseconds.
    Msec,
    /// `$proxy_add_x_forwarded_for`: the request's X-Forwarded-For with the
    /// client's address appended (just the address without one).
    ProxyAddXForwardedFor,
    /// `$http_<name>`: a request header (`-` written as `_`).
    Header(HeaderName),
    /// `$cookie_<name>`.
    Cookie(String),
    /// `$arg_<name>`: a query argument.
    Arg(String),
    /// `$1`..`$9` (`$0`: the whole match), or a named group `$name`, of
    /// the regex in scope (see [`Scope::captures`]), by group index.
    Capture(usize),
    /// A `[map.<name>]` variable, by its index in [`super::Config::maps`].
    Map(usize),
}

/// What a template may refer to beyond the built-in variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// The `[map.*]` names, in index order.
    pub maps: &'a [String],
    /// The regex whose groups `$1`..`$9` and `$name` are: a rewrite's, a
    /// regex location's, a map's regex key. `None`: no captures here.
    pub captures: Option<&'a Regex>,
}

/// The groups of one regex match, owned (the subject is copied), so they
/// outlive the string that was matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures {
    subject: String,
    spans: Vec<Option<(usize, usize)>>,
}

impl Captures {
    /// Matches `re` against `subject`; `None` when it does not match.
    pub fn of(re: &Regex, subject: &str) -> Option<Captures> {
        let caps = re.captures(subject)?;
        Some(Captures {
            subject: subject.to_owned(),
            spans: caps
                .iter()
                .map(|m| m.map(|m| (m.start(), m.end())))
                .collect(),
        })
    }

    /// Group `i` (0 = the whole match); `None` when it took no part.
    pub fn get(&self, i: usize) -> Option<&str> {
        let (a, b) = (*self.spans.get(i)?)?;
        self.subject.get(a..b)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

/// Supplies variable values while rendering.
pub trait Vars {
    /// Appends the value of `var` to `out` (nothing if it has no value).
    fn write_var(&self, var: &Var, out: &mut String);
}

impl Template {
    /// Parses `$name` and `${name}` references to built-in variables.
    pub fn parse(source: &str) -> Result<Self, String> {
        Self::parse_in(source, Scope::default())
    }

    /// Parses with `[map.*]` variables and regex captures in scope. `$1`
    /// is one digit, as nginx (`$10` is `$1` then `0`).
    pub fn parse_in(source: &str, scope: Scope<'_>) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            rest = &rest[dollar + 1..];
            let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
                let close = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed ${{ in {source:?}"))?;
                (&braced[..close], &braced[close + 1..])
            } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
                (&rest[..1], &rest[1..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            if name.is_empty() {
                return Err(format!(
                    "a lone $ in {source:?}; variables look like $host or ${{host}}"
                ));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(parse_var(name, scope)?));
            rest = after;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self {
            source: source.to_owned(),
            parts,
        })
    }

    /// The text as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template has no variables.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The variables the template uses.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Literal(_) => None,
        })
    }

    pub fn render(&self, vars: &dyn Vars) -> String {
        let mut out = String::new();
        self.render_into(vars, &mut out);
        out
    }

    pub fn render_into(&self, vars: &dyn Vars, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(v) => vars.write_var(v, out),
            }
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_var(name: &str, scope: Scope<'_>) -> Result<Var, String> {
    if let Ok(n) = name.parse::<usize>() {
        let Some(re) = scope.captures else {
            return Err(format!(
                "${name}: there is no regex here whose captures it could be"
            ));
        };
        let groups = re.captures_len() - 1;
        if n > groups {
            return Err(format!(
                "${name} refers to capture {n}, but the regex {:?} has {} group{}",
                re.as_str(),
                groups,
                if groups == 1 { "" } else { "s" }
            ));
        }
        return Ok(Var::Capture(n));
    }
    Ok(match name {
        // `$binary_remote_addr` is nginx's compact form for zone keys;
        // vigil hashes keys, so the text form does the same job.
        "remote_addr" | "binary_remote_addr" => Var::RemoteAddr,
        "host" => Var::Host,
        "request_uri" => Var::RequestUri,
        "uri" | "document_uri" => Var::Uri,
        "args" | "query_string" => Var::Args,
        "scheme" => Var::Scheme,
        "server_port" => Var::ServerPort,
        "request_method" => Var::RequestMethod,
        "proxy_host" => Var::ProxyHost,
        "server_name" => Var::ServerName,
        "request_id" => Var::RequestId,
        "time_iso8601" => Var::TimeIso8601,
        "time_local" => Var::TimeLocal,
        "msec" => Var::Msec,
        "proxy_add_x_forwarded_for" => Var::ProxyAddXForwardedFor,
        _ => {
            if let Some(i) = scope.maps.iter().position(|m| m == name) {
                Var::Map(i)
            } else if let Some(i) = scope
                .captures
                .and_then(|re| re.capture_names().position(|n| n == Some(name)))
            {
                Var::Capture(i)
            } else if let Some(h) = name.strip_prefix("http_") {
                let header = h.replace('_', "-").to_ascii_lowercase();
                Var::Header(
                    HeaderName::from_bytes(header.as_bytes())
                        .map_err(|_| format!("${name}: {header:?} is not a header name"))?,
                )
            } else if let Some(c) = name.strip_prefix("cookie_") {
                Var::Cookie(c.to_owned())
            } else if let Some(a) = name.strip_prefix("arg_") {
                Var::Arg(a.to_owned())
            } else {
                return Err(format!(
                    "unknown variable ${name}; known: $remote_addr, $host, $request_uri, $uri, \
                     $args, $scheme, $server_port, $request_method, $proxy_host, $server_name, \
                     $binary_remote_addr, $request_id, $time_iso8601, $time_local, $msec, \
                     $proxy_add_x_forwarded_for, $http_<header>, \
                     $cookie_<name>, $arg_<name>, a [map.<name>], or a regex capture ($1, $name)"
                ));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Vars for Fixed {
        fn write_var(&self, var: &Var, out: &mut String) {
            out.push_str(match var {
                Var::Host => "example.com",
                Var::RequestUri => "/a?b=1",
                Var::Scheme => "https",
                Var::Header(h) if h == "x-user" => "alice",
                Var::Cookie(c) if c == "sid" => "s1",
                _ => "",
            })
        }
    }

    #[test]
    fn renders_variables_and_literals() {
        let t = Template::parse("$scheme://$host$request_uri").unwrap();
        assert_eq!(t.render(&Fixed), "https://example.com/a?b=1");
        let t = Template::parse("${host}x$http_x_user-$cookie_sid").unwrap();
        assert_eq!(t.render(&Fixed), "example.comxalice-s1");
        assert!(Template::parse("plain").unwrap().is_literal());
        assert!(!t.is_literal());
    }

    #[test]
    fn captures_and_maps_in_scope() {
        let re = Regex::new(r"^/(?<section>\w+)/(.*)$").unwrap();
        let maps = ["connection_upgrade".to_owned()];
        let scope = Scope {
            maps: &maps,
            captures: Some(&re),
        };
        let t = Template::parse_in("/x/$2?s=$section&c=$connection_upgrade$10", scope).unwrap();
        let vars: Vec<&Var> = t.vars().collect();
        assert_eq!(
            vars,
            [
                &Var::Capture(2),
                &Var::Capture(1),
                &Var::Map(0),
                &Var::Capture(1)
            ]
        );
        let e = Template::parse_in("$3", scope).unwrap_err();
        assert!(e.contains("has 2 groups"), "{e}");
        let e = Template::parse("$1").unwrap_err();
        assert!(e.contains("no regex here"), "{e}");
        assert!(Template::parse("$connection_upgrade").is_err());
        assert!(
            Template::parse_in(
                "$section",
                Scope {
                    maps: &maps,
                    captures: None
                }
            )
            .is_err()
        );
        let c = Captures::of(&re, "/docs/a/b").unwrap();
        assert_eq!(
            (c.get(0), c.get(1), c.get(2), c.get(3)),
            (Some("/docs/a/b"), Some("docs"), Some("a/b"), None)
        );
        assert!(Captures::of(&re, "nope").is_none());
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(Template::parse("a $").unwrap_err().contains("lone $"));
        assert!(Template::parse("${host").unwrap_err().contains("unclosed"));
        assert!(
            Template::parse("$nope")
                .unwrap_err()
                .contains("unknown variable $nope")
        );
    }
}
