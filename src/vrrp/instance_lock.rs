//! One speaker per virtual router on a host: each instance holds a lock
//! named for its (interface, VRID, address family) while it runs, so a
//! second vigil started with the same config (or another config that
//! claims the same virtual router) stops with a message naming the
//! holder's pid, instead of running a second VRRP speaker for the same
//! VRID next to the first one.
//!
//! The lock is a listening unix socket in the abstract namespace
//! (`@vigil/vrrp/eth0/51/ipv4` in `ss -xl`): the kernel frees it when the
//! holder dies, however it dies (no stale lock file to clean up), and a
//! contender that connects to it learns the holder's pid (SO_PEERCRED).
//! Abstract names belong to the network namespace, which is also where
//! interfaces and their VRIDs live: vigils in separate namespaces (the
//! test labs, containers with their own network) do not collide.

use std::io;

use socket2::{Domain, SockAddr, Socket, Type};

use super::error::VrrpError;

/// Held for as long as the instance runs; released when dropped.
#[derive(Debug)]
pub struct InstanceLock {
    key: LockKey,
    _socket: Socket,
}

/// What a lock is taken for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockKey {
    pub interface: String,
    pub vrid: u8,
    pub ipv6: bool,
}

impl LockKey {
    /// The abstract socket name (without the leading NUL).
    pub fn name(&self) -> String {
        let family = if self.ipv6 { "ipv6" } else { "ipv4" };
        format!("vigil/vrrp/{}/{}/{family}", self.interface, self.vrid)
    }
}

impl InstanceLock {
    /// Takes the lock, or says who holds it.
    pub fn acquire(key: LockKey) -> Result<InstanceLock, VrrpError> {
        let address = abstract_address(&key.name()).map_err(|e| io_error(&key, e))?;
        let socket =
            Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| io_error(&key, e))?;
        match socket.bind(&address) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(VrrpError::AlreadyRunning {
                    interface: key.interface.clone(),
                    vrid: key.vrid,
                    family: if key.ipv6 { "IPv6" } else { "IPv4" },
                    holder: holder_of(&address)
                        .map_or_else(|| "another process".into(), |pid| format!("pid {pid}")),
                });
            }
            Err(e) => return Err(io_error(&key, e)),
        }
        // Listening makes the holder's credentials available to whoever
        // connects; nothing is ever accepted (the backlog of 1 fills and
        // later contenders see EAGAIN, and say "another process").
        socket.listen(1).map_err(|e| io_error(&key, e))?;
        Ok(InstanceLock {
            key,
            _socket: socket,
        })
    }

    pub fn key(&self) -> &LockKey {
        &self.key
    }
}

fn abstract_address(name: &str) -> io::Result<SockAddr> {
    let mut path = vec![0u8];
    path.extend_from_slice(name.as_bytes());
    SockAddr::unix(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&path))
}

/// The pid of the process listening on `address`, if it can be learned
/// without waiting.
fn holder_of(address: &SockAddr) -> Option<u32> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).ok()?;
    socket.set_nonblocking(true).ok()?;
    socket.connect(address).ok()?;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    use std::os::fd::AsRawFd;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred
    // (what SO_PEERCRED returns), and `len` says its size.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

fn io_error(key: &LockKey, source: io::Error) -> VrrpError {
    VrrpError::Io {
        context: format!("instance lock @{}", key.name()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(interface: &str, vrid: u8, ipv6: bool) -> LockKey {
        LockKey {
            interface: interface.into(),
            vrid,
            ipv6,
        }
    }

    #[test]
    fn a_second_lock_names_the_holder_and_a_released_one_is_free() {
        // A name no other test or vigil uses (abstract names are per
        // network namespace, and this test runs in the host's).
        let k = key(&format!("test{}", std::process::id()), 51, false);
        let held = InstanceLock::acquire(k.clone()).unwrap();
        let err = InstanceLock::acquire(k.clone()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("VRID 51") && err.contains("IPv4"), "{err}");
        // Other VRIDs and the other family are other routers.
        let _v6 = InstanceLock::acquire(key(&k.interface, 51, true)).unwrap();
        let _other = InstanceLock::acquire(key(&k.interface, 52, false)).unwrap();
        drop(held);
        InstanceLock::acquire(k).unwrap();
    }
}
