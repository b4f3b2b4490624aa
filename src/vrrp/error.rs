//! Errors of the VRRP speaker: concrete, so callers (the CLI, the proxy's
//! reload path) can tell "grant a capability" from "fix the config".

use std::io;

/// Why the speaker could not start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VrrpError {
    /// The process lacks a Linux capability. The message says how to grant it.
    #[error(
        "missing capability {capability} ({needed_for}). Run as root, or grant it with \
         `setcap cap_net_admin,cap_net_raw+ep /usr/local/bin/vigil`; in Docker use \
         `--network host --cap-add NET_ADMIN --cap-add NET_RAW`"
    )]
    MissingCapability {
        capability: &'static str,
        needed_for: &'static str,
    },
    /// A configured interface is missing or unusable.
    #[error("interface {name:?}: {reason}")]
    Interface { name: String, reason: String },
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A netlink request failed.
    #[error("netlink: {0}")]
    Netlink(String),
    /// Another process runs this virtual router on this host.
    #[error(
        "VRRP instance on {interface}, VRID {vrid} ({family}) is already run by {holder} on this \
         host; one vigil per host (to upgrade the binary, see docs/OPERATIONS.md, \"Upgrading\")"
    )]
    AlreadyRunning {
        interface: String,
        vrid: u8,
        family: &'static str,
        holder: String,
    },
    /// No instance of that name is running.
    #[error("no VRRP instance named {0:?}")]
    UnknownInstance(String),
}

impl VrrpError {
    /// Wraps an I/O error, turning EPERM/EACCES into the capability error
    /// that says how to fix it.
    pub fn io(
        context: impl Into<String>,
        source: io::Error,
        capability: &'static str,
        needed_for: &'static str,
    ) -> Self {
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => VrrpError::MissingCapability {
                capability,
                needed_for,
            },
            _ => VrrpError::Io {
                context: context.into(),
                source,
            },
        }
    }

    /// True for a missing-capability error.
    pub fn is_missing_capability(&self) -> bool {
        matches!(self, VrrpError::MissingCapability { .. })
    }
}
