//! The `[vrrp]` section: its file schema ([`file`]), its validation
//! ([`validate`]) and the validated form the speaker reads
//! ([`VrrpConfig`] and the types below).
//!
//! Validation collects every problem with its key path
//! (`vrrp.instance[0].priority`) instead of stopping at the first.

mod file;
mod protocol;
mod track;
mod validate;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::Duration;

pub use self::file::*;
pub use self::protocol::{Auth, Centiseconds, ChecksumForm, Version};
pub use self::validate::validate;

/// Validated `[vrrp]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VrrpConfig {
    pub instances: Vec<InstanceConfig>,
    pub sync_groups: Vec<SyncGroup>,
}

impl VrrpConfig {
    /// The sync group `instance` belongs to, if any.
    pub fn group_of(&self, instance: &str) -> Option<&SyncGroup> {
        self.sync_groups
            .iter()
            .find(|g| g.instances.iter().any(|i| i == instance))
    }
}

/// One validated virtual router.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceConfig {
    pub name: String,
    pub interface: String,
    /// Virtual Rtr ID, 1..=255 (RFC 5798 §5.2.3).
    pub vrid: u8,
    /// Configured priority, 1..=255 (255 = address owner).
    pub priority: u8,
    pub version: Version,
    pub advert_interval: Centiseconds,
    /// Advertised addresses: the VIPs of the first VIP's family (RFC 5798
    /// §5.2.9: one family per advert).
    pub vips: Vec<Vip>,
    /// VIPs of the other family: they follow the state but are not
    /// advertised (keepalived's `virtual_ipaddress_excluded`).
    pub excluded_vips: Vec<Vip>,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Non-empty: unicast mode (send to and accept only these).
    pub unicast_peers: Vec<IpAddr>,
    pub unicast_src_ip: Option<IpAddr>,
    /// Unicast mode: require TTL 255 from peers (default). `false` lets
    /// peers across a router in, as keepalived does.
    pub unicast_ttl_check: bool,
    pub garp: GarpConfig,
    pub notify: NotifyConfig,
    pub track: TrackConfig,
    /// v2 only.
    pub auth: Auth,
    /// v3 IPv4 checksum form sent (both accepted).
    pub checksum_form: ChecksumForm,
    /// Fast detection of a dead Master's process (`death_probe`), off by
    /// default.
    pub death_probe: Option<DeathProbe>,
}

/// `death_probe`: a Backup holds a TCP connection to its Master's vigil
/// and takes over as soon as the Master's kernel has closed it and refuses
/// new ones (see `vrrp::death_probe` for why that is safe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeathProbe {
    /// The TCP port every node listens on for it (the same on all nodes).
    pub port: u16,
}

impl DeathProbe {
    pub const DEFAULT_PORT: u16 = 5798;
}

impl InstanceConfig {
    /// Whether adverts are IPv6 (v3 only).
    pub fn is_ipv6(&self) -> bool {
        self.vips.first().is_some_and(|v| v.addr.is_ipv6())
    }

    /// Every VIP this instance installs, advertised ones first.
    pub fn all_vips(&self) -> impl Iterator<Item = &Vip> {
        self.vips.iter().chain(&self.excluded_vips)
    }
}

/// A virtual address with the prefix length it is installed with
/// (default /32 and /128, so it never becomes a subnet's primary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Default delay of the second gratuitous ARP burst: just past Linux's
/// default ARP `locktime` (1 s).
pub const GARP_SECOND_BURST: Duration = Duration::from_millis(1200);

/// Gratuitous ARP / unsolicited NA schedule on becoming Master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpConfig {
    /// Second burst this long after the first (0 = none; keepalived's
    /// `garp_master_delay`).
    pub delay: Duration,
    /// Frames per burst, per address (`garp_master_repeat`).
    pub repeat: u32,
    /// Spacing between frames of a burst (`garp_interval`).
    pub interval: Duration,
    /// Repeat a burst this often while Master (0 = never;
    /// `garp_master_refresh`).
    pub refresh: Duration,
}

impl Default for GarpConfig {
    fn default() -> Self {
        Self {
            // Linux ignores an ARP update for an entry changed less than
            // `locktime` (1 s) ago, so a failover shortly after the client
            // learned the VIP's MAC would go unheard without a second burst.
            delay: GARP_SECOND_BURST,
            repeat: 5,
            interval: Duration::from_millis(100),
            refresh: Duration::ZERO,
        }
    }
}

/// Commands run (through `sh -c`) on transitions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotifyConfig {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
    pub stop: Option<String>,
}

/// What a failing tracked object does (keepalived semantics): weight 0 /
/// `"fault"` puts the instance in Fault; a negative weight is added while
/// failing; a positive weight is added while healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackEffect {
    Fault,
    Weight(i32),
}

/// `[vrrp.instance.track]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrackConfig {
    pub interfaces: Vec<(String, TrackEffect)>,
    pub scripts: Vec<ScriptConfig>,
    /// Proxy self-probe and what a failure does (acted on by the proxy
    /// through `Speaker::set_external`); `None` = off.
    pub proxy: Option<TrackEffect>,
    pub probe_interval: Duration,
    /// A worker or probe request silent for longer than this fails.
    pub probe_timeout: Duration,
    /// Upstream-pool health weights (acted on by the proxy).
    pub upstreams: Vec<(String, TrackEffect)>,
}

/// A health-check command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptConfig {
    pub run: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub effect: TrackEffect,
    /// Consecutive failures before it counts as failing.
    pub fall: u32,
    /// Consecutive successes before it counts as healthy again.
    pub rise: u32,
}

/// A validated sync group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    pub name: String,
    pub instances: Vec<String>,
}
