//! TLS to upstream servers (`proxy_pass = "https://..."`, or `tls = {...}`
//! on an `[upstream.x]`).
//!
//! One rustls `ClientConfig` per pool, so TLS sessions are resumed across
//! the pool's connections; each server gets the name it is verified
//! against (and that is sent as SNI when it is a DNS name). Certificates
//! are verified against the configured CA file, or else the Mozilla root
//! set compiled into vigil (webpki-roots), which works the same in a
//! minimal container without `/etc/ssl/certs`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::UpstreamTls;

/// How to open TLS to one upstream server.
#[derive(Clone)]
pub struct UpstreamConnector {
    connector: TlsConnector,
    /// Verified in the server's certificate; sent as SNI if a DNS name.
    name: ServerName<'static>,
}

impl std::fmt::Debug for UpstreamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnector")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl UpstreamConnector {
    pub fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> Self {
        Self {
            connector: TlsConnector::from(config),
            name,
        }
    }

    /// Runs the client handshake over an established TCP connection.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}

/// The client config for a pool with `settings`.
pub fn client_config(settings: &UpstreamTls) -> Arc<ClientConfig> {
    let provider = Arc::new(ring::default_provider());
    // Invariant: ring supports TLS 1.2 and 1.3 (see the server side).
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let mut config = if !settings.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        match &settings.ca {
            // A configured CA replaces the public roots (nginx
            // proxy_ssl_trusted_certificate): an internal service should
            // not be impersonable with any public certificate.
            Some(ca) => {
                roots.add_parsable_certificates(ca.certs.iter().cloned());
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    // The upstream side speaks HTTP/1.1 only (see upstream::conn).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// `verify = false`: accept any certificate, but still check that the
/// server holds the key of the certificate it sent (the handshake
/// signature), so the session keys are at least tied to that certificate.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
