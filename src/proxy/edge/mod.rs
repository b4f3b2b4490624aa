//! Edge controls at request time: the client's real address
//! ([`real_ip`]), the access phase ([`access`]: limits, allow/deny, basic
//! auth) and the live state behind it: `limit_req` / `limit_conn` zones
//! over a lock-free [`table`], and the basic-auth cache.
//!
//! The settings come validated from `config::edge`; [`Edge`] is the part
//! of a [`Runtime`](super::runtime::Runtime) that lives across requests.

pub(crate) mod access;
pub(crate) mod basic_auth;
pub(crate) mod limit_conn;
pub(crate) mod limit_req;
pub(crate) mod real_ip;
pub(crate) mod table;

use std::collections::HashMap;
use std::sync::Arc;

use self::basic_auth::AuthCache;
use self::limit_conn::ConnZone;
use self::limit_req::ReqZone;
use crate::config::Config;
use crate::metrics::Metrics;

/// Zones and caches of one config generation. Zones are carried over
/// from the previous generation while their definition allows (see
/// [`ReqZone::rebuild`], [`ConnZone::rebuild`]), so a reload neither
/// forgives every client nor forgets the requests in progress.
#[derive(Debug, Default)]
pub struct Edge {
    req: HashMap<String, Arc<ReqZone>>,
    conn: HashMap<String, Arc<ConnZone>>,
    pub(crate) auth: AuthCache,
}

impl Edge {
    pub(crate) fn build(config: &Config, previous: Option<&Edge>, metrics: &Metrics) -> Edge {
        let req = config
            .limit_req_zones
            .iter()
            .map(|(name, z)| {
                let old = previous.and_then(|p| p.req.get(name));
                (name.clone(), ReqZone::rebuild(z.clone(), old, metrics))
            })
            .collect();
        let conn = config
            .limit_conn_zones
            .iter()
            .map(|(name, z)| {
                let old = previous.and_then(|p| p.conn.get(name));
                (name.clone(), ConnZone::rebuild(z.clone(), old, metrics))
            })
            .collect();
        Edge {
            req,
            conn,
            auth: AuthCache::default(),
        }
    }

    pub(crate) fn req_zone(&self, name: &str) -> Option<&Arc<ReqZone>> {
        self.req.get(name)
    }

    pub(crate) fn conn_zone(&self, name: &str) -> Option<&Arc<ConnZone>> {
        self.conn.get(name)
    }
}
