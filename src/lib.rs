//! vigil: one binary for an nginx + keepalived pair.

pub mod config;
pub mod vrrp;
