//! TLS: terminating it on listeners (certificates chosen by SNI, ALPN
//! `h2` / `http/1.1`, session resumption) and speaking it to upstreams.
//!
//! - [`certificate`]: loading a PEM chain and key, with errors naming the
//!   file, and the facts validation warns about (expiry, names covered);
//! - [`resolver`]: SNI → virtual server → certificate, with a default;
//! - [`termination`]: the per-generation acceptors and the handshake;
//! - [`upstream`]: client configs and connectors for `https://` upstreams.
//!
//! Certificates are loaded while the config is validated, so `vigil
//! check` reports a bad certificate and a reload with one fails before
//! anything changes; the running generation keeps its own.

pub mod certificate;
pub mod resolver;
pub mod termination;
pub mod upstream;

#[cfg(test)]
mod tests;

pub use certificate::{Certificate, CertificateError};
pub use termination::{HandshakeCounts, TlsListeners, handshake, handshake_counts};
pub use upstream::UpstreamConnector;
