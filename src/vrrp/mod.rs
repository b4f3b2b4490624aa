//! The VRRP speaker (RFC 5798 VRRPv3, RFC 3768 VRRPv2).

pub mod config;
pub mod discard;
pub mod machine;
pub mod packet;
pub mod receive;
#[cfg(test)]
mod sim;
pub mod timers;
