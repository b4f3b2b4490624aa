//! Template variables: what `$name` means for one request.

use super::*;

/// What every template of a request shares; [`VarsEnv::vars`] adds the
/// current URI.
#[derive(Clone, Copy)]
pub(super) struct VarsEnv<'a> {
    pub(super) conn: &'a ConnInfo,
    /// The real client address.
    pub(super) remote: &'a IpAddr,
    pub(super) server_name: &'a String,
    pub(super) host: Option<&'a str>,
    pub(super) original_uri: &'a Uri,
    pub(super) maps: &'a [MapDef],
    pub(super) map_values: &'a MapValues,
    pub(super) request_id: &'a std::sync::OnceLock<[u64; 2]>,
}

impl<'a> VarsEnv<'a> {
    pub(super) fn vars<'b>(
        &self,
        parts: &'b Parts,
        path: &'b str,
        captures: Option<&'b Captures>,
    ) -> RequestVars<'b>
    where
        'a: 'b,
    {
        RequestVars {
            parts,
            conn: self.conn,
            remote: self.remote,
            server_name: self.server_name,
            host: self.host,
            original_uri: self.original_uri,
            path,
            query: parts.uri.query(),
            proxy_host: "",
            captures,
            maps: self.maps,
            map_values: self.map_values,
            request_id: self.request_id,
        }
    }
}

/// Template variables for one request.
#[derive(Clone, Copy)]
pub(super) struct RequestVars<'a> {
    pub(super) parts: &'a Parts,
    pub(super) conn: &'a ConnInfo,
    /// The real client address.
    pub(super) remote: &'a IpAddr,
    pub(super) host: Option<&'a str>,
    pub(super) original_uri: &'a Uri,
    pub(super) path: &'a str,
    /// The query string (`$args`), as rewrites left it.
    pub(super) query: Option<&'a str>,
    pub(super) proxy_host: &'a str,
    pub(super) server_name: &'a String,
    /// The groups of the regex that matched last (a regex location's).
    pub(super) captures: Option<&'a Captures>,
    pub(super) maps: &'a [MapDef],
    pub(super) map_values: &'a MapValues,
    pub(super) request_id: &'a std::sync::OnceLock<[u64; 2]>,
}

impl Vars for RequestVars<'_> {
    fn write_var(&self, var: &Var, out: &mut String) {
        use std::fmt::Write;
        match var {
            Var::RemoteAddr => {
                let _ = write!(out, "{}", self.remote);
            }
            Var::Host => {
                if let Some(h) = self.host {
                    out.push_str(&normalize_host(h));
                }
            }
            Var::RequestUri => out.push_str(
                self.original_uri
                    .path_and_query()
                    .map_or("/", |pq| pq.as_str()),
            ),
            Var::Uri => out.push_str(self.path),
            Var::Args => out.push_str(self.query.unwrap_or("")),
            Var::Scheme => out.push_str(self.conn.scheme()),
            Var::ServerPort => {
                let _ = write!(out, "{}", self.conn.listener.port());
            }
            Var::RequestMethod => out.push_str(self.parts.method.as_str()),
            Var::ProxyHost => out.push_str(self.proxy_host),
            Var::ServerName => out.push_str(self.server_name),
            Var::RequestId => {
                // Two u64s, not a u128: 8-byte alignment keeps the request
                // future from padding out (see `future_sizes`).
                let [hi, lo] = *self
                    .request_id
                    .get_or_init(|| [fastrand::u64(..), fastrand::u64(..)]);
                let _ = write!(out, "{hi:016x}{lo:016x}");
            }
            Var::TimeIso8601 => {
                crate::proxy::access_log::write_time_iso8601(SystemTime::now(), out)
            }
            Var::TimeLocal => crate::proxy::access_log::write_time_local(SystemTime::now(), out),
            Var::Msec => {
                let d = SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
            }
            Var::ProxyAddXForwardedFor => {
                for v in self.parts.headers.get_all("x-forwarded-for") {
                    if let Ok(v) = v.to_str() {
                        out.push_str(v);
                        out.push_str(", ");
                    }
                }
                let _ = write!(out, "{}", self.remote);
            }
            Var::Header(name) => {
                let values: Vec<&str> = self
                    .parts
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                out.push_str(&values.join(", "));
            }
            Var::Cookie(name) => {
                for value in self.parts.headers.get_all(header::COOKIE) {
                    let Ok(v) = value.to_str() else { continue };
                    for pair in v.split(';') {
                        if let Some((k, val)) = pair.trim().split_once('=') {
                            if k == name {
                                out.push_str(val);
                                return;
                            }
                        }
                    }
                }
            }
            Var::Capture(i) => {
                if let Some(c) = self.captures {
                    out.push_str(c.get(*i).unwrap_or(""));
                }
            }
            Var::Map(i) => self.map_values.write(*i, self.maps, self, out),
            Var::Arg(name) => {
                for pair in self.query.unwrap_or("").split('&') {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if k == name {
                        out.push_str(v);
                        return;
                    }
                }
            }
        }
    }
}
