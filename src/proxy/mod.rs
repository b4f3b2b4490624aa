//! The reverse proxy: listeners, routing, static files, forwarding to
//! upstream pools.

pub mod body;
pub mod headers;
pub mod router;
pub mod static_files;
pub mod upstream;
pub mod uri_path;
