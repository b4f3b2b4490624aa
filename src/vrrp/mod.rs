//! The VRRP speaker: VRRPv3 (RFC 5798, with RFC 9568 where it matters on
//! the wire) for IPv4 and IPv6, and VRRPv2 (RFC 3768) for IPv4.
//!
//! # Layout
//!
//! Pure (no sockets, no clock; unit- and property-tested):
//! - [`packet`]: the advertisement codec and checksums.
//! - [`receive`]: the RFC 5798 §7.1 receive checks that need configuration.
//! - [`discard`]: discard reasons, counters, rate-limited logging.
//! - [`timers`]: Skew_Time and Master_Down_Interval arithmetic.
//! - [`machine`]: the state machine, `step(event, now) -> actions`.
//! - [`track`]: keepalived-style priority weights and faults ([`track::health`]).
//!
//! I/O (integration-tested in network namespaces):
//! - [`socket`]: raw protocol-112 sockets.
//! - [`vip`]: VIPs through rtnetlink.
//! - [`guardian`]: the process that removes the VIPs if vigil crashes.
//! - [`death_probe`]: a Backup's TCP watch on its Master's vigil, which
//!   finds a dead process in milliseconds (its verdict logic,
//!   `DeathWatch`, is pure and tested over every short sequence).
//! - [`announce`]: gratuitous ARP / unsolicited NA.
//! - [`netif`]: interface facts and capability checks.
//! - `instance`: one task per virtual router, gluing the above.
//! - [`instance_lock`]: one speaker per (interface, VRID, family) on a host.
//! - [`speaker`]: the [`Speaker`] handle (a `[vrrp]`-only config runs
//!   through `App` like any other: a proxy with no listeners).

pub(crate) mod announce;
pub mod death_probe;
pub(crate) mod discard;
pub mod error;
pub mod guardian;
mod instance;
pub(crate) mod instance_lock;
pub mod machine;
pub(crate) mod netif;
pub(crate) mod packet;
pub(crate) mod receive;
#[cfg(test)]
mod sim;
pub(crate) mod socket;
pub mod speaker;
pub(crate) mod timers;
pub mod track;
pub(crate) mod vip;

pub use error::VrrpError;
pub use instance::{Counters, ReleaseHook, TransitionRecord};
pub use machine::State;
pub use speaker::{CounterSnapshot, InstanceStatus, Speaker};
pub use track::ExternalHealth;
