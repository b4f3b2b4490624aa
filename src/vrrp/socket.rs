//! Raw IP protocol-112 sockets (RFC 5798 §5.1).
//!
//! One [`Receiver`] per (interface, family), shared by every instance on it
//! and demultiplexed by VRID: every raw socket sees every VRRP packet, so
//! per-instance receive sockets would each count the others' VRIDs as
//! errors. One [`Sender`] per instance, bound to its source address, with a
//! drop-all filter so nothing queues on it.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, SockFilter, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::discard::DiscardReason;
use super::error::VrrpError;
use super::packet::{self, Envelope, GROUP_V4, GROUP_V6, IPPROTO_VRRP, VRRP_TTL};

const NEEDED_FOR_RAW: &str = "raw VRRP sockets (IP protocol 112)";

fn raw_socket(ipv6: bool) -> Result<Socket, VrrpError> {
    let domain = if ipv6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(
        domain,
        Type::RAW,
        Some(Protocol::from(i32::from(IPPROTO_VRRP))),
    )
    .map_err(|e| VrrpError::io("socket(SOCK_RAW, 112)", e, "CAP_NET_RAW", NEEDED_FOR_RAW))?;
    s.set_nonblocking(true)
        .map_err(|e| io_err("O_NONBLOCK", e))?;
    Ok(s)
}

fn io_err(context: &str, source: io::Error) -> VrrpError {
    VrrpError::Io {
        context: context.into(),
        source,
    }
}

