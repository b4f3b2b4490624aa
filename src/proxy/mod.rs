//! The reverse proxy: listeners (plain or TLS), routing, static files,
//! forwarding to upstream pools (plain or TLS).

pub(crate) mod accept_backoff;
pub(crate) mod accept_encoding;
pub mod access_log;
pub mod body;
pub(crate) mod client_body;
pub(crate) mod compress;
pub(crate) mod conn;
pub(crate) mod edge;
pub(crate) mod fast_map;
pub(crate) mod forward;
#[cfg(test)]
mod future_size;
pub(crate) mod h2_flood;
pub(crate) mod handler;
pub(crate) mod header_names;
pub(crate) mod headers;
pub(crate) mod listen;
pub(crate) mod map_values;
pub(crate) mod memory;
pub(crate) mod probe;
pub(crate) mod proxy_protocol;
pub(crate) mod request_body;
pub(crate) mod request_checks;
pub mod request_metrics;
pub(crate) mod respond;
pub(crate) mod rewrite;
pub(crate) mod router;
pub mod runtime;
pub(crate) mod sendfile;
pub mod server;
pub(crate) mod stall_timer;
pub mod static_files;
pub mod tls;
pub mod upstream;
pub mod uri_path;
pub(crate) mod worker_metrics;
pub(crate) mod workers;
