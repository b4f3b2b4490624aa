//! The VIP hand-over, in one place: emptying the proxy before a planned
//! stop, and closing the connections on addresses this node gives up.
//! Every timing of both sequences is here, with why it has its value.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::App;
use crate::proxy::conn::FIRST_REQUEST_GRACE;
use crate::proxy::server::{Hold, Server};

/// A drain closes the connections still idle after this long (capped by
/// `shutdown_timeout`); busy ones get the rest of `shutdown_timeout`. A
/// second lets every keep-alive client see its `Connection: close` or
/// GOAWAY on its next request.
pub(super) const DRAIN_SETTLE: Duration = Duration::from_secs(1);

/// How long a VIP's removal waits for its connections to close: their
/// FINs must leave from the address while this node still holds it.
pub(super) const RELEASE_WAIT: Duration = Duration::from_millis(100);

/// New connections stay held off (SYNs dropped, retried by the client's
/// TCP a second later, then answered by the new master) this long after
/// the release: the VIPs are surely gone by then, and one that comes back
/// serves ordinary connections again.
pub(super) const HOLD_AFTER_RELEASE: Duration = Duration::from_millis(200);

/// Empties the proxy before the VIP moves. Busy connections are told to
/// close after their current response (`Connection: close`, GOAWAY) and
/// new ones are held off. Connections still idle after [`DRAIN_SETTLE`]
/// are closed; whatever is busy gets until `grace`. Returns the
/// connections left open.
pub(super) async fn drain(server: &Server, grace: Duration) -> usize {
    let settle = grace.min(DRAIN_SETTLE);
    let started = Instant::now();
    server.set_draining(true);
    server.hold_new_connections(Hold::Drain, true);
    tracing::info!(
        connections = server.connections(),
        "draining; new connections held off"
    );
    let mut left = server.wait_connections_closed(settle).await;
    if left > 0 {
        server.close_connections();
        left = server.wait_connections_closed(grace - settle).await;
    }
    if left > 0 {
        tracing::warn!(
            left,
            ?grace,
            "drain timeout: going on with connections open"
        );
    } else {
        tracing::info!(took = ?started.elapsed(), "drained");
    }
    left
}

/// Before an instance removes its VIPs, connections to them are closed
/// while their FINs can still leave from those addresses; the removal
/// waits up to [`RELEASE_WAIT`] for that. Meanwhile new connections are
/// held off: one accepted now could not be answered once the VIP is gone
/// (replies from a removed address are not routed) and would hang until
/// the client's timeout.
pub(super) async fn release(app: Arc<App>, vips: Vec<IpAddr>) {
    app.server.hold_new_connections(Hold::Release, true);
    app.server.release_addresses(&vips);
    app.server.wait_released(&vips, RELEASE_WAIT).await;
    // The VIPs are removed as soon as this returns; lift the hold once
    // they surely are.
    tokio::spawn(async move {
        tokio::time::sleep(HOLD_AFTER_RELEASE).await;
        app.server.forget_released(&vips);
        app.server.hold_new_connections(Hold::Release, false);
    });
}

// The sequences' timings depend on each other; checked when vigil builds.
// An idle HTTP/1 connection asked to close gets FIRST_REQUEST_GRACE to
// send its next request, answered with `Connection: close`: that answer
// must be out before the VIP goes, RELEASE_WAIT after the release began.
const _: () = assert!(FIRST_REQUEST_GRACE.as_millis() * 2 <= RELEASE_WAIT.as_millis());
// The hold on new connections outlives the removal that follows the wait.
const _: () = assert!(HOLD_AFTER_RELEASE.as_millis() > RELEASE_WAIT.as_millis());
