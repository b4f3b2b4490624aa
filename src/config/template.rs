//! Strings with nginx-style variables: `https://$host$request_uri`.
//!
//! Parsed once at load time into literal and variable parts, so rendering
//! on the request path is a walk over a short vector, never a parse.

use std::fmt;

use http::HeaderName;

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
    /// `$http_<name>`: a request header (`-` written as `_`).
    Header(HeaderName),
    /// `$cookie_<name>`.
    Cookie(String),
    /// `$arg_<name>`: a query argument.
    Arg(String),
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
    /// Parses `$name` and `${name}` references.
    pub fn parse(source: &str) -> Result<Self, String> {
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
            parts.push(Part::Var(parse_var(name)?));
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

fn parse_var(name: &str) -> Result<Var, String> {
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
        _ => {
            if let Some(h) = name.strip_prefix("http_") {
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
                     $binary_remote_addr, $http_<header>, \
                     $cookie_<name>, $arg_<name>"
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
