//! The reverse proxy: listeners (plain or TLS), routing, static files,
//! forwarding to upstream pools (plain or TLS).

pub mod accept_backoff;
pub(crate) mod accept_encoding;
pub mod access_log;
pub mod body;
pub mod client_body;
pub(crate) mod compress;
pub(crate) mod conn;
pub(crate) mod edge;
pub mod forward;
pub mod h2_flood;
pub mod handler;
pub mod headers;
pub mod listen;
pub(crate) mod map_values;
pub mod memory;
pub mod probe;
pub mod proxy_protocol;
pub mod request_checks;
pub mod respond;
pub(crate) mod rewrite;
pub mod router;
pub mod runtime;
pub mod sendfile;
pub mod server;
pub mod stall_timer;
pub mod static_files;
pub mod tls;
pub mod upstream;
pub mod uri_path;
pub mod workers;
