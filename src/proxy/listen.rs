//! Listening sockets: one per worker on each address (SO_REUSEPORT),
//! bound with IP_FREEBIND so a backup can listen on a VIP it does not hold
//! yet, plus the two socket tricks the VIP hand-over relies on: a BPF
//! filter that drops SYNs (new connections held off, not refused) and the
//! accept-queue length from TCP_INFO (handshakes the kernel completed that
//! nobody accepted yet).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}{}", hint(source))]
pub struct BindError {
    pub addr: SocketAddr,
    pub source: io::Error,
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need CAP_NET_BIND_SERVICE: run as root, \
             `setcap cap_net_bind_service+ep /path/to/vigil`, or Docker \
             `--cap-add NET_BIND_SERVICE`)"
        }
        io::ErrorKind::AddrInUse => " (another process already listens there)",
        _ => "",
    }
}

/// A listening socket's accept queue length: Linux reports it in
/// `tcpi_unacked` of TCP_INFO for sockets in LISTEN state.
pub(crate) fn accept_queue_len(socket: &Socket) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `len`
    // bytes into it and the fd is valid while `socket` lives.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if rc == 0 {
            info.tcpi_unacked as usize
        } else {
            0
        }
    }
}

/// Attaches (or removes) a classic BPF program on a listening socket that
/// drops TCP segments with the SYN flag: new handshakes go unanswered. The
/// listener also sees the last ACK of handshakes already under way, which
/// must pass, or a connection the client believes open would never reach
/// the accept queue. Established connections have sockets of their own
/// (with the filter they had when created: none), so they keep working.
pub(crate) fn set_syn_drop(socket: &Socket, drop: bool) -> io::Result<()> {
    if drop {
        // For TCP the filter runs with the data pointer at the TCP header,
        // whose byte 13 holds the flags; SYN is 0x02.
        const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
        const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
        const RET_K: u16 = 0x06; // BPF_RET | BPF_K
        socket.attach_filter(&[
            socket2::SockFilter::new(LD_B_ABS, 0, 0, 13),
            socket2::SockFilter::new(JSET_K, 0, 1, 0x02),
            socket2::SockFilter::new(RET_K, 0, 0, 0), // SYN: drop
            socket2::SockFilter::new(RET_K, 0, 0, u32::MAX), // else: keep
        ])
    } else {
        match socket.detach_filter() {
            // ENOENT: no filter was attached.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }
}

/// Opens one listening socket per worker on `addr` (SO_REUSEPORT). With
/// port 0 the first socket picks the port and the others join it.
pub(crate) fn bind_all(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let first = bind(addr)?;
    let local = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind(local)?);
    }
    Ok(sockets)
}

/// Opens a listening socket. IP_FREEBIND lets a backup bind a VIP it does
/// not hold yet, so it serves the instant VRRP makes it master.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Best effort: without it only a VIP already held here can be bound,
    // and that bind fails with a clear error.
    let _ = set_freebind(&socket, &addr);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Sets IP_FREEBIND (IPv4) or IPV6_FREEBIND (IPv6) on `socket`, so that it
/// can bind `addr` even when `addr` is not configured here (yet). Per
/// socket, as keepalived does for `unicast_src_ip`: no host-wide
/// `net.ipv4.ip_nonlocal_bind=1` sysctl. Call it before `bind`.
fn set_freebind(socket: &Socket, addr: &SocketAddr) -> io::Result<()> {
    match addr {
        SocketAddr::V4(_) => socket.set_freebind_v4(true),
        SocketAddr::V6(_) => socket.set_freebind_v6(true),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A held listener leaves SYNs unanswered (the client's connect times
    /// out instead of being refused), and accepts again when released.
    #[tokio::test]
    async fn holding_drops_syns_without_refusing() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let dup = Socket::from(listener.try_clone().unwrap());
        set_syn_drop(&dup, true).unwrap();
        let attempt = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        assert!(attempt.is_err(), "connect should hang, got {attempt:?}");
        set_syn_drop(&dup, false).unwrap();
        // The client's SYN retry (1 s) now gets through.
        let stream =
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
                .await;
        assert!(matches!(stream, Ok(Ok(_))), "{stream:?}");
        assert_eq!(accept_queue_len(&dup), 1);
    }

    #[test]
    fn binds_an_address_that_is_not_local() {
        // 192.0.2.0/24 (TEST-NET-1) is never configured on a test host.
        let addr: SocketAddr = "192.0.2.77:0".parse().unwrap();
        let listener = bind(addr).expect("IP_FREEBIND bind");
        assert_eq!(listener.local_addr().unwrap().ip(), addr.ip());
        // Without freebind the same bind fails.
        let plain = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        assert!(plain.bind(&addr.into()).is_err());
    }
}
