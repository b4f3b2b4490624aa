//! Edge controls: `[limit_req_zone.*]`, `[limit_conn_zone.*]`, the real
//! client address (`[http]` and `[[server]]`), and per server / location
//! `access`, `limit_req`, `limit_conn`, `auth_basic`.
//!
//! Inheritance is nginx's, resolved here once: a location that sets a
//! list (`access`, `limit_req`, `limit_conn`) replaces the server's whole
//! list; single values (`*_status`, `auth_basic`, `auth_basic_user_file`)
//! are inherited one by one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, StatusCode};

use super::Validator;
use crate::config::cidr::{AccessList, AccessRule, Cidr, CidrSet};
use crate::config::edge::*;
use crate::config::error::{index, join};
use crate::config::file::*;
use crate::config::htpasswd::Htpasswd;
use crate::config::template::Var;

/// Zones and files shared by the whole config, filled before servers.
#[derive(Debug, Default)]
pub(super) struct EdgeState {
    req_zones: BTreeMap<String, Arc<LimitReqZone>>,
    conn_zones: BTreeMap<String, Arc<LimitConnZone>>,
    /// htpasswd files read in this load, by path; `None` if unreadable.
    htpasswd: HashMap<PathBuf, Option<Arc<Htpasswd>>>,
    /// `[http]`-level real address settings, inherited by servers.
    http_real_ip: RealIpLevel,
    /// `[http] resolver` is set: upstream names may start unresolved.
    pub(super) has_resolver: bool,
    /// Problems already said once (a server-level mistake that every
    /// location inherits).
    reported: std::collections::HashSet<String>,
}

impl EdgeState {
    pub(super) fn req_zones(&self) -> BTreeMap<String, Arc<LimitReqZone>> {
        self.req_zones.clone()
    }

    pub(super) fn conn_zones(&self) -> BTreeMap<String, Arc<LimitConnZone>> {
        self.conn_zones.clone()
    }
}

/// Real-address settings at one level, each possibly unset.
#[derive(Debug, Clone, Default)]
struct RealIpLevel {
    trusted: Option<CidrSet>,
    header: Option<RealIpHeader>,
    recursive: Option<bool>,
}

/// A server's edge settings as its locations inherit them.
#[derive(Debug, Clone, Default)]
pub(super) struct EdgeDefaults {
    controls: EdgeControls,
    /// `auth_basic` as set on the server: a realm, `off`, or unset.
    realm: Option<String>,
    user_file: Option<Arc<Htpasswd>>,
    /// A user file was named (even if it could not be read).
    user_file_given: bool,
    /// Key of the server's `auth_basic`, for a problem found in a
    /// location that inherits it.
    realm_key: String,
}

/// The edge keys of a server or a location.
pub(super) struct EdgeFields<'a> {
    access: &'a Option<Vec<String>>,
    limit_req: &'a Option<Vec<LimitReqFile>>,
    limit_req_status: Option<u16>,
    limit_conn: &'a Option<Vec<LimitConnFile>>,
    limit_conn_status: Option<u16>,
    auth_basic: &'a Option<String>,
    auth_basic_user_file: &'a Option<PathBuf>,
}

impl<'a> From<&'a ServerFile> for EdgeFields<'a> {
    fn from(f: &'a ServerFile) -> Self {
        Self {
            access: &f.access,
            limit_req: &f.limit_req,
            limit_req_status: f.limit_req_status,
            limit_conn: &f.limit_conn,
            limit_conn_status: f.limit_conn_status,
            auth_basic: &f.auth_basic,
            auth_basic_user_file: &f.auth_basic_user_file,
        }
    }
}

impl<'a> From<&'a LocationFile> for EdgeFields<'a> {
    fn from(f: &'a LocationFile) -> Self {
        Self {
            access: &f.access,
            limit_req: &f.limit_req,
            limit_req_status: f.limit_req_status,
            limit_conn: &f.limit_conn,
            limit_conn_status: f.limit_conn_status,
            auth_basic: &f.auth_basic,
            auth_basic_user_file: &f.auth_basic_user_file,
        }
    }
}

/// Bytes a zone spends per key: one 16-byte slot (see
/// `proxy::limit::table`).
const SLOT_BYTES: u64 = 16;
const DEFAULT_ZONE_SIZE: u64 = 1 << 20;
const MIN_ZONE_SIZE: u64 = 1 << 10;
const MAX_ZONE_SIZE: u64 = 1 << 30;

