//! Linux capabilities: raise the network capabilities vigil was granted
//! into its effective set, and tell which ones it has.
//!
//! The Docker image gives the binary file capabilities in the *permitted*
//! set only (`setcap ...+p`), so exec never fails in a container started
//! without `--cap-add` (a proxy-only setup); vigil then raises whatever the
//! container allows. Under systemd, `AmbientCapabilities` already makes
//! them effective and this is a no-op.

use std::io;

/// The capabilities vigil uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Ports below 1024.
    NetBindService = 10,
    /// VIP addresses (rtnetlink), multicast membership on some setups.
    NetAdmin = 12,
    /// Raw VRRP sockets, gratuitous ARP / neighbour advertisements.
    NetRaw = 13,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::NetBindService => "CAP_NET_BIND_SERVICE",
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::NetRaw => "CAP_NET_RAW",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const VERSION_3: u32 = 0x2008_0522;

fn get() -> io::Result<[Data; 2]> {
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two `Data` words for version 3, which `data`
    // provides; both pointers are valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc == 0 {
        Ok(data)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes every permitted network capability effective. Errors are not
/// fatal: a missing capability is reported by the feature that needs it.
pub fn raise_network_capabilities() {
    let Ok(mut data) = get() else {
        return;
    };
    let wanted =
        Capability::NetBindService.bit() | Capability::NetAdmin.bit() | Capability::NetRaw.bit();
    let raise = data[0].permitted & wanted & !data[0].effective;
    if raise == 0 {
        return;
    }
    data[0].effective |= raise;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: as in `get`; capset only reads the structures.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "could not raise capabilities");
    }
}

/// True when `cap` is in the effective set.
pub fn has(cap: Capability) -> bool {
    get().is_ok_and(|d| d[0].effective & cap.bit() != 0)
}

/// How to grant `cap`, for error messages.
pub fn how_to_grant(cap: Capability) -> String {
    let short = cap.name().trim_start_matches("CAP_");
    format!(
        "{} is missing: run as root, or `setcap cap_net_admin,cap_net_raw,cap_net_bind_service+ep \
         /usr/local/bin/vigil`, or in systemd `AmbientCapabilities={}`, or in Docker \
         `--cap-add {short}`",
        cap.name(),
        cap.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_capabilities_and_explains_grants() {
        // Runs as root in CI and unprivileged elsewhere: only check that
        // the query works and is consistent with the process's uid.
        let root = unsafe { libc::geteuid() } == 0;
        if root {
            assert!(has(Capability::NetAdmin));
        }
        raise_network_capabilities();
        let msg = how_to_grant(Capability::NetRaw);
        assert!(
            msg.contains("CAP_NET_RAW") && msg.contains("--cap-add NET_RAW"),
            "{msg}"
        );
    }
}
