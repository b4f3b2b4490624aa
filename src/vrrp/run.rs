//! A `[vrrp]`-only vigil: a pure VIP keeper, like keepalived without
//! health checks of its own.

use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use super::error::VrrpError;
use super::speaker::Speaker;
use crate::config::vrrp::VrrpConfig;

/// Runs the speaker until SIGTERM or SIGINT, then resigns (priority-0
/// adverts, VIPs removed) and returns. SIGHUP is ignored here: reloading
/// belongs to the full CLI.
pub async fn run_standalone(config: VrrpConfig) -> Result<(), VrrpError> {
    let io = |e| VrrpError::Io {
        context: "install signal handler".into(),
        source: e,
    };
    // Install handlers before starting, so a signal during startup is not
    // lost (and does not kill us with VIPs on the interface).
    let mut term = signal(SignalKind::terminate()).map_err(io)?;
    let mut int = signal(SignalKind::interrupt()).map_err(io)?;
    let mut hup = signal(SignalKind::hangup()).map_err(io)?;
    let speaker = Speaker::start(config).await?;
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: resigning"); break; }
            _ = int.recv() => { info!("SIGINT: resigning"); break; }
            _ = hup.recv() => info!("SIGHUP ignored (reload needs the full CLI)"),
        }
    }
    speaker.resign_all().await;
    Ok(())
}
