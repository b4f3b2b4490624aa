//! vigil: one binary for an nginx + keepalived pair.

pub mod config;
pub mod proxy;
pub mod vrrp;
