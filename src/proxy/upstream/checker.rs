//! Active health checks: a task per pool that sends `GET <path>` to every
//! server each `interval` and feeds the result to its [`ActiveHealth`].
//!
//! Checks use fresh connections (not the keep-alive cache), so a server
//! that accepts new connections badly is seen as it is.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::BodyExt;

use super::conn;
use super::exchange::{UpstreamBody, UpstreamRequest};
use super::health::{ActiveHealth, Transition};
use super::pool::{Peer, UpstreamPool};
use crate::config::HealthCheck;
use crate::proxy::body::Body;

/// Aborts the checker when the pool it watches is dropped (after a reload
/// replaced it and its last request finished).
#[derive(Debug)]
pub struct CheckerHandle(tokio::task::JoinHandle<()>);

impl Drop for CheckerHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts checking `pool`'s servers, if it has a `health_check`.
pub fn spawn(pool: &UpstreamPool) -> Option<CheckerHandle> {
    let check = pool.config.health_check.clone()?;
    let peers = pool.peers.clone();
    let name = pool.config.name.clone();
    let connect_timeout = pool.config.connect_timeout.min(check.timeout);
    Some(CheckerHandle(tokio::spawn(async move {
        let mut states: Vec<ActiveHealth> = peers
            .iter()
            .map(|p| {
                let mut s = ActiveHealth::new(check.rise, check.fall);
                // A reloaded pool keeps servers already known to be down.
                if !p.is_healthy() {
                    s = ActiveHealth::down(check.rise, check.fall);
                }
                s
            })
            .collect();
        let mut ticker = tokio::time::interval(check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let results = futures_util::future::join_all(
                peers.iter().map(|p| probe(p, &check, connect_timeout)),
            )
            .await;
            for ((peer, state), result) in peers.iter().zip(&mut states).zip(results) {
                let transition = state.record(result.is_ok());
                peer.set_healthy(state.is_up());
                match (transition, result) {
                    (Some(Transition::WentDown), Err(why)) => tracing::warn!(
                        upstream = %name, server = %peer.server.label, %why,
                        "health check: server is DOWN"
                    ),
                    (Some(Transition::WentUp), _) => tracing::info!(
                        upstream = %name, server = %peer.server.label,
                        "health check: server is UP"
                    ),
                    _ => {}
                }
            }
        }
    })))
}

/// One check of one server.
async fn probe(peer: &Peer, check: &HealthCheck, connect_timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut connection = conn::connect(peer.server.addr, peer.tls.as_ref(), connect_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let host = check
            .host
            .clone()
            .unwrap_or_else(|| peer.server.addr.to_string());
        let mut headers = HeaderMap::new();
        let host = HeaderValue::try_from(host).map_err(|e| e.to_string())?;
        headers.insert(header::HOST, host);
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static("vigil-health-check"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let mut request = UpstreamRequest {
            method: Method::GET,
            uri: check
                .path
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?,
            headers,
            added: Default::default(),
            body: Body::Empty,
        };
        let head = connection
            .exchange(&mut request, check.timeout)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = head.status.as_u16();
        // Read the (small) body so the server sees a complete exchange.
        let body = UpstreamBody::new(connection, &head, None, check.timeout);
        let _ = body.collect().await;
        if check.accepts(status) {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}
