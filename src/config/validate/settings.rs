//! `[http]`, `[log]` and `[admin]`: connection settings, access log and
//! the admin listener.

use std::path::{Path, PathBuf};

use super::Validator;
use super::dur;
use super::server::parse_listen;
use crate::config::file::*;
use crate::config::*;

impl Validator<'_> {
    pub(super) fn http(&mut self, f: &HttpFile) -> HttpSettings {
        let max_header_size = f.max_header_size.map_or(32 << 10, |s| s.0 as usize);
        if f.workers == Some(0) {
            self.problems.add(
                "http.workers",
                "must be at least 1 (or leave it out: one per core)",
            );
        }
        let worker_cpu_affinity = match f.worker_cpu_affinity.as_deref() {
            None | Some("auto") => CpuAffinity::Auto,
            Some("off") => CpuAffinity::Off,
            Some(other) => {
                self.problems.add(
                    "http.worker_cpu_affinity",
                    format!("{other:?} is not a choice; use \"auto\" or \"off\""),
                );
                CpuAffinity::Auto
            }
        };
        if f.resolver_timeout.is_some_and(|d| d.0.is_zero()) {
            self.problems
                .add("http.resolver_timeout", "must be more than 0");
        }
        if f.proxy_protocol_timeout.is_some_and(|d| d.0.is_zero()) {
            self.problems
                .add("http.proxy_protocol_timeout", "must be more than 0");
        }
        if max_header_size < 1024 {
            self.problems
                .add("http.max_header_size", "must be at least 1k");
        }
        HttpSettings {
            client_header_timeout: dur(f.client_header_timeout, 60),
            client_body_timeout: dur(f.client_body_timeout, 60),
            send_timeout: dur(f.send_timeout, 60),
            client_max_body_size: f.client_max_body_size.map_or(1 << 20, |s| s.0),
            client_body_buffer_size: f.client_body_buffer_size.map_or(64 << 10, |s| s.0 as usize),
            client_body_temp_path: self.body_temp_path(f.client_body_temp_path.as_deref()),
            max_header_size,
            http2: f.http2.unwrap_or(true),
            own_http1: f.own_http1.unwrap_or(true),
            shutdown_timeout: dur(f.shutdown_timeout, 30),
            max_connections: f.max_connections.unwrap_or(100_000),
            workers: f.workers.filter(|&n| n > 0).unwrap_or_else(default_workers),
            worker_cpu_affinity,
            proxy_protocol_timeout: dur(f.proxy_protocol_timeout, 10),
            resolver: self.resolvers(f.resolver.as_deref().unwrap_or_default()),
            resolver_timeout: dur(f.resolver_timeout, 5),
        }
    }

    /// `client_body_temp_path`: the system's temporary directory unless
    /// set. Checked by creating a file there, so that a missing or
    /// read-only directory is a config error, not a 500 on the first
    /// large upload.
    fn body_temp_path(&mut self, set: Option<&Path>) -> PathBuf {
        let dir = set.map_or_else(std::env::temp_dir, |p| self.resolve(p));
        if let Err(e) = tempfile::tempfile_in(&dir) {
            self.problems.add(
                "http.client_body_temp_path",
                format!(
                    "cannot create a file in {}: {e} (large request bodies wait there)",
                    dir.display()
                ),
            );
        }
        dir
    }

    /// `resolver = ["10.0.0.2", "[::1]:5353"]`: port 53 by default.
    fn resolvers(&mut self, list: &[String]) -> Vec<std::net::SocketAddr> {
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            let parsed = text
                .parse::<std::net::SocketAddr>()
                .or_else(|_| {
                    text.parse::<std::net::IpAddr>()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    format!("{text:?} is not an IP address (with an optional port) of a DNS server")
                });
            if let Some(a) = self
                .problems
                .check(crate::config::error::index("http.resolver", i), parsed)
            {
                out.push(a);
            }
        }
        out
    }

    pub(super) fn log(&mut self, f: &LogFile) -> LogSettings {
        let access_log = match f.access_log.as_deref() {
            None | Some("stdout") => AccessLogTarget::Stdout,
            Some("stderr") => AccessLogTarget::Stderr,
            Some("off") => AccessLogTarget::Off,
            Some(path) => AccessLogTarget::File(self.resolve(Path::new(path))),
        };
        let access_log_format = match f.access_log_format.as_deref() {
            None | Some("combined") => AccessLogFormat::Combined,
            Some("json") => AccessLogFormat::Json,
            Some(other) => {
                self.problems.add(
                    "log.access_log_format",
                    format!("{other:?} is not a format; use \"combined\" or \"json\""),
                );
                AccessLogFormat::Combined
            }
        };
        let access_log_buffer = f.access_log_buffer.map_or(64 * 1024, |b| b.0);
        if access_log_buffer > MAX_ACCESS_LOG_BUFFER {
            self.problems.add(
                "log.access_log_buffer",
                format!("{access_log_buffer} bytes is more than the 16m a buffer may hold"),
            );
        }
        let access_log_flush = dur(f.access_log_flush, 1);
        if access_log_flush.is_zero() {
            self.problems.add(
                "log.access_log_flush",
                "must be more than 0 (e.g. \"1s\"); lines would never wait, so use access_log_buffer = 0 for that",
            );
        }
        let level = f.level.clone().unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            self.problems.add(
                "log.level",
                format!("{level:?} is not a level; use error, warn, info, debug or trace"),
            );
        }
        LogSettings {
            access_log,
            access_log_format,
            access_log_buffer: access_log_buffer.min(MAX_ACCESS_LOG_BUFFER) as usize,
            access_log_flush,
            level,
        }
    }

    pub(super) fn admin(&mut self, f: &AdminFile) -> Option<AdminSettings> {
        let listen = self.problems.check(
            "admin.listen",
            parse_listen(f.listen.as_deref().unwrap_or("127.0.0.1:9090")),
        )?;
        Some(AdminSettings {
            listen,
            debug: f.debug,
        })
    }
}

/// One worker per available core, as nginx's `worker_processes auto`
/// (see `proxy::workers` for why workers are threads with a runtime each).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A worker's access-log buffer is allocated whole; past this it only
/// costs memory (nginx's own limit is far lower in practice: 64k).
const MAX_ACCESS_LOG_BUFFER: u64 = 16 << 20;
