//! Choosing the certificate for a TLS handshake from the client's SNI.
//!
//! rustls 0.23's own `ResolvesServerCertUsingSni` only knows exact names
//! and aborts the handshake when the client sends no SNI. We resolve the
//! way nginx does instead: the SNI name selects a virtual server with the
//! same rules as the `Host` header (exact name, `*.suffix`, `prefix.*`,
//! regex), and that server's certificate is presented. Clients without SNI
//! and unknown names get the listener's default server's certificate, so a
//! handshake never fails for lack of a certificate.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::proxy::router::VirtualHosts;

/// Certificate selection for one listen address.
#[derive(Debug)]
pub struct SniResolver {
    hosts: VirtualHosts,
    /// By server index (positions in the config's server list); `None` for
    /// servers that are not on this listener.
    keys: Vec<Option<Arc<CertifiedKey>>>,
    /// The listener's default server's certificate.
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(
        hosts: VirtualHosts,
        keys: Vec<Option<Arc<CertifiedKey>>>,
        default: Arc<CertifiedKey>,
    ) -> Self {
        Self {
            hosts,
            keys,
            default,
        }
    }

    /// The certificate for an SNI name (or none sent).
    pub fn select(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let server = self.hosts.select(server_name);
        match self.keys.get(server) {
            Some(Some(key)) => key,
            _ => &self.default,
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.select(hello.server_name()).clone())
    }
}
