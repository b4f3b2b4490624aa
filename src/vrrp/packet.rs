//! The VRRP advertisement codec: VRRPv3 (RFC 5798 §5) for IPv4 and IPv6 and
//! VRRPv2 (RFC 3768 §5) for IPv4.
//!
//! Pure functions over byte slices: no sockets, no clock. Decoding never
//! panics on any input (property-tested, CARP included, which shares IP
//! protocol 112); every rejection names the RFC 8347 discard reason.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! v3: |(rsvd) |     Max Adver Int     |          Checksum           |
//! v2: |   Auth Type   |   Adver Int   |          Checksum           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      IPvX Address(es)                         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! v2 only:             Authentication Data (8 octets)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::discard::DiscardReason;
use super::timers::Centiseconds;
pub use crate::config::vrrp::{Auth, ChecksumForm, Version};

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4; shared with CARP).
pub const IPPROTO_VRRP: u8 = 112;
/// IPv4 multicast group (RFC 5798 §5.1.1.2).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group (RFC 5798 §5.1.2.2).
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit sent and required on receipt (RFC 5798 §5.1.1.3, §7.1).
pub const VRRP_TTL: u8 = 255;
/// Type 1 is the only type defined (RFC 5798 §5.2.2).
const TYPE_ADVERTISEMENT: u8 = 1;
/// Fixed header before the addresses.
const HEADER_LEN: usize = 8;
/// VRRPv2 authentication data after the addresses (RFC 3768 §5.3.10).
const V2_AUTH_LEN: usize = 8;

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl Auth {
    fn type_byte(self) -> u8 {
        match self {
            Auth::None => 0,
            Auth::Password(_) => 1,
            Auth::Other(t) => t,
        }
    }
}

/// The virtual addresses carried in an advert: one family per packet, the
/// family of the IP header (RFC 5798 §5.2.9).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddressList {
    V4(Vec<Ipv4Addr>),
    V6(Vec<Ipv6Addr>),
}

impl AddressList {
    pub fn len(&self) -> usize {
        match self {
            AddressList::V4(a) => a.len(),
            AddressList::V6(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same set of addresses, in any order.
    pub fn same_set(&self, other: &AddressList) -> bool {
        fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
            let mut v = v.to_vec();
            v.sort();
            v
        }
        match (self, other) {
            (AddressList::V4(a), AddressList::V4(b)) => sorted(a) == sorted(b),
            (AddressList::V6(a), AddressList::V6(b)) => sorted(a) == sorted(b),
            _ => false,
        }
    }
}

/// One VRRP ADVERTISEMENT, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Advertisement {
    pub version: Version,
    /// Virtual Rtr ID (§5.2.3).
    pub vrid: u8,
    /// 255 = address owner, 1..=254 backup, 0 = master resigning (§5.2.4).
    pub priority: u8,
    /// Max Adver Int (v3, §5.2.7) or Adver Int × 100 (v2, §5.3.7).
    pub interval: Centiseconds,
    /// v2 only; always [`Auth::None`] in v3, which has no such field.
    pub auth: Auth,
    pub addresses: AddressList,
}

/// A received VRRP datagram with the IP-layer facts the checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
    /// The VRRP message (after the IP header).
    pub payload: &'a [u8],
}

/// A successfully decoded advert and how its checksum was formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub advert: Advertisement,
    pub checksum_form: ChecksumForm,
}

