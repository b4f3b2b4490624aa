//! The self-probe: a real request through one of our own listeners.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ListenerConfig;
use crate::proxy::probe::{PROBE_HEADER, probe_token};

/// A listener this host can reach on loopback: a wildcard, a loopback or
/// a local address (not a VIP held by the peer). Plain HTTP preferred.
pub(super) fn probe_target(
    listeners: &[ListenerConfig],
    bound: &[(SocketAddr, SocketAddr)],
) -> Option<ProbeTarget> {
    let mut candidates: Vec<((bool, bool), SocketAddr)> = Vec::new();
    for l in listeners {
        let Some((_, local)) = bound.iter().find(|(c, _)| *c == l.addr) else {
            continue;
        };
        let ip = match local.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip if ip.is_loopback() || is_local(ip) => ip,
            _ => continue,
        };
        candidates.push(((l.tls, l.proxy_protocol), SocketAddr::new(ip, local.port())));
    }
    // Plain first, then plain HTTP without a PROXY header expected.
    candidates.sort_by_key(|(kind, _)| *kind);
    candidates.first().map(|((_, proxy), a)| ProbeTarget {
        addr: *a,
        proxy_protocol: *proxy,
    })
}

/// True when `ip` is configured on this host (binding to it works).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// Where the self-probe goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProbeTarget {
    addr: SocketAddr,
    /// The listener expects a PROXY protocol header: the probe sends a v1
    /// `UNKNOWN` one (the connection's own addresses apply).
    proxy_protocol: bool,
}

/// One self-probe request; the handler answers it with 204 before routing.
pub(super) async fn probe(to: ProbeTarget, timeout: Duration) -> Result<(), String> {
    let target = to.addr;
    let attempt = async {
        let mut stream = TcpStream::connect(target)
            .await
            .map_err(|e| format!("self-probe cannot connect to {target}: {e}"))?;
        let request = format!(
            "{}GET / HTTP/1.1\r\nHost: vigil-probe\r\n{PROBE_HEADER}: {}\r\nConnection: close\r\n\r\n",
            if to.proxy_protocol {
                "PROXY UNKNOWN\r\n"
            } else {
                ""
            },
            probe_token()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("self-probe write to {target}: {e}"))?;
        let mut head = [0u8; 12];
        stream
            .read_exact(&mut head)
            .await
            .map_err(|e| format!("self-probe read from {target}: {e}"))?;
        if &head[..] == b"HTTP/1.1 204" {
            Ok(())
        } else {
            Err(format!(
                "self-probe to {target} answered {:?}",
                String::from_utf8_lossy(&head)
            ))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "self-probe to {target}: no answer within {timeout:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_targets_prefer_reachable_plain_listeners() {
        let l = |addr: &str, tls: bool| ListenerConfig {
            addr: addr.parse().unwrap(),
            servers: vec![0],
            default_server: 0,
            tls,
            proxy_protocol: false,
        };
        let listeners = [
            l("0.0.0.0:443", true),
            l("192.0.2.99:80", false),
            l("0.0.0.0:8080", false),
        ];
        let bound: Vec<(SocketAddr, SocketAddr)> =
            listeners.iter().map(|l| (l.addr, l.addr)).collect();
        // 192.0.2.99 is not on this host (a VIP held elsewhere): skipped.
        let at = |a: &str, proxy_protocol: bool| {
            Some(ProbeTarget {
                addr: a.parse().unwrap(),
                proxy_protocol,
            })
        };
        assert_eq!(
            probe_target(&listeners, &bound),
            at("127.0.0.1:8080", false)
        );
        assert_eq!(
            probe_target(&listeners[..2], &bound[..2]),
            at("127.0.0.1:443", false)
        );
        // A listener expecting PROXY headers comes after a plain one, and
        // is probed with a header when it is the only one.
        let mut with_proxy = listeners.to_vec();
        with_proxy[2].proxy_protocol = true;
        assert_eq!(
            probe_target(&with_proxy, &bound),
            at("127.0.0.1:8080", true)
        );
        with_proxy.push(l("127.0.0.1:9000", false));
        let bound: Vec<(SocketAddr, SocketAddr)> =
            with_proxy.iter().map(|l| (l.addr, l.addr)).collect();
        assert_eq!(
            probe_target(&with_proxy, &bound),
            at("127.0.0.1:9000", false)
        );
        assert_eq!(probe_target(&listeners[1..2], &bound[1..2]), None);
    }
}
