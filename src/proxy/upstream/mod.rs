//! Upstream pools: choosing a server, health, pooled connections.

pub mod balance;
pub mod checker;
pub mod conn;
pub mod exchange;
pub mod h1;
pub mod head_timer;
pub mod health;
pub mod peer_metrics;
pub mod pool;
pub mod resolve;

pub use pool::{Peer, PickKey, UpstreamPool};
