//! The process: load the config, start the proxy, react to signals
//! (SIGHUP reload, SIGTERM / SIGINT graceful stop).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Config, ConfigError};
use crate::proxy::access_log::AccessLog;
use crate::proxy::runtime::Runtime;
use crate::proxy::server::{BindError, Server};

/// Why vigil could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Bind(#[from] BindError),
    #[error("{0}")]
    AccessLog(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// A running vigil: the proxy plus what reload needs.
pub struct App {
    config_path: PathBuf,
    pub server: Server,
    generation: AtomicU64,
}

impl App {
    /// Loads `config_path` and starts everything it configures.
    pub fn start(config_path: &Path) -> Result<App, StartError> {
        let config = Config::load(config_path)?;
        App::start_with(config_path, config)
    }

    pub fn start_with(config_path: &Path, config: Config) -> Result<App, StartError> {
        let access_log = AccessLog::open(&config.log).map_err(StartError::AccessLog)?;
        let runtime = Runtime::build(config, 1, None, access_log);
        let server = Server::start(runtime)?;
        Ok(App {
            config_path: config_path.to_owned(),
            server,
            generation: AtomicU64::new(1),
        })
    }

    /// Re-reads the config file and swaps it in. A bad config (or a
    /// listener that cannot be bound) leaves the running one untouched.
    pub fn reload(&self) -> Result<u64, String> {
        let config = Config::load(&self.config_path).map_err(|e| e.to_string())?;
        let current = self.server.runtime();
        let access_log = if current.access_log.same_as(&config.log) {
            current.access_log.clone()
        } else {
            AccessLog::open(&config.log).map_err(|e| e.to_string())?
        };
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let runtime = Runtime::build(config, generation, Some(&current), access_log);
        self.server.reload(runtime).map_err(|e| e.to_string())?;
        self.generation.store(generation, Ordering::Relaxed);
        Ok(generation)
    }

    /// Serves until SIGTERM or SIGINT, reloading on SIGHUP, then stops
    /// gracefully.
    pub async fn run_until_signal(self) -> Result<(), StartError> {
        let mut term = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
                _ = hup.recv() => match self.reload() {
                    Ok(generation) => tracing::info!(generation, "config reloaded"),
                    Err(e) => tracing::error!("reload failed, keeping the running config:\n{e}"),
                },
            }
        }
        let grace = self.server.runtime().config.http.shutdown_timeout;
        self.server.shutdown(grace).await;
        Ok(())
    }
}