impl Validator<'_> {
    /// Reads the zones and the `[http]` real-address keys; runs before
    /// any server is validated.
    pub(super) fn edge_globals(&mut self, file: &ConfigFile) {
        for (name, z) in &file.limit_req_zone {
            let key = join("limit_req_zone", name);
            let zone_key = self.zone_key(&join(&key, "key"), &z.key);
            let rate = self
                .problems
                .check(join(&key, "rate"), Rate::parse(&z.rate));
            let slots = self.zone_slots(&join(&key, "size"), z.size);
            if let (Some(zone_key), Some(rate), Some(slots)) = (zone_key, rate, slots) {
                self.edge.req_zones.insert(
                    name.clone(),
                    Arc::new(LimitReqZone {
                        name: name.clone(),
                        key: zone_key,
                        rate,
                        slots,
                    }),
                );
            }
        }
        for (name, z) in &file.limit_conn_zone {
            let key = join("limit_conn_zone", name);
            let zone_key = self.zone_key(&join(&key, "key"), &z.key);
            let slots = self.zone_slots(&join(&key, "size"), z.size);
            if let (Some(zone_key), Some(slots)) = (zone_key, slots) {
                self.edge.conn_zones.insert(
                    name.clone(),
                    Arc::new(LimitConnZone {
                        name: name.clone(),
                        key: zone_key,
                        slots,
                    }),
                );
            }
        }
        let h = &file.http;
        self.edge.http_real_ip = self.real_ip_level(
            "http",
            &h.set_real_ip_from,
            &h.real_ip_header,
            h.real_ip_recursive,
        );
    }

    fn zone_key(&mut self, key: &str, text: &str) -> Option<ZoneKey> {
        let t = self.template(key, text, None)?;
        let vars: Vec<&Var> = t.vars().collect();
        if t.is_literal() {
            self.problems.add(
                key,
                format!(
                    "{text:?} has no variable, so every request would share one key; \
                     use e.g. \"$binary_remote_addr\""
                ),
            );
            return None;
        }
        if vars.len() == 1 && matches!(vars[0], Var::RemoteAddr) && t.source().starts_with('$') {
            let trimmed = text.trim_start_matches('$').trim_matches(['{', '}']);
            if ["remote_addr", "binary_remote_addr"].contains(&trimmed) {
                return Some(ZoneKey::RemoteAddr);
            }
        }
        Some(ZoneKey::Template(t))
    }

    fn zone_slots(
        &mut self,
        key: &str,
        size: Option<crate::config::units::ByteSize>,
    ) -> Option<usize> {
        let bytes = size.map_or(DEFAULT_ZONE_SIZE, |s| s.0);
        if !(MIN_ZONE_SIZE..=MAX_ZONE_SIZE).contains(&bytes) {
            self.problems.add(
                key,
                format!("{bytes} bytes: a zone's size must be between 1k and 1g"),
            );
            return None;
        }
        // A power of two, so a slot index is a mask of the hash.
        let slots = bytes / SLOT_BYTES;
        Some(1usize << (63 - slots.leading_zeros()))
    }

    fn real_ip_level(
        &mut self,
        key: &str,
        from: &Option<Vec<String>>,
        header: &Option<String>,
        recursive: Option<bool>,
    ) -> RealIpLevel {
        let trusted = from.as_ref().map(|list| {
            CidrSet(
                list.iter()
                    .enumerate()
                    .filter_map(|(i, c)| {
                        self.problems
                            .check(index(&join(key, "set_real_ip_from"), i), Cidr::parse(c))
                    })
                    .collect(),
            )
        });
        let header = header.as_ref().and_then(|h| {
            let parsed = match h.to_ascii_lowercase().as_str() {
                "x-real-ip" => Ok(RealIpHeader::XRealIp),
                "x-forwarded-for" => Ok(RealIpHeader::XForwardedFor),
                "proxy_protocol" => Ok(RealIpHeader::ProxyProtocol),
                other => HeaderName::from_bytes(other.as_bytes())
                    .map(RealIpHeader::Other)
                    .map_err(|_| {
                        format!(
                            "{h:?} is not a header name; use X-Forwarded-For, X-Real-IP, \
                             proxy_protocol or another header"
                        )
                    }),
            };
            self.problems.check(join(key, "real_ip_header"), parsed)
        });
        RealIpLevel {
            trusted,
            header,
            recursive,
        }
    }

    /// A server's real-address settings over `[http]`'s; `None` when no
    /// peer is trusted (nothing to do per request).
    pub(super) fn server_real_ip(&mut self, key: &str, f: &ServerFile) -> Option<RealIp> {
        let own = self.real_ip_level(
            key,
            &f.set_real_ip_from,
            &f.real_ip_header,
            f.real_ip_recursive,
        );
        let http = &self.edge.http_real_ip;
        let trusted = own
            .trusted
            .or_else(|| http.trusted.clone())
            .unwrap_or_default();
        let header = own
            .header
            .or_else(|| http.header.clone())
            .unwrap_or(RealIpHeader::XRealIp);
        let recursive = own.recursive.or(http.recursive).unwrap_or(false);
        if header == RealIpHeader::ProxyProtocol && !f.proxy_protocol {
            self.problems.add(
                join(key, "real_ip_header"),
                "real_ip_header = \"proxy_protocol\" needs proxy_protocol = true on this server \
                 (its listeners must expect the PROXY header)",
            );
        }
        if trusted.is_empty() {
            return None;
        }
        Some(RealIp {
            trusted,
            header,
            recursive,
        })
    }

    /// The server's controls, which its locations inherit.
    pub(super) fn server_edge(&mut self, key: &str, f: &ServerFile) -> EdgeDefaults {
        let base = EdgeDefaults {
            realm_key: join(key, "auth_basic"),
            ..EdgeDefaults::default()
        };
        self.edge_level(key, EdgeFields::from(f), &base, true)
    }

    /// A location's effective controls over its server's.
    pub(super) fn location_edge(
        &mut self,
        key: &str,
        f: &LocationFile,
        server: &EdgeDefaults,
    ) -> EdgeControls {
        self.edge_level(key, EdgeFields::from(f), server, false)
            .controls
    }

    fn edge_level(
        &mut self,
        key: &str,
        f: EdgeFields<'_>,
        parent: &EdgeDefaults,
        is_server: bool,
    ) -> EdgeDefaults {
        let access = match f.access {
            None => parent.controls.access.clone(),
            Some(rules) => AccessList(
                rules
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| {
                        self.problems
                            .check(index(&join(key, "access"), i), AccessRule::parse(r))
                    })
                    .collect(),
            ),
        };
        let limit_req = match f.limit_req {
            None => parent.controls.limit_req.clone(),
            Some(list) => self.limit_req_list(&join(key, "limit_req"), list),
        };
        let limit_conn = match f.limit_conn {
            None => parent.controls.limit_conn.clone(),
            Some(list) => self.limit_conn_list(&join(key, "limit_conn"), list),
        };
        let limit_req_status = self
            .limit_status(&join(key, "limit_req_status"), f.limit_req_status)
            .unwrap_or(parent.controls.limit_req_status);
        let limit_conn_status = self
            .limit_status(&join(key, "limit_conn_status"), f.limit_conn_status)
            .unwrap_or(parent.controls.limit_conn_status);

        let realm = f.auth_basic.clone().or_else(|| parent.realm.clone());
        let realm_key = if f.auth_basic.is_some() {
            join(key, "auth_basic")
        } else {
            parent.realm_key.clone()
        };
        let user_file = match f.auth_basic_user_file {
            Some(p) => self.htpasswd(&join(key, "auth_basic_user_file"), p),
            None => parent.user_file.clone(),
        };
        let user_file_given = f.auth_basic_user_file.is_some() || parent.user_file_given;
        let auth_basic = match &realm {
            Some(r) if r != "off" => {
                if r.chars().any(|c| c == '"' || c.is_control()) {
                    self.problems.add(
                        &realm_key,
                        "the realm cannot hold a double quote or a control character",
                    );
                }
                match &user_file {
                    Some(users) => Some(BasicAuth {
                        realm: r.clone(),
                        users: users.clone(),
                    }),
                    None => {
                        // Said at the location that would be open,
                        // naming where the realm is written, once; a file
                        // that was given but unreadable is reported already.
                        if !is_server && !user_file_given {
                            self.missing_user_file(&realm_key);
                        }
                        None
                    }
                }
            }
            _ => None,
        };
        EdgeDefaults {
            controls: EdgeControls {
                access,
                limit_req,
                limit_req_status,
                limit_conn,
                limit_conn_status,
                auth_basic,
            },
            realm,
            user_file,
            user_file_given,
            realm_key,
        }
    }

    fn missing_user_file(&mut self, realm_key: &str) {
        if self.edge.reported.insert(realm_key.to_owned()) {
            self.problems.add(
                realm_key,
                "auth_basic needs auth_basic_user_file (an htpasswd file) here or on the server",
            );
        }
    }

    fn limit_status(&mut self, key: &str, status: Option<u16>) -> Option<StatusCode> {
        let s = status?;
        match StatusCode::from_u16(s) {
            Ok(code) if (400..=599).contains(&s) => Some(code),
            _ => {
                self.problems
                    .add(key, format!("{s} is not a status between 400 and 599"));
                None
            }
        }
    }

    fn limit_req_list(&mut self, key: &str, list: &[LimitReqFile]) -> Vec<LimitReq> {
        let mut out: Vec<LimitReq> = Vec::new();
        for (i, l) in list.iter().enumerate() {
            let k = index(key, i);
            let Some(zone) = self.edge.req_zones.get(&l.zone).cloned() else {
                let known: Vec<&str> = self.edge.req_zones.keys().map(String::as_str).collect();
                self.problems.add(
                    join(&k, "zone"),
                    unknown_zone("limit_req_zone", &l.zone, &known),
                );
                continue;
            };
            if out.iter().any(|o| o.zone.name == l.zone) {
                self.problems.add(
                    join(&k, "zone"),
                    format!("zone {:?} is listed twice", l.zone),
                );
                continue;
            }
            let burst = l.burst.unwrap_or(0);
            let delay = match (l.nodelay, l.delay) {
                (true, Some(_)) => {
                    self.problems
                        .add(join(&k, "delay"), "nodelay and delay cannot both be set");
                    continue;
                }
                (true, None) => u64::MAX,
                (false, Some(d)) if d > burst => {
                    self.problems.add(
                        join(&k, "delay"),
                        format!("delay {d} is more than burst {burst}"),
                    );
                    continue;
                }
                (false, d) => u64::from(d.unwrap_or(0)) * 1000,
            };
            out.push(LimitReq {
                zone,
                burst_milli: u64::from(burst) * 1000,
                delay_milli: delay,
            });
        }
        out
    }

    fn limit_conn_list(&mut self, key: &str, list: &[LimitConnFile]) -> Vec<LimitConn> {
        let mut out: Vec<LimitConn> = Vec::new();
        for (i, l) in list.iter().enumerate() {
            let k = index(key, i);
            let Some(zone) = self.edge.conn_zones.get(&l.zone).cloned() else {
                let known: Vec<&str> = self.edge.conn_zones.keys().map(String::as_str).collect();
                self.problems.add(
                    join(&k, "zone"),
                    unknown_zone("limit_conn_zone", &l.zone, &known),
                );
                continue;
            };
            if out.iter().any(|o| o.zone.name == l.zone) {
                self.problems.add(
                    join(&k, "zone"),
                    format!("zone {:?} is listed twice", l.zone),
                );
                continue;
            }
            if l.limit == 0 {
                self.problems.add(join(&k, "limit"), "must be at least 1");
                continue;
            }
            out.push(LimitConn {
                zone,
                limit: l.limit,
            });
        }
        out
    }

    /// Reads an htpasswd file once per load; unusable lines become
    /// warnings naming the file and line.
    fn htpasswd(&mut self, key: &str, path: &Path) -> Option<Arc<Htpasswd>> {
        let path = self.resolve(path);
        if let Some(done) = self.edge.htpasswd.get(&path) {
            return done.clone();
        }
        let loaded = match Htpasswd::load(&path) {
            Ok((users, skipped)) => {
                for s in &skipped {
                    self.warnings.push((
                        key.to_owned(),
                        format!("{}:{}: line skipped: {}", path.display(), s.line, s.reason),
                    ));
                }
                if users.is_empty() {
                    self.warnings.push((
                        key.to_owned(),
                        format!(
                            "{} has no usable user: every request will get 401",
                            path.display()
                        ),
                    ));
                }
                Some(Arc::new(users))
            }
            Err(e) => {
                self.problems.add(key, e);
                None
            }
        };
        self.edge.htpasswd.insert(path, loaded.clone());
        loaded
    }
}

fn unknown_zone(section: &str, name: &str, known: &[&str]) -> String {
    if known.is_empty() {
        format!("unknown zone {name:?}: no [{section}.{name}] is defined")
    } else {
        format!("unknown zone {name:?}; defined: {}", known.join(", "))
    }
}