/// Encodes `advert` as sent from `src` to `dst` (which only matter for the
/// pseudo-header checksum). `v4_form` picks the v3 IPv4 checksum form.
pub fn encode(advert: &Advertisement, src: IpAddr, dst: IpAddr, v4_form: ChecksumForm) -> Vec<u8> {
    let count = advert.addresses.len().min(255);
    let mut buf = Vec::with_capacity(HEADER_LEN + 16 * count + V2_AUTH_LEN);
    buf.push((advert.version.number() << 4) | TYPE_ADVERTISEMENT);
    buf.push(advert.vrid);
    buf.push(advert.priority);
    buf.push(count as u8);
    match advert.version {
        Version::V3 => {
            // §5.2.6: rsvd MUST be zero; §5.2.7: 12-bit centiseconds.
            let interval = advert.interval.get().min(Centiseconds::V3_MAX);
            buf.extend_from_slice(&interval.to_be_bytes());
        }
        Version::V2 => {
            buf.push(advert.auth.type_byte());
            buf.push(advert.interval.whole_seconds());
        }
    }
    buf.extend_from_slice(&[0, 0]); // checksum, filled below
    match &advert.addresses {
        AddressList::V4(addrs) => addrs
            .iter()
            .take(count)
            .for_each(|a| buf.extend(a.octets())),
        AddressList::V6(addrs) => addrs
            .iter()
            .take(count)
            .for_each(|a| buf.extend(a.octets())),
    }
    if advert.version == Version::V2 {
        match advert.auth {
            Auth::Password(pass) => buf.extend_from_slice(&pass),
            // RFC 3768 §5.3.10: "SHOULD be set to zero on transmission".
            Auth::None | Auth::Other(_) => buf.extend_from_slice(&[0; V2_AUTH_LEN]),
        }
    }
    let sum = checksum(&buf, pseudo_header_for(advert.version, src, dst, v4_form));
    buf[6..8].copy_from_slice(&sum.to_be_bytes());
    buf
}

/// Decodes and verifies a VRRP message: version, type, length and checksum
/// (RFC 5798 §7.1 checks 2–4; RFC 3768 §7.1). TTL, VRID, authentication and
/// configuration checks need local state and live in `receive.rs`.
pub fn decode(env: &Envelope<'_>) -> Result<Decoded, DiscardReason> {
    let buf = env.payload;
    let first = *buf.first().ok_or(DiscardReason::PacketLength)?;
    let version = match first >> 4 {
        3 => Version::V3,
        // v2 is IPv4 only (RFC 3768 §5.1).
        2 if env.src.is_ipv4() => Version::V2,
        _ => return Err(DiscardReason::Version),
    };
    if first & 0x0f != TYPE_ADVERTISEMENT {
        return Err(DiscardReason::InvalidType);
    }
    if buf.len() < HEADER_LEN {
        return Err(DiscardReason::PacketLength);
    }
    let count = usize::from(buf[3]);
    let addr_len = if env.src.is_ipv4() { 4 } else { 16 };
    let auth_len = if version == Version::V2 {
        V2_AUTH_LEN
    } else {
        0
    };
    // The packet must hold exactly the header, the addresses it claims and
    // (v2) the auth data. This is also what rejects CARP (36 octets with a
    // different layout) before its fields are misread.
    if buf.len() != HEADER_LEN + count * addr_len + auth_len {
        return Err(DiscardReason::PacketLength);
    }
    let checksum_form = verify_checksum(version, env)?;
    let (interval, auth) = match version {
        Version::V3 => {
            let cs = u16::from_be_bytes([buf[4], buf[5]]) & Centiseconds::V3_MAX;
            // RFC 9568 erratum 8301: a zero interval is invalid.
            (
                Centiseconds::new(cs).ok_or(DiscardReason::Interval)?,
                Auth::None,
            )
        }
        Version::V2 => {
            let cs = u16::from(buf[5]) * 100;
            let auth = match buf[4] {
                0 => Auth::None,
                1 => {
                    let mut pass = [0u8; 8];
                    pass.copy_from_slice(&buf[buf.len() - V2_AUTH_LEN..]);
                    Auth::Password(pass)
                }
                other => Auth::Other(other),
            };
            (Centiseconds::new(cs).ok_or(DiscardReason::Interval)?, auth)
        }
    };
    // RFC 9568 erratum 8299: an advert with no address is invalid.
    if count == 0 {
        return Err(DiscardReason::AddressList);
    }
    let addr_bytes = &buf[HEADER_LEN..HEADER_LEN + count * addr_len];
    let addresses = if addr_len == 4 {
        AddressList::V4(
            addr_bytes
                .chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect(),
        )
    } else {
        AddressList::V6(
            addr_bytes
                .chunks_exact(16)
                .map(|c| {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    Ipv6Addr::from(o)
                })
                .collect(),
        )
    };
    Ok(Decoded {
        advert: Advertisement {
            version,
            vrid: buf[1],
            priority: buf[2],
            interval,
            auth,
            addresses,
        },
        checksum_form,
    })
}

