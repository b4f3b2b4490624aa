//! Edge controls, compression and error pages: `allow`/`deny`,
//! `limit_req`, `limit_conn`, `auth_basic`, the real-IP directives, the
//! `gzip` family, `error_page` and `proxy_intercept_errors`.
//!
//! vigil inherits these as nginx does (a list such as `access` or
//! `limit_req` replaces the outer level's whole list; a single value is
//! inherited on its own), so each is written at the level nginx has it.
//! Levels vigil lacks are folded into the nearest one it has: the http
//! level into each server (for keys `[http]` does not take), enclosing
//! locations into the (flattened) nested one.

use super::super::super::out::Block;
use super::super::super::report::Status;
use super::super::super::toml_out::Value;
use super::super::parse::Directive;
use super::super::values::{self, VarContext};
use super::{Chain, Tr};

mod args;

use self::args::{access_target, error_page, limit_conn, limit_req, zone};

/// How one vigil key is read from nginx.
struct Key {
    /// The nginx directives that make it (allow and deny share a list).
    nginx: &'static [&'static str],
    vigil: &'static str,
    /// An array directive: every one at the nearest level that has any.
    list: bool,
    /// vigil also takes it in `[http]`.
    in_http: bool,
    /// Access-phase controls: nginx's `return` answers before them.
    access_phase: bool,
    /// vigil takes it in a location.
    in_location: bool,
    /// vigil takes it on a server (else a server's or http's value is
    /// written on each location).
    in_server: bool,
}

const KEYS: &[Key] = &[
    key(&["allow", "deny"], "access", true, false, true),
    key(&["limit_req"], "limit_req", true, false, true),
    key(
        &["limit_req_status"],
        "limit_req_status",
        false,
        false,
        false,
    ),
    key(&["limit_conn"], "limit_conn", true, false, true),
    key(
        &["limit_conn_status"],
        "limit_conn_status",
        false,
        false,
        false,
    ),
    key(&["auth_basic"], "auth_basic", false, false, true),
    key(
        &["auth_basic_user_file"],
        "auth_basic_user_file",
        false,
        false,
        false,
    ),
    // vigil decides the client address per server (or in [http]).
    Key {
        in_location: false,
        ..key(&["set_real_ip_from"], "set_real_ip_from", true, true, false)
    },
    Key {
        in_location: false,
        ..key(&["real_ip_header"], "real_ip_header", false, true, false)
    },
    Key {
        in_location: false,
        ..key(
            &["real_ip_recursive"],
            "real_ip_recursive",
            false,
            true,
            false,
        )
    },
    key(&["gzip"], "gzip", false, true, false),
    key(&["gzip_comp_level"], "gzip_comp_level", false, true, false),
    key(&["gzip_types"], "gzip_types", false, true, false),
    key(&["gzip_min_length"], "gzip_min_length", false, true, false),
    key(&["gzip_vary"], "gzip_vary", false, true, false),
    key(&["gzip_proxied"], "gzip_proxied", false, true, false),
    key(
        &["gzip_http_version"],
        "gzip_http_version",
        false,
        true,
        false,
    ),
    key(&["brotli"], "brotli", false, true, false),
    key(
        &["brotli_comp_level"],
        "brotli_comp_level",
        false,
        true,
        false,
    ),
    key(&["zstd"], "zstd", false, true, false),
    key(&["zstd_comp_level"], "zstd_comp_level", false, true, false),
    key(&["error_page"], "error_page", true, false, false),
    Key {
        in_server: false,
        ..key(
            &["proxy_intercept_errors"],
            "proxy_intercept_errors",
            false,
            false,
            false,
        )
    },
];

const fn key(
    nginx: &'static [&'static str],
    vigil: &'static str,
    list: bool,
    in_http: bool,
    access_phase: bool,
) -> Key {
    Key {
        nginx,
        vigil,
        list,
        in_http,
        access_phase,
        in_location: true,
        in_server: true,
    }
}

