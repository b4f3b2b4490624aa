//! Why a received packet was dropped, counted per reason and logged at a
//! rate limit (RFC 5798 §7.1: "MUST discard"; RFC 9568 §7.1 asks for
//! rate-limited logging).
//!
//! Reason names follow the RFC 8347 (ietf-vrrp YANG) statistics where one
//! exists; the v2 authentication counters follow RFC 2787 (VRRP-MIB).

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A reason to discard a received packet. The set is fixed so counters can
/// be exported as one labelled metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiscardReason {
    /// TTL / hop limit ≠ 255 (§7.1; RFC 8347 `ip-ttl-errors`).
    IpTtl,
    /// Version not the instance's (§7.1; `version-errors`).
    Version,
    /// Shorter or longer than the header + addresses it claims (§7.1;
    /// `packet-length-errors`). Also malformed IP envelopes and CARP.
    PacketLength,
    /// Checksum does not verify (§7.1, §5.2.8; `checksum-errors`).
    Checksum,
    /// VRID not configured on the receiving interface (§7.1; `vrid-errors`).
    Vrid,
    /// Type ≠ 1 (§5.2.2; `invalid-type-pkts-rcvd`).
    InvalidType,
    /// Zero addresses (RFC 9568 erratum 8299), wrong family, or (v2) a list
    /// that differs from ours from a non-owner (RFC 3768 §7.1;
    /// `address-list-errors`).
    AddressList,
    /// v2: interval differs from ours (RFC 3768 §7.1); any version: zero
    /// (RFC 9568 erratum 8301) (`interval-errors`).
    Interval,
    /// v2: auth type differs from ours (RFC 3768 §7.1; RFC 2787
    /// `vrrpStatsAuthTypeMismatch`).
    AuthTypeMismatch,
    /// v2: password differs (RFC 2787 `vrrpStatsAuthFailures`).
    AuthFailure,
    /// Unicast mode: the source is not a configured `unicast_peer`
    /// (keepalived `check_unicast_src`; draft-abinabraham-vrrp-unicast §8.6),
    /// or a multicast advert reached a unicast instance and vice versa.
    UnknownPeer,
    /// The source is this node's own advert address: a forged packet, or
    /// our own looped back (keepalived logs these too).
    OwnAddress,
}

impl DiscardReason {
    /// Every reason, in a stable order (for counters and exporters).
    pub const ALL: [DiscardReason; 12] = [
        DiscardReason::IpTtl,
        DiscardReason::Version,
        DiscardReason::PacketLength,
        DiscardReason::Checksum,
        DiscardReason::Vrid,
        DiscardReason::InvalidType,
        DiscardReason::AddressList,
        DiscardReason::Interval,
        DiscardReason::AuthTypeMismatch,
        DiscardReason::AuthFailure,
        DiscardReason::UnknownPeer,
        DiscardReason::OwnAddress,
    ];

    /// Stable metric label (RFC 8347 leaf name where there is one).
    pub fn name(self) -> &'static str {
        match self {
            DiscardReason::IpTtl => "ip-ttl-errors",
            DiscardReason::Version => "version-errors",
            DiscardReason::PacketLength => "packet-length-errors",
            DiscardReason::Checksum => "checksum-errors",
            DiscardReason::Vrid => "vrid-errors",
            DiscardReason::InvalidType => "invalid-type-pkts-rcvd",
            DiscardReason::AddressList => "address-list-errors",
            DiscardReason::Interval => "interval-errors",
            DiscardReason::AuthTypeMismatch => "auth-type-mismatch",
            DiscardReason::AuthFailure => "auth-failures",
            DiscardReason::UnknownPeer => "unknown-peer",
            DiscardReason::OwnAddress => "own-address",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

impl fmt::Display for DiscardReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One counter per reason; readable at any time without locking.
#[derive(Debug, Default)]
pub struct DiscardCounters([AtomicU64; DiscardReason::ALL.len()]);

impl DiscardCounters {
    pub fn count(&self, reason: DiscardReason) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, reason: DiscardReason) -> u64 {
        self.0[reason.index()].load(Ordering::Relaxed)
    }
}

/// Logs at most one line per reason per `period`, saying how many were
/// suppressed in between, so a flood of bad packets cannot flood the log.
#[derive(Debug)]
pub struct RateLimitedLog {
    period: Duration,
    last: Mutex<[(Option<Instant>, u64); DiscardReason::ALL.len()]>,
}

impl RateLimitedLog {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new([(None, 0); DiscardReason::ALL.len()]),
        }
    }

    /// Returns `Some(suppressed)` when a line should be logged now.
    pub fn admit(&self, reason: DiscardReason, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut last[reason.index()];
        match slot.0 {
            Some(at) if now.duration_since(at) < self.period => {
                slot.1 += 1;
                None
            }
            _ => {
                let suppressed = slot.1;
                *slot = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_counters_independent() {
        let mut names: Vec<_> = DiscardReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DiscardReason::ALL.len());
        let c = DiscardCounters::default();
        c.count(DiscardReason::Checksum);
        c.count(DiscardReason::Checksum);
        c.count(DiscardReason::UnknownPeer);
        assert_eq!(c.get(DiscardReason::Checksum), 2);
        assert_eq!(c.get(DiscardReason::UnknownPeer), 1);
        assert_eq!(c.get(DiscardReason::IpTtl), 0);
    }

    #[test]
    fn log_is_rate_limited_per_reason() {
        let log = RateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(log.admit(DiscardReason::IpTtl, t0), Some(0));
        assert_eq!(
            log.admit(DiscardReason::IpTtl, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            log.admit(DiscardReason::IpTtl, t0 + Duration::from_secs(2)),
            None
        );
        assert_eq!(log.admit(DiscardReason::Checksum, t0), Some(0));
        assert_eq!(
            log.admit(DiscardReason::IpTtl, t0 + Duration::from_secs(11)),
            Some(2)
        );
    }
}
