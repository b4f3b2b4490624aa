//! Binding listeners to a VIP that is not (yet) on this host.
//!
//! A Backup must be ready to serve the instant it becomes Master, so the
//! proxy binds its listeners on the VIP before the VIP exists. Linux allows
//! that per socket with IP_FREEBIND / IPV6_FREEBIND (the same thing
//! keepalived does for `unicast_src_ip`), which avoids the host-wide
//! `net.ipv4.ip_nonlocal_bind=1` sysctl.

use std::io;
use std::net::SocketAddr;

use socket2::Socket;

/// Sets IP_FREEBIND (IPv4) or IPV6_FREEBIND (IPv6) on `socket` so that it
/// can bind to `addr` even when `addr` is not configured locally. Call it
/// before `bind`.
pub fn set_freebind(socket: &Socket, addr: &SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true),
        SocketAddr::V6(_) => socket.set_freebind_v6(true),
    }
}

/// Creates a TCP listener bound to `addr` with IP_FREEBIND (and
/// SO_REUSEADDR), ready for `tokio::net::TcpListener::from_std`.
pub fn bind_tcp_freebind(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    set_freebind(&socket, &addr)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_an_address_that_is_not_local() {
        // 192.0.2.0/24 (TEST-NET-1) is never configured on a test host.
        let addr: SocketAddr = "192.0.2.77:0".parse().unwrap();
        let listener = bind_tcp_freebind(addr, 16).expect("IP_FREEBIND bind");
        assert_eq!(listener.local_addr().unwrap().ip(), addr.ip());
        // Without freebind the same bind fails.
        let plain = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        assert!(plain.bind(&addr.into()).is_err());
    }
}
