//! The VRRP speaker (RFC 5798 VRRPv3, RFC 3768 VRRPv2).
//!
//! Owned by the VRRP work (issue 3); see docs/ARCHITECTURE.md.

pub mod config;