/// The directives in effect for `k` and the index of the level they come
/// from (0 = the innermost).
fn origin<'a>(chain: &Chain<'a>, k: &Key) -> Option<(usize, Vec<&'a Directive>)> {
    chain.levels.iter().enumerate().find_map(|(i, level)| {
        let here: Vec<&Directive> = level
            .iter()
            .filter(|d| k.nginx.contains(&d.name.as_str()))
            .collect();
        if here.is_empty() {
            None
        } else if k.list {
            Some((i, here))
        } else {
            // A scalar: one per level (nginx refuses a duplicate).
            Some((i, vec![here[0]]))
        }
    })
}

impl<'a> Tr<'a> {
    /// `limit_req_zone` / `limit_conn_zone` at the http level.
    pub(crate) fn zones(&mut self, http: &'a [Directive]) {
        for d in http {
            let table = match d.name.as_str() {
                "limit_req_zone" => "limit_req_zone",
                "limit_conn_zone" => "limit_conn_zone",
                _ => continue,
            };
            let maps = self.maps.clone();
            match zone(d, table == "limit_req_zone", &maps) {
                Ok((name, block)) => {
                    self.use_(d);
                    self.zones.insert((table, name.clone()));
                    self.out.tables.push((vec![table.into(), name], block));
                }
                Err(why) => self.note(
                    d,
                    Status::NotSupported,
                    why,
                    "write the zone by hand in vigil's config (see docs/CONFIG.md, Edge controls)",
                ),
            }
        }
    }

    /// Keys written at the http level that `[http]` takes.
    pub(crate) fn edge_http(&mut self, chain: &Chain<'a>) {
        self.resolver(chain);
        let mut block = std::mem::take(&mut self.out.http);
        for k in KEYS.iter().filter(|k| k.in_http) {
            if let Some((0, ds)) = origin(chain, k) {
                self.edge_set(&mut block, k, &ds);
            }
        }
        self.out.http = block;
    }

    /// A server's keys: written on it, or at the http level for keys
    /// `[http]` does not take. `chain` is the server's (server, http).
    pub(crate) fn edge_server(&mut self, chain: &Chain<'a>, block: &mut Block) {
        for k in KEYS.iter().filter(|k| k.in_server) {
            match origin(chain, k) {
                Some((0, ds)) => self.edge_set(block, k, &ds),
                Some((_, ds)) if !k.in_http => self.edge_set(block, k, &ds),
                _ => {}
            }
        }
    }

    /// A location's keys: written on it or an enclosing location
    /// (`loc_levels` of the chain's levels are locations). A location
    /// answered by `return` (or a redirecting rewrite, or `internal`) in
    /// nginx's rewrite phase never reaches the access phase: it gets the
    /// access-phase controls turned off, so the server's do not apply in
    /// vigil either.
    pub(crate) fn edge_location(
        &mut self,
        chain: &Chain<'a>,
        loc_levels: usize,
        answered_before_access: bool,
        block: &mut Block,
    ) {
        for k in KEYS {
            let Some((level, ds)) = origin(chain, k) else {
                continue;
            };
            if answered_before_access && k.access_phase {
                for d in ds.iter().filter(|d| chain.is_local(d)) {
                    self.note(
                        d,
                        Status::NotNeeded,
                        "never used: nginx's return answers in the rewrite phase, before access and limits",
                        "",
                    );
                }
                let off = if k.vigil == "auth_basic" {
                    Value::str("off")
                } else {
                    Value::Array(Vec::new())
                };
                block.set(
                    k.vigil,
                    off,
                    "nginx's return answers before access and limits",
                );
                continue;
            }
            if level >= loc_levels && k.in_server {
                continue;
            }
            if k.vigil == "proxy_intercept_errors" && block.get("proxy_pass").is_none() {
                // No effect without proxy_pass, in nginx too; vigil refuses it.
                for d in ds.iter().filter(|d| chain.is_local(d)) {
                    self.note(
                        d,
                        Status::NotNeeded,
                        "no effect in a location that does not proxy",
                        "",
                    );
                }
                continue;
            }
            if k.in_location {
                self.edge_set(block, k, &ds);
            } else {
                for d in ds.iter().filter(|d| chain.is_local(d)) {
                    self.note(
                        d,
                        Status::NotSupported,
                        format!(
                            "vigil takes {} per server (or in [http]), not per location",
                            k.vigil
                        ),
                        "set it on the server, if every location there may trust the same peers",
                    );
                }
            }
        }
    }