fn setsockopt_int(s: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value is a live c_int and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The receive side for one interface and family.
#[derive(Debug)]
pub struct Receiver {
    fd: AsyncFd<Socket>,
    ipv6: bool,
}

impl Receiver {
    /// Opens a raw socket bound to `ifname`, joined to the VRRP group on
    /// that interface only.
    pub fn open(ifname: &str, ifindex: u32, ipv6: bool) -> Result<Self, VrrpError> {
        let s = raw_socket(ipv6)?;
        // Only this interface's packets (SO_BINDTODEVICE).
        s.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| VrrpError::io("SO_BINDTODEVICE", e, "CAP_NET_RAW", NEEDED_FOR_RAW))?;
        if ipv6 {
            // Only groups this socket joined, not every group on the host.
            let _ = s.set_multicast_all_v6(false);
            s.join_multicast_v6(&GROUP_V6, ifindex)
                .map_err(|e| io_err("IPV6_JOIN_GROUP ff02::12", e))?;
            // The hop limit and destination come as ancillary data.
            s.set_recv_hoplimit_v6(true)
                .map_err(|e| io_err("IPV6_RECVHOPLIMIT", e))?;
            setsockopt_int(&s, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
                .map_err(|e| io_err("IPV6_RECVPKTINFO", e))?;
        } else {
            s.set_multicast_all_v4(false)
                .map_err(|e| io_err("IP_MULTICAST_ALL", e))?;
            s.join_multicast_v4_n(&GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex))
                .map_err(|e| io_err("IP_ADD_MEMBERSHIP 224.0.0.18", e))?;
        }
        // SAFETY: the Socket owns its descriptor and is moved into the
        // AsyncFd, so the fd stays open and the same for its whole life.
        let fd = unsafe { AsyncFd::register_with_interest(s, tokio::io::Interest::READABLE) }
            .map_err(|e| io_err("register socket with tokio", e.into_parts().1))?;
        Ok(Self { fd, ipv6 })
    }

    /// Waits for the next packet and returns its envelope, or why its IP
    /// envelope is unusable.
    pub async fn recv<'a>(
        &self,
        buf: &'a mut [u8],
    ) -> io::Result<Result<Envelope<'a>, DiscardReason>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let got = guard.try_io(|inner| {
                if self.ipv6 {
                    recv_v6(inner.get_ref(), buf)
                } else {
                    // SAFETY: u8 and MaybeUninit<u8> share a layout; recv
                    // only writes initialised bytes.
                    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
                    inner.get_ref().recv(uninit).map(|n| Meta::V4 { len: n })
                }
            });
            match got {
                Ok(Ok(Meta::V4 { len })) => return Ok(packet::parse_ipv4_datagram(&buf[..len])),
                Ok(Ok(Meta::V6 {
                    len,
                    src,
                    dst,
                    hop_limit,
                })) => {
                    return Ok(Ok(Envelope {
                        src: IpAddr::V6(src),
                        dst: IpAddr::V6(dst),
                        hop_limit,
                        payload: &buf[..len],
                    }));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

enum Meta {
    V4 {
        len: usize,
    },
    V6 {
        len: usize,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
    },
}

/// recvmsg(2) with IPV6_HOPLIMIT and IPV6_PKTINFO: IPv6 raw sockets do not
/// deliver the IP header, so the hop limit (checked against 255, §7.1) and
/// the destination (multicast vs unicast) come as control messages.
fn recv_v6(s: &Socket, buf: &mut [u8]) -> io::Result<Meta> {
    // SAFETY: all-zero is valid for these plain C structs.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16]; // 128 bytes, 8-aligned for cmsghdr
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at live buffers of the sizes given.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut hop_limit = 0u8; // absent = fails the TTL check
    let mut dst = Ipv6Addr::UNSPECIFIED;
    // SAFETY: walking the control buffer the kernel filled, with the
    // CMSG_* macros and the lengths it set.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_HOPLIMIT {
                let v = std::ptr::read_unaligned(data as *const libc::c_int);
                hop_limit = u8::try_from(v).unwrap_or(0);
            } else if c.cmsg_level == libc::IPPROTO_IPV6 && c.cmsg_type == libc::IPV6_PKTINFO {
                let info = std::ptr::read_unaligned(data as *const libc::in6_pktinfo);
                dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Meta::V6 {
        len: n as usize,
        src: Ipv6Addr::from(from.sin6_addr.s6_addr),
        dst,
        hop_limit,
    })
}

/// The send side of one instance.
#[derive(Debug)]
pub struct Sender {
    socket: Socket,
    pub source: IpAddr,
    ifindex: u32,
}

impl Sender {
    /// Opens a raw socket on `ifname` sending from `source` with TTL / hop
    /// limit 255 (RFC 5798 §5.1.1.3), multicast loop off (we must not hear
    /// ourselves), and a drop-all receive filter.
    pub fn open(ifname: &str, ifindex: u32, source: IpAddr) -> Result<Self, VrrpError> {
        let ipv6 = source.is_ipv6();
        let s = raw_socket(ipv6)?;
        s.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| VrrpError::io("SO_BINDTODEVICE", e, "CAP_NET_RAW", NEEDED_FOR_RAW))?;
        // A send socket still receives every protocol-112 packet; a BPF
        // program returning 0 drops them all in the kernel (keepalived does
        // the same), so nothing piles up in its queue.
        s.attach_filter(&[SockFilter::new(0x06, 0, 0, 0)])
            .map_err(|e| io_err("SO_ATTACH_FILTER", e))?;
        match source {
            IpAddr::V4(v4) => {
                s.set_multicast_ttl_v4(u32::from(VRRP_TTL))
                    .map_err(|e| io_err("IP_MULTICAST_TTL", e))?;
                s.set_ttl_v4(u32::from(VRRP_TTL))
                    .map_err(|e| io_err("IP_TTL", e))?;
                s.set_multicast_loop_v4(false)
                    .map_err(|e| io_err("IP_MULTICAST_LOOP", e))?;
                s.set_multicast_if_v4(&v4)
                    .map_err(|e| io_err("IP_MULTICAST_IF", e))?;
                // Internetwork control, like keepalived and FRR.
                let _ = s.set_tos_v4(0xc0);
                // A unicast_src_ip may not be configured yet.
                let _ = s.set_freebind_v4(true);
                s.bind(&SocketAddr::new(source, 0).into())
                    .map_err(|e| io_err(&format!("bind to {source}"), e))?;
            }
            IpAddr::V6(v6) => {
                s.set_multicast_hops_v6(u32::from(VRRP_TTL))
                    .map_err(|e| io_err("IPV6_MULTICAST_HOPS", e))?;
                s.set_unicast_hops_v6(u32::from(VRRP_TTL))
                    .map_err(|e| io_err("IPV6_UNICAST_HOPS", e))?;
                s.set_multicast_loop_v6(false)
                    .map_err(|e| io_err("IPV6_MULTICAST_LOOP", e))?;
                s.set_multicast_if_v6(ifindex)
                    .map_err(|e| io_err("IPV6_MULTICAST_IF", e))?;
                // Traffic Class 0xc0 (network control), as the IPv4 TOS
                // above and as keepalived sets it for both families.
                set_tclass_v6(&s, 0xc0).map_err(|e| io_err("IPV6_TCLASS", e))?;
                let _ = s.set_freebind_v6(true);
                let scope = if v6.is_unicast_link_local() {
                    ifindex
                } else {
                    0
                };
                s.bind(&SocketAddrV6::new(v6, 0, 0, scope).into())
                    .map_err(|e| io_err(&format!("bind to {source}"), e))?;
            }
        }
        Ok(Self {
            socket: s,
            source,
            ifindex,
        })
    }

    /// Sends `bytes` (a VRRP message; the kernel adds the IP header).
    pub fn send(&self, bytes: &[u8], dst: IpAddr) -> io::Result<()> {
        let addr: SockAddr = match dst {
            IpAddr::V4(v4) => SocketAddr::new(IpAddr::V4(v4), 0).into(),
            IpAddr::V6(v6) => {
                let scope = if v6.is_multicast() || v6.is_unicast_link_local() {
                    self.ifindex
                } else {
                    0
                };
                SocketAddrV6::new(v6, 0, 0, scope).into()
            }
        };
        self.socket.send_to(bytes, &addr).map(|_| ())
    }
}

/// The multicast destination for a family.
pub fn group(ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(GROUP_V6)
    } else {
        IpAddr::V4(GROUP_V4)
    }
}

/// `IPV6_TCLASS` on a send socket (socket2 only offers the receive side).
fn set_tclass_v6(s: &Socket, tclass: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd and a pointer to an int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_TCLASS,
            (&tclass as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