/// Splits a datagram read from an IPv4 raw socket (which includes the IP
/// header) into an [`Envelope`]. Fragments, truncated headers and a total
/// length longer than what was read are length errors; Ethernet padding
/// beyond the total length is cut off.
pub fn parse_ipv4_datagram(buf: &[u8]) -> Result<Envelope<'_>, DiscardReason> {
    if buf.len() < 20 || buf[0] >> 4 != 4 {
        return Err(DiscardReason::PacketLength);
    }
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let fragment = u16::from_be_bytes([buf[6], buf[7]]) & 0x3fff; // MF + offset
    if ihl < 20 || total < ihl || total > buf.len() || fragment != 0 || buf[9] != IPPROTO_VRRP {
        return Err(DiscardReason::PacketLength);
    }
    Ok(Envelope {
        src: IpAddr::V4(Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15])),
        dst: IpAddr::V4(Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19])),
        hop_limit: buf[8],
        payload: &buf[ihl..total],
    })
}

/// The pseudo-header a checksum covers, if any.
enum PseudoHeader {
    None,
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

fn pseudo_header_for(
    version: Version,
    src: IpAddr,
    dst: IpAddr,
    v4_form: ChecksumForm,
) -> PseudoHeader {
    match (version, src, dst) {
        (Version::V2, _, _) => PseudoHeader::None,
        (Version::V3, IpAddr::V6(src), IpAddr::V6(dst)) => PseudoHeader::V6 { src, dst },
        (Version::V3, IpAddr::V4(src), IpAddr::V4(dst))
            if v4_form == ChecksumForm::PseudoHeader =>
        {
            PseudoHeader::V4 { src, dst }
        }
        _ => PseudoHeader::None,
    }
}

/// Verifies the checksum (RFC 5798 §5.2.8; RFC 3768 §5.3.8). For v3 over
/// IPv4 both forms are accepted, so vigil sits next to keepalived/FRR
/// (pseudo-header) and RFC 9568 / Cisco / Juniper (message only).
fn verify_checksum(version: Version, env: &Envelope<'_>) -> Result<ChecksumForm, DiscardReason> {
    let ok = |form| {
        checksum(
            env.payload,
            pseudo_header_for(version, env.src, env.dst, form),
        ) == 0
    };
    match (version, env.src) {
        (Version::V3, IpAddr::V4(_)) => {
            if ok(ChecksumForm::PseudoHeader) {
                Ok(ChecksumForm::PseudoHeader)
            } else if ok(ChecksumForm::MessageOnly) {
                Ok(ChecksumForm::MessageOnly)
            } else {
                Err(DiscardReason::Checksum)
            }
        }
        (Version::V3, IpAddr::V6(_)) if ok(ChecksumForm::PseudoHeader) => {
            Ok(ChecksumForm::PseudoHeader)
        }
        (Version::V2, _) if ok(ChecksumForm::MessageOnly) => Ok(ChecksumForm::MessageOnly),
        _ => Err(DiscardReason::Checksum),
    }
}

/// The Internet checksum (RFC 1071) of `data` preceded by `pseudo`.
/// Computing it over a message whose checksum field is filled in gives 0
/// when the checksum is right.
fn checksum(data: &[u8], pseudo: PseudoHeader) -> u16 {
    let mut sum: u32 = 0;
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    match pseudo {
        PseudoHeader::None => {}
        // RFC 768-style IPv4 pseudo-header: src, dst, zero, protocol, length.
        PseudoHeader::V4 { src, dst } => {
            sum += words(&src.octets()) + words(&dst.octets());
            sum += u32::from(IPPROTO_VRRP) + (len & 0xffff);
        }
        // RFC 8200 §8.1: src, dst, 32-bit length, 3 zero octets, next header.
        PseudoHeader::V6 { src, dst } => {
            sum += words(&src.octets()) + words(&dst.octets());
            sum += (len >> 16) + (len & 0xffff) + u32::from(IPPROTO_VRRP);
        }
    }
    sum += words(data);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One's complement partial sum of big-endian 16-bit words (odd length
/// padded with a zero octet). Folds as it goes so it cannot overflow.
fn words(data: &[u8]) -> u32 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

#[cfg(test)]
mod tests;
