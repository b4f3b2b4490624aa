//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod tls;
pub mod vigil;
