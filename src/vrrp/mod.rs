//! The VRRP speaker (RFC 5798 VRRPv3, RFC 3768 VRRPv2).

pub mod announce;
pub mod config;
pub mod discard;
pub mod error;
pub mod machine;
pub mod netif;
pub mod packet;
pub mod receive;
#[cfg(test)]
mod sim;
pub mod socket;
pub mod timers;
pub mod vip;
