//! Terminating TLS on listeners: one rustls `ServerConfig` per TLS listen
//! address and config generation, and the handshake every connection on
//! such a listener goes through before HTTP.
//!
//! The acceptors are part of [`Runtime`](crate::proxy::runtime::Runtime),
//! so a reload swaps certificates with the rest of the config: a new
//! connection takes the acceptor of the runtime current when it is
//! accepted; connections already established keep the session they have.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::resolver::SniResolver;
use crate::config::Config;
use crate::proxy::router::VirtualHosts;

/// ALPN protocol ids (RFC 7301 registry).
const ALPN_H2: &[u8] = b"h2";
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Session IDs remembered for TLS 1.2 clients without ticket support.
const SESSION_CACHE_SIZE: usize = 4096;

/// The TLS acceptors of one config generation, by listen address.
#[derive(Clone)]
pub struct TlsListeners {
    acceptors: HashMap<SocketAddr, TlsAcceptor>,
    resumption: Resumption,
}

impl std::fmt::Debug for TlsListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut addrs: Vec<_> = self.acceptors.keys().collect();
        addrs.sort();
        f.debug_struct("TlsListeners")
            .field("addrs", &addrs)
            .finish_non_exhaustive()
    }
}

/// Session resumption state, shared by every generation so that a reload
/// does not force every returning client into a full handshake.
#[derive(Clone)]
struct Resumption {
    cache: Arc<dyn StoresServerSessions>,
    /// Stateless tickets (TLS 1.2 RFC 5077, TLS 1.3); the key rotates
    /// every few hours inside rustls. `None` if ring could not make one.
    ticketer: Option<Arc<dyn ProducesTickets>>,
}

impl Resumption {
    fn new() -> Self {
        let ticketer = match ring::Ticketer::new() {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "TLS session tickets disabled: cannot make a ticket key");
                None
            }
        };
        Self {
            cache: ServerSessionMemoryCache::new(SESSION_CACHE_SIZE),
            ticketer,
        }
    }
}

impl TlsListeners {
    /// Builds an acceptor for every TLS listener of `config`. `hosts` are
    /// the virtual-host tables of the same generation (SNI selects a
    /// server with them); `previous` lends its session resumption state.
    ///
    /// Cannot fail: certificates were loaded and checked when the config
    /// was validated.
    pub fn build(
        config: &Config,
        hosts: &crate::proxy::fast_map::FastMap<SocketAddr, VirtualHosts>,
        previous: Option<&TlsListeners>,
    ) -> TlsListeners {
        let resumption = previous.map_or_else(Resumption::new, |p| p.resumption.clone());
        let mut acceptors = HashMap::new();
        for listener in config.listeners.iter().filter(|l| l.tls) {
            let Some(table) = hosts.get(&listener.addr) else {
                continue;
            };
            let mut keys = vec![None; config.servers.len()];
            for &i in &listener.servers {
                keys[i] = config.servers[i]
                    .tls
                    .as_ref()
                    .map(|t| t.certificate.key.clone());
            }
            // Validation makes every server on a TLS listener have a
            // certificate, so the default server has one; the fallbacks
            // only keep this total.
            let Some(default) = keys[listener.default_server]
                .clone()
                .or_else(|| keys.iter().flatten().next().cloned())
            else {
                tracing::error!(addr = %listener.addr, "TLS listener without a certificate");
                continue;
            };
            let resolver = SniResolver::new(table.clone(), keys, default);
            let server_config = server_config(resolver, config.http.http2, &resumption);
            acceptors.insert(listener.addr, TlsAcceptor::from(Arc::new(server_config)));
        }
        TlsListeners {
            acceptors,
            resumption,
        }
    }

    /// The acceptor for connections to `addr`; `None` for plain HTTP.
    pub fn acceptor(&self, addr: &SocketAddr) -> Option<TlsAcceptor> {
        self.acceptors.get(addr).cloned()
    }

    /// The rustls config serving `addr`, to inspect in tests and tools.
    pub fn server_config(&self, addr: &SocketAddr) -> Option<Arc<ServerConfig>> {
        self.acceptors.get(addr).map(|a| a.config().clone())
    }
}

fn server_config(resolver: SniResolver, http2: bool, resumption: &Resumption) -> ServerConfig {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    // Invariant: ring ships cipher suites and key exchanges for both TLS
    // 1.2 and 1.3 (the `tls12` feature is on in Cargo.toml), so building
    // this combination cannot fail; nothing here comes from input.
    let builder = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&versions)
        .expect("the ring provider supports TLS 1.2 and 1.3");
    let mut config = builder
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    // Browsers get HTTP/2 only when it is offered here; hyper's auto
    // builder then sees the h2 preface.
    config.alpn_protocols = if http2 {
        vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()]
    } else {
        vec![ALPN_HTTP11.to_vec()]
    };
    config.session_storage = resumption.cache.clone();
    if let Some(ticketer) = &resumption.ticketer {
        config.ticketer = ticketer.clone();
    }
    config
}

/// Runs the server side of a TLS handshake on an accepted connection.
/// `None` when it failed, timed out or shutdown began; failures are
/// logged at debug (they are routine: scanners, clients that reject the
/// certificate) and counted in `vigil_tls_handshakes_total`.
///
/// A client that sends plain HTTP to the HTTPS port gets a readable 400
/// (as from nginx) instead of TLS alert bytes it would show as garbage.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    peer: SocketAddr,
    stop: &CancellationToken,
    metrics: &crate::metrics::Metrics,
) -> Option<TlsStream<TcpStream>> {
    let attempt = async move {
        if starts_with_plain_http(&stream).await? {
            refuse_plain_http(stream).await;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "plain HTTP request sent to the HTTPS port",
            ));
        }
        acceptor.accept(stream).await
    };
    let result = tokio::select! {
        r = tokio::time::timeout(timeout, attempt) => r,
        _ = stop.cancelled() => return None,
    };
    match result {
        Ok(Ok(tls)) => {
            metrics.tls_handshakes.with_label_values(&["ok"]).inc();
            Some(tls)
        }
        Ok(Err(e)) => {
            metrics.tls_handshakes.with_label_values(&["failed"]).inc();
            metrics.tls_handshake_errors.inc();
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.tls_handshakes.with_label_values(&["timeout"]).inc();
            metrics.tls_handshake_errors.inc();
            tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
            None
        }
    }
}

/// Waits for the first byte without consuming it. A TLS connection starts
/// with a handshake record (content type 22, RFC 8446 §5.1); an HTTP
/// request starts with a method name in ASCII letters.
async fn starts_with_plain_http(stream: &TcpStream) -> io::Result<bool> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await? {
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before the handshake",
        )),
        _ => Ok(first[0].is_ascii_uppercase()),
    }
}

async fn refuse_plain_http(mut stream: TcpStream) {
    const BODY: &str = "This port expects HTTPS: use an https:// URL.\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    // Read what the client sent before closing: closing with unread data
    // makes the kernel send RST, which can destroy the response in flight.
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let linger = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(linger);
    loop {
        tokio::select! {
            _ = &mut linger => return,
            r = stream.read(&mut sink) => match r {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}
