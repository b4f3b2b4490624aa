//! Facts about a local interface (index, MAC, primary IPv4, IPv6
//! link-local, link state) and the process's capabilities. Read with
//! getifaddrs(3) and ioctl(2): cheap, synchronous, and correct in whatever
//! network namespace the process runs in.

use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::VrrpError;

/// What the speaker needs to know about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// IPv4 addresses in kernel order (the primary first).
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6_link_local: Option<Ipv6Addr>,
}

impl InterfaceInfo {
    /// The advert source: the primary IPv4 address (RFC 5798 §5.1.1.1) or
    /// the link-local address (§5.1.2.1), never one of `exclude` (VIPs).
    pub fn source_address(&self, ipv6: bool, exclude: &[IpAddr]) -> Option<IpAddr> {
        if ipv6 {
            self.ipv6_link_local.map(IpAddr::V6)
        } else {
            self.ipv4
                .iter()
                .map(|a| IpAddr::V4(*a))
                .find(|a| !exclude.contains(a))
        }
    }
}

/// Looks up `name`.
pub fn lookup(name: &str) -> Result<InterfaceInfo, VrrpError> {
    let cname = CString::new(name).map_err(|_| VrrpError::Interface {
        name: name.into(),
        reason: "invalid name".into(),
    })?;
    // SAFETY: cname is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(VrrpError::Interface {
            name: name.into(),
            reason: "no such interface".into(),
        });
    }
    let mut info = InterfaceInfo {
        name: name.into(),
        index,
        mac: [0; 6],
        ipv4: vec![],
        ipv6_link_local: None,
    };
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(VrrpError::Io {
            context: "getifaddrs".into(),
            source: io::Error::last_os_error(),
        });
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list returned by getifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        if unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr is non-null; its family says which struct it is.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: family AF_INET means a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                info.ipv4
                    .push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            libc::AF_INET6 => {
                // SAFETY: family AF_INET6 means a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                let a = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                if a.is_unicast_link_local() && info.ipv6_link_local.is_none() {
                    info.ipv6_link_local = Some(a);
                }
            }
            libc::AF_PACKET => {
                // SAFETY: family AF_PACKET means a sockaddr_ll.
                let sll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
                if sll.sll_halen == 6 {
                    info.mac.copy_from_slice(&sll.sll_addr[..6]);
                }
            }
            _ => {}
        }
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(info)
}

/// Whether the interface is administratively up with carrier
/// (IFF_UP and IFF_RUNNING). `Ok(false)` also when it does not exist.
pub fn is_running(name: &str) -> bool {
    let Ok(sock) = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None) else {
        return false;
    };
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return false;
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_flags.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    if rc != 0 {
        return false;
    }
    // SAFETY: after SIOCGIFFLAGS the union holds flags.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
    flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0
}

/// Linux capability numbers (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// Checks CAP_NET_RAW and CAP_NET_ADMIN in the effective set, so a missing
/// one is reported up front with how to grant it, rather than as EPERM
/// from whichever socket happens to open first.
pub fn check_capabilities() -> Result<(), VrrpError> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Ok(()); // no procfs: let the system calls speak
    };
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
    else {
        return Ok(());
    };
    if eff & (1 << CAP_NET_RAW) == 0 {
        return Err(VrrpError::MissingCapability {
            capability: "CAP_NET_RAW",
            needed_for: "raw VRRP sockets (IP protocol 112) and gratuitous ARP / NA frames",
        });
    }
    if eff & (1 << CAP_NET_ADMIN) == 0 {
        return Err(VrrpError::MissingCapability {
            capability: "CAP_NET_ADMIN",
            needed_for: "adding and removing virtual IP addresses",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_running() {
        let lo = lookup("lo").unwrap();
        assert!(lo.index > 0);
        assert!(lo.ipv4.contains(&Ipv4Addr::LOCALHOST) || lo.ipv4.is_empty());
        assert!(is_running("lo") || !is_running("lo")); // state depends on the namespace
        assert!(!is_running("no-such-if0"));
        assert!(matches!(
            lookup("no-such-if0"),
            Err(VrrpError::Interface { .. })
        ));
    }

    #[test]
    fn source_address_skips_vips() {
        let info = InterfaceInfo {
            name: "eth0".into(),
            index: 2,
            mac: [0; 6],
            ipv4: vec![Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 1)],
            ipv6_link_local: Some("fe80::1".parse().unwrap()),
        };
        let vip: IpAddr = "10.0.0.100".parse().unwrap();
        assert_eq!(
            info.source_address(false, &[vip]),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            info.source_address(true, &[]),
            Some("fe80::1".parse().unwrap())
        );
    }
}
