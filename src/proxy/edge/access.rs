//! The access phase: what a location's [`EdgeControls`] say about one
//! request, in nginx's order:
//!
//! 1. `limit_req` (preaccess): refuse past burst, or wait;
//! 2. `limit_conn` (preaccess): refuse past the limit, else hold a count
//!    until the response ends;
//! 3. `access` (allow/deny): 403;
//! 4. `auth_basic`: 401 with the challenge.
//!
//! The limits run once per request, as nginx's (an internal redirect to
//! another location does not charge again); access and auth run for every
//! location the request reaches. All four see the real client address.

use std::net::IpAddr;
use std::ops::ControlFlow;

use http::{HeaderMap, Response, StatusCode};

use super::Edge;
use super::basic_auth;
use super::limit_conn::ConnGuard;
use super::limit_req::{self, Verdict};
use crate::config::edge::{EdgeControls, ZoneKey};
use crate::config::template::Vars;
use crate::proxy::body::Body;
use crate::proxy::respond;

/// What the access phase keeps for the rest of the request.
#[derive(Debug, Default)]
pub(crate) struct EdgeState {
    /// limit_req / limit_conn have run for this request.
    limited: bool,
    /// One count per `limit_conn` zone, given back when the response ends.
    pub(crate) conn_guards: Vec<ConnGuard>,
    /// `$remote_user`: the name basic auth accepted.
    pub(crate) user: Option<String>,
}

/// Runs the access phase; `Break` is the refusal to send.
pub(crate) async fn access(
    controls: &EdgeControls,
    edge: &Edge,
    state: &mut EdgeState,
    client: IpAddr,
    headers: &HeaderMap,
    vars: &(dyn Vars + Sync),
) -> ControlFlow<Response<Body>> {
    if controls.is_empty() {
        return ControlFlow::Continue(());
    }
    if !state.limited {
        state.limited = true;
        if !controls.limit_req.is_empty() {
            let wait = limit_requests(controls, edge, client, vars);
            match wait {
                Err(status) => return ControlFlow::Break(respond::status(status)),
                Ok(Some(delay)) => tokio::time::sleep(delay).await,
                Ok(None) => {}
            }
        }
        for limit in &controls.limit_conn {
            let Some(zone) = edge.conn_zone(&limit.zone.name) else {
                continue;
            };
            let Some(hash) = key_hash(&limit.zone.key, client, vars, |k| zone.hash(k)) else {
                continue;
            };
            match zone.acquire(hash, limit.limit) {
                Some(guard) => state.conn_guards.push(guard),
                None => {
                    tracing::debug!(zone = %limit.zone.name, "limiting connections");
                    // nginx gives back what earlier zones took.
                    state.conn_guards.clear();
                    return ControlFlow::Break(respond::status(controls.limit_conn_status));
                }
            }
        }
    }
    if !controls.access.permits(client) {
        tracing::debug!(%client, "access forbidden by rule");
        return ControlFlow::Break(respond::status(StatusCode::FORBIDDEN));
    }
    if let Some(auth) = &controls.auth_basic {
        let checked = basic_auth::check(auth, &edge.auth, headers).await;
        match checked {
            Ok(user) => state.user = Some(user),
            Err(r) => return ControlFlow::Break(r),
        }
    }
    ControlFlow::Continue(())
}

/// The `limit_req` list: `Ok(Some(d))` to wait `d` first, `Err` to refuse.
fn limit_requests(
    controls: &EdgeControls,
    edge: &Edge,
    client: IpAddr,
    vars: &(dyn Vars + Sync),
) -> Result<Option<std::time::Duration>, StatusCode> {
    let mut limits = Vec::with_capacity(controls.limit_req.len());
    for l in &controls.limit_req {
        let Some(zone) = edge.req_zone(&l.zone.name) else {
            continue;
        };
        let Some(hash) = key_hash(&l.zone.key, client, vars, |k| zone.hash(k)) else {
            continue;
        };
        limits.push((&**zone, hash, l.burst_milli, l.delay_milli));
    }
    if limits.is_empty() {
        return Ok(None);
    }
    let (verdict, refused_by) = limit_req::check(&limits);
    let zones: Vec<&limit_req::ReqZone> = limits.iter().map(|l| l.0).collect();
    limit_req::count(&zones, verdict, refused_by);
    match verdict {
        Verdict::Pass => Ok(None),
        Verdict::Delay(d) => Ok(Some(d)),
        Verdict::Reject => {
            let zone = refused_by
                .and_then(|i| zones.get(i))
                .map(|z| z.config.name.as_str());
            tracing::debug!(zone = zone.unwrap_or(""), "limiting requests");
            Err(controls.limit_req_status)
        }
    }
}

/// The zone key's hash for this request; `None` when the key renders
/// empty (nginx does not count such a request).
fn key_hash(
    key: &ZoneKey,
    client: IpAddr,
    vars: &(dyn Vars + Sync),
    hash: impl Fn(&[u8]) -> u64,
) -> Option<u64> {
    match key {
        ZoneKey::RemoteAddr => match client.to_canonical() {
            IpAddr::V4(v4) => Some(hash(&v4.octets())),
            IpAddr::V6(v6) => Some(hash(&v6.octets())),
        },
        ZoneKey::Template(t) => {
            let rendered = t.render(vars);
            (!rendered.is_empty()).then(|| hash(rendered.as_bytes()))
        }
    }
}
