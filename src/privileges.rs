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
    /// A higher CPU share for the control thread (VRRP adverts).
    SysNice = 23,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::NetBindService => "CAP_NET_BIND_SERVICE",
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::NetRaw => "CAP_NET_RAW",
            Capability::SysNice => "CAP_SYS_NICE",
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
    let wanted = Capability::NetBindService.bit()
        | Capability::NetAdmin.bit()
        | Capability::NetRaw.bit()
        | Capability::SysNice.bit();
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

/// The control thread's nice value when VRRP runs (see
/// [`raise_control_thread_priority`]).
pub const CONTROL_NICE: i32 = -10;

fn set_thread_nice(nice: i32) -> io::Result<()> {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // SAFETY: plain syscall on our own thread id. On Linux the nice value
    // is per thread, so this changes the calling thread only.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives the calling thread (the control runtime's: VRRP adverts, health
/// probes) [`CONTROL_NICE`], about nine times the CPU share of a normal
/// thread when the host is busy, so adverts keep their schedule while the
/// proxy workers or anything else on the host compete for the CPUs (a late
/// advert is how a busy host flaps). Threads started afterwards inherit
/// it; the proxy's own threads go back to normal with
/// [`normal_thread_priority`]. Needs CAP_SYS_NICE; without it the thread
/// keeps its priority, and this says so.
pub fn raise_control_thread_priority() {
    match set_thread_nice(CONTROL_NICE) {
        Ok(()) => tracing::debug!(nice = CONTROL_NICE, "control thread priority raised"),
        Err(e) => tracing::info!(
            "control thread keeps its normal priority ({e}); VRRP adverts then compete with \
             everything else for the CPUs: {}",
            how_to_grant(Capability::SysNice)
        ),
    }
}

/// Puts the calling thread back to nice 0 (a proxy worker or writer thread
/// started from the raised control thread). Lowering one's own priority
/// needs no capability.
pub fn normal_thread_priority() {
    if let Err(e) = set_thread_nice(0) {
        tracing::debug!("cannot reset the thread priority: {e}");
    }
}

/// `/bin/sh -c script` for a notify hook or a track script, at nice 0 even
/// when started from the raised control thread: an operator's script must
/// not outrank the proxy.
pub fn shell(script: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("/bin/sh");
    command.arg("-c").arg(script);
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes syscalls (gettid, setpriority), which are async-signal-safe; it
    // touches no lock and allocates nothing.
    unsafe {
        command.pre_exec(|| {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 0);
            Ok(())
        });
    }
    command
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
