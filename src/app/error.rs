//! Why vigil could not start, or could not reload. As hyper's errors do,
//! each level says only its own part and hands the cause on as
//! `source()`; [`chain`] writes the whole story on one line.

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::proxy::server::BindError;
use crate::vrrp::VrrpError;

/// Why vigil could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    AccessLog(std::io::Error),
    #[error("cannot start the admin listener on {addr}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("VRRP")]
    Vrrp(#[from] VrrpError),
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
}

/// Why a reload was refused; the running config stays in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not validate: the operator's to fix (the admin API
    /// answers 422 for this one only).
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the reload task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error(transparent)]
    AccessLog(std::io::Error),
    #[error("cannot start the admin listener on {addr}")]
    Admin {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("VRRP")]
    Vrrp(#[from] VrrpError),
    #[error(transparent)]
    Bind(#[from] BindError),
}

impl ReloadError {
    /// A mistake in the config file, as opposed to the host refusing
    /// something (an address in use, a capability, netlink).
    pub fn is_config(&self) -> bool {
        matches!(self, ReloadError::Config(_))
    }
}

/// `e` and its causes, `: `-separated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        // A transparent level shows its cause's text already.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let e = StartError::Admin {
            addr: "127.0.0.1:9090".parse().unwrap(),
            source: io,
        };
        assert_eq!(
            chain(&e),
            "cannot start the admin listener on 127.0.0.1:9090: address in use"
        );
        let e = StartError::Signals(std::io::Error::other("no"));
        assert_eq!(chain(&e), "cannot install signal handlers: no");
    }

    #[test]
    fn only_config_mistakes_are_the_operators() {
        let e = ReloadError::Admin {
            addr: "127.0.0.1:9090".parse().unwrap(),
            source: std::io::Error::other("in use"),
        };
        assert!(!e.is_config());
    }
}
