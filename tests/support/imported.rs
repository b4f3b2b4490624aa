//! An nginx.conf imported with `vigil import` and run by vigil: the step
//! the import behaviour and differential tests share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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

/// An nginx master (`daemon off`) stopped when dropped, workers included.
/// SIGKILL would stop the master alone and leave its workers running,
/// orphaned, on their ports; SIGTERM has the master stop them first.
/// SIGKILL only if it has not exited within 5 s.
pub struct Nginx(pub Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = libc::pid_t::try_from(self.0.id()).unwrap_or(0);
        if pid > 0 && self.0.try_wait().ok().flatten().is_none() {
            // SAFETY: kill(2) on our own child, which has not been reaped
            // (try_wait saw it running), so the pid is still its own.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
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

/// An answer as `curl -s -i` prints it.
#[derive(Debug, Default, Clone)]
pub struct Answer {
    pub status: u16,
    /// Names lowercased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Answer {
    /// Reads curl's `-i` output (an empty answer when there is no head).
    pub fn parse(raw: &[u8]) -> Answer {
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Answer::default();
        };
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Answer {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }
}

/// The corpus's `.conf` files of one kind (`nginx`, `keepalived`), sorted.
pub fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files
}

/// nginx's own MIME table, which the differential configs include.
pub const MIME: &str = "/etc/nginx/mime.types";

/// The nginx binary the differential tests run beside vigil, when it and
/// what they need with it (its MIME table, curl, openssl) are here. In CI
/// a missing one is a setup bug; elsewhere the test says why it skips.
pub fn nginx_for_differential() -> Option<&'static str> {
    let nginx = ["/usr/sbin/nginx", "/sbin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let tools = ["curl", "openssl"]
        .iter()
        .all(|t| super::netns::tool_exists(t));
    if nginx.is_some() && tools && Path::new(MIME).exists() {
        return nginx;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "nginx (with {MIME}), curl and openssl are needed in CI (apt-get install -y nginx-light curl openssl)"
    );
    eprintln!(
        "skipping: nginx (with {MIME}), curl or openssl not found (apt-get install -y nginx-light curl openssl)"
    );
    None
}
