//! vigil: one binary for an nginx + keepalived pair.

pub mod admin;
pub mod app;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod import;
pub(crate) mod liveness;
pub mod malloc_tuning;
pub mod metrics;
pub mod privileges;
pub mod proxy;
pub mod spare_blocks;
pub mod status_table;
pub mod vrrp;
