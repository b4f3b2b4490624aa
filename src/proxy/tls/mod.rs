//! TLS: terminating it on listeners (certificates chosen by SNI, ALPN
//! `h2` / `http/1.1`, session resumption) and speaking it to upstreams.
//!
//! - [`resolver`]: SNI → virtual server → certificate, with a default;
//! - [`termination`]: the per-generation acceptors and the handshake;
//! - [`upstream`]: client configs and connectors for `https://` upstreams.
//!
//! Certificates are loaded while the config is validated
//! ([`crate::config::certificate`]), so `vigil check` reports a bad
//! certificate and a reload with one fails before anything changes; the
//! running generation keeps its own.

pub mod resolver;
pub mod termination;
pub mod upstream;

pub use termination::{TlsListeners, handshake};
pub use upstream::UpstreamConnector;
