//! Running vigil in-process for a test, from a config string.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use vigil::app::App;

/// A vigil started in this test's runtime; stops when dropped.
pub struct TestVigil {
    pub app: Arc<App>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl TestVigil {
    /// Starts vigil with `config` (TOML). Relative paths in the config
    /// resolve against a fresh temporary directory, available as `dir`.
    pub async fn start(config: &str) -> TestVigil {
        Self::start_in(tempfile::tempdir().unwrap(), config).await
    }

    pub async fn start_in(dir: tempfile::TempDir, config: &str) -> TestVigil {
        let config_path = dir.path().join("vigil.toml");
        std::fs::write(&config_path, config).unwrap();
        let app = App::start(&config_path)
            .await
            .unwrap_or_else(|e| panic!("vigil did not start: {e}"));
        TestVigil {
            app,
            dir,
            config_path,
        }
    }

    /// The bound address of the listener configured as `configured`.
    pub fn addr(&self, configured: &str) -> SocketAddr {
        let want: SocketAddr = configured.parse().unwrap();
        self.app
            .server
            .local_addrs()
            .into_iter()
            .find(|(c, _)| *c == want)
            .map(|(_, local)| local)
            .unwrap_or_else(|| panic!("no listener {configured}"))
    }

    /// The first listener's bound address.
    pub fn first_addr(&self) -> SocketAddr {
        self.app.server.local_addrs()[0].1
    }

    /// Rewrites the config file and reloads.
    pub async fn reload(&self, config: &str) -> Result<u64, String> {
        std::fs::write(&self.config_path, config).unwrap();
        self.app.reload().await.map_err(|e| vigil::app::chain(&e))
    }
}