    /// `resolver` / `resolver_timeout` at the http level: vigil has one
    /// resolver, in `[http]`, for every pool.
    fn resolver(&mut self, chain: &Chain<'a>) {
        if let Some(d) = chain.local("resolver").first().copied() {
            let mut servers = Vec::new();
            for a in d.texts() {
                if let Some((opt, _)) = a.split_once('=') {
                    let why = match opt {
                        "valid" => {
                            "vigil re-resolves at each answer's TTL; to force an interval, set resolve_interval on the upstreams"
                        }
                        "ipv6" | "ipv4" => {
                            "vigil uses every address family the resolver answers with"
                        }
                        _ => "an option vigil does not have",
                    };
                    self.report.add(
                        &d.place,
                        format!("resolver ... {a}"),
                        Status::Approximated,
                        why,
                        "",
                    );
                } else {
                    servers.push(Value::str(a));
                }
            }
            self.use_(d);
            self.out
                .http
                .set("resolver", Value::Array(servers), d.place.to_string());
        }
        if let Some(d) = chain.local("resolver_timeout").first().copied() {
            if let Some(t) = d.arg(0).and_then(|a| values::parse_time(a).ok()) {
                self.use_(d);
                self.out.http.set(
                    "resolver_timeout",
                    Value::str(values::duration(t)),
                    d.place.to_string(),
                );
            }
        }
    }

