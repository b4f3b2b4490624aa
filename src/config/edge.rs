//! Validated edge controls: who may come in (`access`, `auth_basic`), how
//! fast (`limit_req`, `limit_conn`) and from which address (`real_ip`).
//!
//! Each location carries its effective [`EdgeControls`], with nginx's
//! inheritance already applied at load time (a location's list replaces
//! the server's; single values are inherited one by one), so a request
//! reads one struct and never walks up to the server.

use std::sync::Arc;

use http::{HeaderName, StatusCode};

use super::cidr::{AccessList, CidrSet};
use super::htpasswd::Htpasswd;
use super::template::Template;

/// `set_real_ip_from` / `real_ip_header` / `real_ip_recursive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealIp {
    /// Peers whose word about the client is believed.
    pub trusted: CidrSet,
    pub header: RealIpHeader,
    pub recursive: bool,
}

/// Where the client address is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealIpHeader {
    /// `X-Real-IP` (nginx's default).
    XRealIp,
    /// `X-Forwarded-For`: every instance of the header, as one list.
    XForwardedFor,
    /// The source address of the connection's PROXY protocol header.
    ProxyProtocol,
    /// Any other header (its first instance).
    Other(HeaderName),
}

/// A rate in requests per second or minute, kept as nginx keeps it:
/// milli-requests per second (`10r/m` is 166).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub milli_per_sec: u64,
}

impl Rate {
    /// Parses `"10r/s"` or `"30r/m"`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || format!("{text:?} is not a rate; write e.g. \"10r/s\" or \"30r/m\"");
        let (n, per) = text.trim().split_once("r/").ok_or_else(bad)?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        let milli_per_sec = match per {
            "s" => n.checked_mul(1000),
            "m" => n.checked_mul(1000).map(|v| v / 60),
            _ => return Err(bad()),
        }
        .filter(|&r| r > 0 && r <= u64::from(u32::MAX))
        .ok_or_else(|| format!("{text:?}: the rate must be above 0 and at most 4294967r/s"))?;
        Ok(Rate { milli_per_sec })
    }
}

/// What a zone counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneKey {
    /// `$binary_remote_addr` or `$remote_addr` alone: the client address,
    /// hashed from its bytes with nothing rendered.
    RemoteAddr,
    /// Any other template (`$server_name`, `$http_x_api_key`, ...); a
    /// request whose key renders empty is not counted, as in nginx.
    Template(Template),
}

/// `[limit_req_zone.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReqZone {
    pub name: String,
    pub key: ZoneKey,
    pub rate: Rate,
    /// Keys the zone can hold at once (from `size`).
    pub slots: usize,
}

/// `[limit_conn_zone.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitConnZone {
    pub name: String,
    pub key: ZoneKey,
    pub slots: usize,
}

/// One `limit_req = [{ zone, burst, nodelay | delay }]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReq {
    pub zone: Arc<LimitReqZone>,
    /// Excess requests allowed, in milli-requests (nginx's unit).
    pub burst_milli: u64,
    /// Excess (milli-requests) served without delay: 0 by default,
    /// `delay = N` sets N, `nodelay` makes it unlimited.
    pub delay_milli: u64,
}

/// One `limit_conn = [{ zone, limit }]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitConn {
    pub zone: Arc<LimitConnZone>,
    /// Requests in progress allowed per key.
    pub limit: u32,
}

/// `auth_basic` with its user file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// Shown to the user by the browser's prompt.
    pub realm: String,
    pub users: Arc<Htpasswd>,
}

/// Everything the access phase checks for one location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeControls {
    pub access: AccessList,
    pub limit_req: Vec<LimitReq>,
    pub limit_req_status: StatusCode,
    pub limit_conn: Vec<LimitConn>,
    pub limit_conn_status: StatusCode,
    pub auth_basic: Option<BasicAuth>,
}

impl Default for EdgeControls {
    fn default() -> Self {
        Self {
            access: AccessList::default(),
            limit_req: Vec::new(),
            limit_req_status: StatusCode::SERVICE_UNAVAILABLE,
            limit_conn: Vec::new(),
            limit_conn_status: StatusCode::SERVICE_UNAVAILABLE,
            auth_basic: None,
        }
    }
}

impl EdgeControls {
    /// True when there is nothing to check (the common case: the access
    /// phase costs one branch).
    pub fn is_empty(&self) -> bool {
        self.access.0.is_empty()
            && self.limit_req.is_empty()
            && self.limit_conn.is_empty()
            && self.auth_basic.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_as_nginx_keeps_them() {
        assert_eq!(Rate::parse("10r/s").unwrap().milli_per_sec, 10_000);
        assert_eq!(Rate::parse("10r/m").unwrap().milli_per_sec, 166);
        assert_eq!(Rate::parse("1r/m").unwrap().milli_per_sec, 16);
        for bad in [
            "0r/s",
            "10",
            "10r/h",
            "r/s",
            "-1r/s",
            "10 r/s",
            "99999999999r/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }
}
