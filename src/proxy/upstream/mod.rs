//! Upstream pools: choosing a server, health, pooled connections.

pub mod balance;