    /// Translates `ds` into `k` on `block`, or reports why not.
    fn edge_set(&mut self, block: &mut Block, k: &Key, ds: &[&'a Directive]) {
        let place = ds[0].place.to_string();
        let value = match k.vigil {
            "access" => self.access(ds),
            "limit_req" => self.limit_list(ds, true),
            "limit_conn" => self.limit_list(ds, false),
            "set_real_ip_from" => self.real_ip_from(ds),
            "error_page" => self.error_pages(ds),
            _ => self.scalar(k, ds[0]),
        };
        if let Some(v) = value {
            block.set(k.vigil, v, place);
        }
    }

    fn access(&mut self, ds: &[&'a Directive]) -> Option<Value> {
        let mut rules = Vec::new();
        for d in ds {
            let target = d.arg(0).unwrap_or_default();
            match access_target(target) {
                Ok(t) => {
                    self.use_(d);
                    rules.push(Value::str(format!("{} {t}", d.name)));
                }
                Err(why) => {
                    // Losing one rule changes what the others mean.
                    self.note(
                        d,
                        Status::NotSupported,
                        format!("{why}; the access list it belongs to is not translated"),
                        "write the rule with addresses or CIDR ranges",
                    );
                    for other in ds {
                        if !self.used(other) {
                            self.note(other, Status::NotSupported, format!("in the same access list as `{}` ({}), which vigil cannot express", d.summary(), d.place), "");
                        }
                    }
                    return None;
                }
            }
        }
        Some(Value::Array(rules))
    }

    fn limit_list(&mut self, ds: &[&'a Directive], req: bool) -> Option<Value> {
        let mut out = Vec::new();
        for d in ds {
            let parsed = if req { limit_req(d) } else { limit_conn(d) };
            match parsed {
                Ok((zone, fields)) => {
                    let table = if req {
                        "limit_req_zone"
                    } else {
                        "limit_conn_zone"
                    };
                    if !self.zones.contains(&(table, zone.clone())) {
                        self.note(
                            d,
                            Status::NotSupported,
                            format!(
                                "its zone {zone} was not translated (see {table} in this report)"
                            ),
                            "",
                        );
                        continue;
                    }
                    self.use_(d);
                    out.push(Value::Inline(fields));
                }
                Err(why) => self.note(d, Status::NotSupported, why, ""),
            }
        }
        // Entries that could not be read are reported; the others keep
        // replacing the outer level's list, as the whole set did in nginx.
        Some(Value::Array(out))
    }

    fn error_pages(&mut self, ds: &[&'a Directive]) -> Option<Value> {
        let mut out = Vec::new();
        for d in ds {
            match error_page(d) {
                Ok(fields) => {
                    self.use_(d);
                    out.push(Value::Inline(fields));
                }
                Err(why) => self.note(
                    d,
                    Status::NotSupported,
                    why,
                    "vigil answers these statuses with its own short pages",
                ),
            }
        }
        Some(Value::Array(out))
    }

    fn real_ip_from(&mut self, ds: &[&'a Directive]) -> Option<Value> {
        let mut out = Vec::new();
        for d in ds {
            match access_target(d.arg(0).unwrap_or_default()) {
                Ok(t) if t != "all" => {
                    self.use_(d);
                    out.push(Value::str(t));
                }
                Ok(_) => {
                    self.use_(d);
                    out.push(Value::str("0.0.0.0/0"));
                    out.push(Value::str("::/0"));
                }
                Err(why) => self.note(d, Status::NotSupported, why, ""),
            }
        }
        (!out.is_empty()).then_some(Value::Array(out))
    }

    /// The single-valued keys.
    fn scalar(&mut self, k: &Key, d: &'a Directive) -> Option<Value> {
        let arg = d.arg(0).unwrap_or_default();
        let on_off = || match arg {
            "on" => Some(Value::Bool(true)),
            "off" => Some(Value::Bool(false)),
            _ => None,
        };
        let int = |lo: i64, hi: i64| {
            arg.parse::<i64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .map(Value::Int)
        };
        let value = match k.vigil {
            "limit_req_status" | "limit_conn_status" => int(400, 599),
            "auth_basic" => Some(Value::str(arg)),
            "auth_basic_user_file" => {
                if values::has_vars(arg) {
                    None
                } else {
                    Some(Value::str(super::absolute(&self.opts.conf_prefix, arg)))
                }
            }
            "real_ip_header" => Some(Value::str(arg)),
            "real_ip_recursive"
            | "gzip"
            | "gzip_vary"
            | "brotli"
            | "zstd"
            | "proxy_intercept_errors" => on_off(),
            "gzip_comp_level" => int(1, 9),
            "brotli_comp_level" => int(0, 11),
            "zstd_comp_level" => int(1, 19),
            "gzip_min_length" => values::size(arg)
                .ok()
                .and_then(|s| crate::config::units::ByteSize::parse(&s).ok())
                .map(|b| Value::Int(b.0 as i64)),
            "gzip_http_version" => matches!(arg, "1.0" | "1.1").then(|| Value::str(arg)),
            "gzip_types" | "gzip_proxied" => Some(Value::strs(&d.texts())),
            _ => None,
        };
        match value {
            Some(v) => {
                self.use_(d);
                Some(v)
            }
            None => {
                self.note(
                    d,
                    Status::NotSupported,
                    format!("the value is not one vigil's {} takes", k.vigil),
                    "see docs/CONFIG.md",
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::access_target;

    #[test]
    fn access_targets_are_masked_as_nginx_does() {
        assert_eq!(access_target("all").unwrap(), "all");
        assert_eq!(access_target("10.1.2.3").unwrap(), "10.1.2.3");
        assert_eq!(access_target("10.1.2.3/8").unwrap(), "10.0.0.0/8");
        assert_eq!(access_target("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert_eq!(access_target("2001:db8::1/32").unwrap(), "2001:db8::/32");
        assert!(access_target("unix:").is_err());
        assert!(access_target("10.0.0.0/33").is_err());
        assert!(access_target("example.com").is_err());
    }
}
