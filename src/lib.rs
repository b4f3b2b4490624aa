//! vigil: one binary for an nginx + keepalived pair.

pub mod app;
pub mod config;
pub mod proxy;
pub mod vrrp;
