//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod dns;
pub mod imported;
pub mod load;
pub mod netns;
pub mod prom;
pub mod tls;
pub mod vigil;
