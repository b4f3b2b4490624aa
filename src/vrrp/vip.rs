//! Virtual addresses on the interface, through rtnetlink (RTM_NEWADDR /
//! RTM_DELADDR), like `ip addr add/del`.
//!
//! IPv4 VIPs carry a label (`eth0:vigil`) so `ip addr` shows who owns
//! them. IPv6 VIPs are added with NODAD (a tentative address cannot be
//! used, and the backup never held it), and /128s with a preferred
//! lifetime of 0 so the kernel never picks them as a source address
//! (keepalived does both).

use std::io;
use std::net::IpAddr;

use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, CacheInfo};
use rtnetlink::{Handle, new_connection};

use super::error::VrrpError;
use super::guardian::Guardian;
use super::guardian::wire::HeldVip;
use crate::config::vrrp::Vip;

const NEEDED_FOR: &str = "adding and removing virtual IP addresses";

/// A netlink handle for address changes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct VipTable {
    handle: Handle,
    /// Told of every VIP held, so that a crash leaves none behind.
    guardian: Option<Guardian>,
}

/// The label `ip addr` shows next to an IPv4 VIP: `<ifname>:vigil`, or
/// shorter when the interface name is long (labels are at most 15 bytes and
/// must start with the interface name).
pub fn label_for(ifname: &str) -> String {
    for suffix in [":vigil", ":vg", ":v"] {
        if ifname.len() + suffix.len() <= 15 {
            return format!("{ifname}{suffix}");
        }
    }
    ifname.to_owned()
}

impl VipTable {
    /// Opens a netlink socket and spawns its connection task on the
    /// current tokio runtime.
    pub fn new() -> Result<Self, VrrpError> {
        let (connection, handle, _) = new_connection().map_err(|e| VrrpError::Io {
            context: "netlink socket".into(),
            source: e,
        })?;
        tokio::spawn(connection);
        Ok(Self {
            handle,
            guardian: None,
        })
    }

    /// The same table, telling `guardian` what it adds and removes.
    pub fn with_guardian(self, guardian: Option<Guardian>) -> Self {
        Self { guardian, ..self }
    }

    pub fn guardian(&self) -> Option<&Guardian> {
        self.guardian.as_ref()
    }

    /// Adds `vip` to the interface (replacing an identical one).
    pub async fn add(&self, ifindex: u32, ifname: &str, vip: &Vip) -> Result<(), VrrpError> {
        // The guardian first: a crash between the two leaves it removing
        // an address that may not be there, never the reverse.
        if let Some(g) = &self.guardian {
            g.hold(held(ifindex, vip));
        }
        let mut req = self
            .handle
            .address()
            .add(ifindex, vip.addr, vip.prefix)
            .replace();
        let msg = req.message_mut();
        decorate(msg, ifname, vip);
        req.execute()
            .await
            .map_err(|e| netlink_error("add", vip, e))
    }

    /// Removes `vip`; an address that is not there is not an error.
    pub async fn remove(&self, ifindex: u32, vip: &Vip) -> Result<(), VrrpError> {
        let mut msg = AddressMessage::default();
        msg.header.family = match vip.addr {
            IpAddr::V4(_) => rtnetlink::packet_route::AddressFamily::Inet,
            IpAddr::V6(_) => rtnetlink::packet_route::AddressFamily::Inet6,
        };
        msg.header.prefix_len = vip.prefix;
        msg.header.index = ifindex;
        msg.attributes.push(AddressAttribute::Local(vip.addr));
        msg.attributes.push(AddressAttribute::Address(vip.addr));
        match self.handle.address().del(msg).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) || errno(&e) == Some(libc::ENOENT) => {
            }
            Err(e) => return Err(netlink_error("remove", vip, e)),
        }
        if let Some(g) = &self.guardian {
            g.release(held(ifindex, vip));
        }
        Ok(())
    }

    /// Whether `addr` is configured on the interface.
    pub async fn is_present(&self, ifindex: u32, addr: IpAddr) -> Result<bool, VrrpError> {
        use futures_util::TryStreamExt;
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(ifindex)
            .set_address_filter(addr)
            .execute();
        match stream.try_next().await {
            Ok(found) => Ok(found.is_some()),
            Err(e) => Err(VrrpError::Netlink(format!("list addresses: {e}"))),
        }
    }
}

fn held(ifindex: u32, vip: &Vip) -> HeldVip {
    HeldVip {
        ifindex,
        addr: vip.addr,
        prefix: vip.prefix,
    }
}

fn decorate(msg: &mut AddressMessage, ifname: &str, vip: &Vip) {
    match vip.addr {
        IpAddr::V4(_) => msg
            .attributes
            .push(AddressAttribute::Label(label_for(ifname))),
        IpAddr::V6(_) => {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            if vip.prefix == 128 {
                let mut lifetimes = CacheInfo::default();
                lifetimes.ifa_preferred = 0;
                lifetimes.ifa_valid = u32::MAX; // forever
                msg.attributes.push(AddressAttribute::CacheInfo(lifetimes));
            }
        }
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error(),
        _ => None,
    }
}

fn netlink_error(what: &str, vip: &Vip, e: rtnetlink::Error) -> VrrpError {
    match errno(&e) {
        Some(code @ (libc::EPERM | libc::EACCES)) => VrrpError::io(
            format!("{what} {}", vip.addr),
            io::Error::from_raw_os_error(code),
            "CAP_NET_ADMIN",
            NEEDED_FOR,
        ),
        _ => VrrpError::Netlink(format!("{what} {}/{}: {e}", vip.addr, vip.prefix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_in_15_bytes_and_start_with_the_interface() {
        assert_eq!(label_for("eth0"), "eth0:vigil");
        assert_eq!(label_for("enp0s31f6"), "enp0s31f6:vigil");
        assert_eq!(label_for("enp0s31f6abc"), "enp0s31f6abc:vg");
        assert_eq!(label_for("abcdefghijklmn"), "abcdefghijklmn");
        for name in ["e", "eth0", "abcdefghijklmn", "abcdefghijklmno"] {
            let l = label_for(name);
            assert!(l.len() <= 15 && l.starts_with(name));
        }
    }
}
