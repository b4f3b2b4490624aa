//! vigil: one binary for an nginx + keepalived pair.

pub mod admin;
pub mod app;
pub mod config;
#[cfg(test)]
mod future_size;
#[doc(hidden)]
pub mod fuzzing;
pub mod import;
pub(crate) mod liveness;
pub mod malloc_tuning;
pub mod metrics;
pub mod privileges;
pub mod proxy;
pub mod status_table;
pub mod vrrp;
