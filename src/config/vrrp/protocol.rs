//! The protocol values a `[vrrp]` instance chooses, as plain data: the
//! version, v2 authentication, the v3 IPv4 checksum form and the advert
//! interval. Validation produces them; the codec (`vrrp::packet`) and the
//! timers (`vrrp::timers`) put them on the wire and compute with them.

use std::fmt;
use std::time::Duration;

/// Protocol version (RFC 5798 §5.2.1, RFC 3768 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V2,
    V3,
}

/// VRRPv2 authentication (RFC 3768 §5.3.6). Deprecated by the RFC and
/// absent from v3, but keepalived v2 configs in the wild mostly use
/// `auth_type PASS`, and keepalived drops adverts whose type differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Type 0: no authentication; data zero on send, ignored on receipt.
    None,
    /// Type 1: an 8-octet clear-text password (RFC 2338 §5.3.6.1),
    /// NUL-padded, as keepalived's `auth_type PASS` sends it.
    Password([u8; 8]),
    /// Any other type (2 was IP-AH): never sent, always rejected.
    Other(u8),
}

/// How a VRRPv3 *IPv4* checksum is computed. RFC 5798 §5.2.8 says "with a
/// pseudo-header" without naming a family; keepalived and FRR read it as the
/// IPv4 pseudo-header, Cisco/Juniper and RFC 9568 §5.2.8 as message only.
/// IPv6 always uses the pseudo-header, v2 never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumForm {
    /// RFC 5798 as keepalived and FRR implement it (their default).
    #[default]
    PseudoHeader,
    /// RFC 9568 / keepalived's `v3_checksum_as_v2`.
    MessageOnly,
}

/// An advertisement interval in centiseconds, the unit of the VRRPv3
/// "Max Adver Int" field (RFC 5798 §5.2.7): 1..=4095, i.e. 10 ms..=40.95 s.
///
/// VRRPv2 carries whole seconds (RFC 3768 §5.3.7); the codec converts those
/// to centiseconds on decode so the state machine works in one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Centiseconds(u16);

impl Centiseconds {
    /// Largest value the 12-bit v3 field can hold (40.95 s).
    pub const V3_MAX: u16 = 0x0fff;
    /// keepalived's and the RFC's default: 1 s.
    pub const ONE_SECOND: Centiseconds = Centiseconds(100);

    /// A non-zero interval. Zero is not an interval (RFC 9568 erratum 8301).
    pub const fn new(cs: u16) -> Option<Self> {
        if cs == 0 { None } else { Some(Self(cs)) }
    }

    pub const fn get(self) -> u16 {
        self.0
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.0) * 10)
    }

    /// The interval in whole seconds, as VRRPv2 sends it (saturating; config
    /// validation only lets whole seconds 1..=255 through for v2).
    pub fn whole_seconds(self) -> u8 {
        u8::try_from((self.0 / 100).max(1)).unwrap_or(u8::MAX)
    }

    /// Converts a duration that is a whole number of centiseconds.
    pub fn from_duration(d: Duration) -> Option<Self> {
        let micros = d.as_micros();
        if micros % 10_000 != 0 {
            return None;
        }
        u16::try_from(micros / 10_000).ok().and_then(Self::new)
    }
}

impl fmt::Display for Centiseconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}s", self.0 / 100, self.0 % 100)
    }
}
