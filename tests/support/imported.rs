//! An nginx.conf imported with `vigil import` and run by vigil: the step
//! the import behaviour and differential tests share.

use std::path::Path;
use std::process::{Child, Command, Stdio};

const VIGIL: &str = env!("CARGO_BIN_EXE_vigil");

/// A child process killed when dropped (also when the test panics).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// vigil running the import of `nginx_conf`, written to `out`.
pub struct Imported {
    /// The config as `vigil import` wrote it (for failure messages).
    pub toml: String,
    _vigil: Running,
}

impl Imported {
    /// Imports (exit 0 or 3: a config is written either way), turns the
    /// access log off (the tests read nothing from stdout), checks the
    /// result with `vigil check` and starts vigil on it.
    pub fn start(nginx_conf: &Path, out: &Path) -> Imported {
        let import = Command::new(VIGIL)
            .args(["import", "--nginx"])
            .arg(nginx_conf)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap();
        let toml = std::fs::read_to_string(out).unwrap_or_default();
        assert!(
            matches!(import.status.code(), Some(0) | Some(3)),
            "{}\n{toml}",
            String::from_utf8_lossy(&import.stderr)
        );
        let mut config: toml::Table = toml::from_str(&toml).unwrap();
        let log = config
            .entry("log")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        log.as_table_mut()
            .unwrap()
            .insert("access_log".into(), "off".into());
        std::fs::write(out, toml::to_string(&config).unwrap()).unwrap();
        let check = Command::new(VIGIL)
            .arg("check")
            .arg("-c")
            .arg(out)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}\n{toml}",
            String::from_utf8_lossy(&check.stderr)
        );
        let vigil = Running(
            Command::new(VIGIL)
                .args(["run", "-c"])
                .arg(out)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        Imported {
            toml,
            _vigil: vigil,
        }
    }
}
