//! Entry points for the fuzz targets in `fuzz/` (docs/FUZZING.md): one
//! function per parser that reads bytes from the network or a file.
//!
//! Each takes arbitrary bytes, must never panic, and checks the invariants
//! its parser promises (a decoded advert encodes back to itself, a
//! normalized path has no `..` segment, a resolved range lies inside the
//! file, ...): a broken invariant panics, which the fuzzer reports as a
//! crash. They live in the crate, not in `fuzz/`, so they can reach
//! `pub(crate)` parsers and are compiled (and run on a seed corpus by the
//! unit tests below) in every build: a target cannot rot unnoticed.
//!
//! To add a target: a function here, a file in `fuzz/fuzz_targets/`, a
//! `[[bin]]` in `fuzz/Cargo.toml`, seeds in `fuzz/seeds/<target>/`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::config::Config;
use crate::import::files::Memory;
use crate::import::{Input, import};
use crate::proxy::static_files::fuzz as static_files;
use crate::proxy::uri_path::NormalizedPath;
use crate::vrrp::packet::{self, AddressList, Auth, Envelope, GROUP_V4, GROUP_V6, Version};
use crate::vrrp::receive::ReceivePolicy;
use crate::vrrp::timers::Centiseconds;

/// A raw IPv4 datagram as read from the protocol-112 socket: IP header
/// split off, then the advert decoded. A decoded advert must encode back
/// to the same advert.
pub fn vrrp_datagram(data: &[u8]) {
    let Ok(env) = packet::parse_ipv4_datagram(data) else {
        return;
    };
    assert!(env.payload.len() <= data.len());
    decode_and_round_trip(&env);
}

/// A VRRP message with its envelope taken from the first bytes: byte 0
/// picks the family and hop limit, then source and destination addresses
/// (4 or 16 bytes each), then the message. Reaches IPv6 and VRRPv3
/// checksums that the IPv4 datagram target only reaches through IPv4.
pub fn vrrp_message(data: &[u8]) {
    let Some((env, _)) = envelope(data) else {
        return;
    };
    decode_and_round_trip(&env);
}

/// The RFC 5798 §7.1 receive checks: byte 0..4 describe the instance's
/// policy (version, VRID, auth, unicast or multicast), the rest is an
/// envelope and message as in [`vrrp_message`].
pub fn vrrp_receive(data: &[u8]) {
    let [version, vrid, flags, interval, rest @ ..] = data else {
        return;
    };
    let Some((env, _)) = envelope(rest) else {
        return;
    };
    let version = if version & 1 == 0 {
        Version::V3
    } else {
        Version::V2
    };
    let addresses = match env.src {
        IpAddr::V4(_) => AddressList::V4(vec![Ipv4Addr::new(10, 0, 0, *vrid)]),
        IpAddr::V6(_) => AddressList::V6(vec![Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)]),
    };
    let policy = ReceivePolicy {
        version,
        vrid: *vrid,
        auth: match flags & 3 {
            0 => Auth::None,
            1 => Auth::Password(*b"secret\0\0"),
            _ => Auth::Other(flags >> 2),
        },
        // v2 intervals are whole seconds; 1..=255 s.
        interval: Centiseconds::new(u16::from(*interval).max(1) * 100)
            .unwrap_or(Centiseconds::ONE_SECOND),
        addresses,
        unicast_peers: if flags & 4 != 0 {
            vec![env.src]
        } else {
            vec![]
        },
        unicast_ttl_check: flags & 8 == 0,
        own: None,
    };
    if let Ok(accepted) = policy.check(&env) {
        // Whatever passed the checks is an advert of this router.
        assert_eq!(accepted.advert.vrid, policy.vrid);
        assert_eq!(accepted.advert.version, policy.version);
        assert_eq!(env.hop_limit, packet::VRRP_TTL);
        assert!(!accepted.advert.addresses.is_empty());
    }
}

/// The TOML config loader: parse and validate. Host names are not
/// resolved in fuzz builds (`cfg(fuzzing)` in the upstream validator),
/// so a run never waits on DNS.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Errors must render (they quote the offending line).
    if let Err(e) = Config::parse(text, Path::new("/nonexistent/fuzz/vigil.toml")) {
        let _ = e.to_string();
    }
}

/// `vigil import` on an nginx.conf: parsing, includes (none exist: each
/// is reported missing) and translation. A parse error names a line of
/// the file; a translation is valid TOML.
pub fn import_nginx(data: &[u8]) {
    import_one(data, false);
}

/// `vigil import` on a keepalived.conf, with the same invariants.
pub fn import_keepalived(data: &[u8]) {
    import_one(data, true);
}

fn import_one(data: &[u8], keepalived: bool) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = if keepalived {
        "/etc/keepalived/keepalived.conf"
    } else {
        "/etc/nginx/nginx.conf"
    };
    let files = Memory::new().with(path, text);
    let input = Input {
        nginx: (!keepalived).then(|| path.into()),
        keepalived: keepalived.then(|| path.into()),
        ..Input::default()
    };
    match import(&files, &input) {
        Err(e) => {
            let _ = e.to_string();
            let lines = text.lines().count() as u32 + 1;
            assert!(e.line <= lines, "line {} of {lines}: {e}", e.line);
        }
        Ok(imported) => {
            if let Err(e) = toml::from_str::<toml::Value>(&imported.toml) {
                panic!("not TOML: {e}\n{}", imported.toml);
            }
        }
    }
}

/// Request path normalization: a normalized path starts with `/`, has no
/// empty, `.` or `..` segment and no NUL, and normalizing it again (when
/// nothing is left to decode) changes nothing.
pub fn uri_path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = NormalizedPath::parse(raw) else {
        return;
    };
    let s = path.as_str();
    assert!(s.starts_with('/'), "{raw:?} -> {s:?}");
    assert!(!s.contains('\0'), "{raw:?} -> {s:?}");
    assert!(!s.contains("//"), "{raw:?} -> {s:?}");
    for segment in s.split('/') {
        assert!(segment != "." && segment != "..", "{raw:?} -> {s:?}");
    }
    if !s.contains('%') {
        let again = NormalizedPath::parse(s).map(|p| p.as_str().to_owned());
        assert_eq!(again.as_deref(), Ok(s), "{raw:?}");
    }
}

/// The PROXY protocol header parser: any bytes give a verdict, never a
/// panic; a complete header's length is within the input and every
/// shorter prefix of it is incomplete (so the socket reader never takes a
/// byte past the header).
pub fn proxy_protocol(data: &[u8]) {
    use crate::proxy::proxy_protocol::{Parsed, parse};
    if let Ok(Parsed::Complete(_, len)) = parse(data) {
        assert!(len <= data.len());
        for n in 0..len {
            assert_eq!(
                parse(&data[..n]),
                Ok(Parsed::Incomplete),
                "prefix of {n} bytes"
            );
        }
    }
}

/// `Range`: the first 8 bytes are the file size, the rest the header
/// value. Every resolved range lies inside the file and is never empty.
pub fn range_header(data: &[u8]) {
    static_files::range_header(data);
}

/// `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`
/// and `If-Range`: the input split at newlines into those five values,
/// evaluated against a file's validators.
pub fn conditional_headers(data: &[u8]) {
    static_files::conditional_headers(data);
}

/// Decodes `env`; a decoded advert must encode back to itself (with the
/// checksum form the decoder found).
fn decode_and_round_trip(env: &Envelope<'_>) {
    let Ok(decoded) = packet::decode(env) else {
        return;
    };
    let advert = &decoded.advert;
    assert!(!advert.addresses.is_empty());
    assert_eq!(
        matches!(advert.addresses, AddressList::V4(_)),
        env.src.is_ipv4()
    );
    let bytes = packet::encode(advert, env.src, env.dst, decoded.checksum_form);
    let again = packet::decode(&Envelope {
        payload: &bytes,
        ..*env
    });
    assert_eq!(again.as_ref(), Ok(&decoded), "re-encoded: {bytes:02x?}");
}

/// An envelope from the head of `data`; returns it and how many bytes the
/// head took.
fn envelope(data: &[u8]) -> Option<(Envelope<'_>, usize)> {
    let (&selector, rest) = data.split_first()?;
    let v6 = selector & 1 != 0;
    // Mostly the TTL the checks want, sometimes another.
    let hop_limit = if selector & 2 == 0 {
        packet::VRRP_TTL
    } else {
        selector
    };
    let multicast = selector & 4 == 0;
    let (src, dst, used) = if v6 {
        let src: [u8; 16] = rest.get(..16)?.try_into().ok()?;
        let dst = if multicast {
            IpAddr::V6(GROUP_V6)
        } else {
            let d: [u8; 16] = rest.get(16..32)?.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(d))
        };
        (
            IpAddr::V6(Ipv6Addr::from(src)),
            dst,
            if multicast { 16 } else { 32 },
        )
    } else {
        let src: [u8; 4] = rest.get(..4)?.try_into().ok()?;
        let dst = if multicast {
            IpAddr::V4(GROUP_V4)
        } else {
            let d: [u8; 4] = rest.get(4..8)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(d))
        };
        (
            IpAddr::V4(Ipv4Addr::from(src)),
            dst,
            if multicast { 4 } else { 8 },
        )
    };
    let payload = rest.get(used..)?;
    Some((
        Envelope {
            src,
            dst,
            hop_limit,
            payload,
        },
        1 + used,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::packet::ChecksumForm;

    /// Every seed in `fuzz/seeds/<target>/` goes through its entry point:
    /// the targets and their invariants run in every `cargo test`.
    #[test]
    fn every_seed_passes_its_target() {
        type Target = fn(&[u8]);
        let targets: &[(&str, Target)] = &[
            ("vrrp_datagram", vrrp_datagram),
            ("vrrp_message", vrrp_message),
            ("vrrp_receive", vrrp_receive),
            ("config_toml", config_toml),
            ("uri_path", uri_path),
            ("range_header", range_header),
            ("conditional_headers", conditional_headers),
            ("proxy_protocol", proxy_protocol),
            ("import_nginx", import_nginx),
            ("import_keepalived", import_keepalived),
        ];
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        for (name, target) in targets {
            let dir = root.join(name);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let mut count = 0;
            for entry in entries {
                let path = entry.unwrap().path();
                target(&std::fs::read(&path).unwrap());
                count += 1;
            }
            assert!(count > 0, "no seed for {name}");
        }
    }

    #[test]
    fn a_valid_advert_survives_the_round_trip() {
        let advert = packet::Advertisement {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval: Centiseconds::new(100).unwrap(),
            auth: Auth::None,
            addresses: AddressList::V4(vec![Ipv4Addr::new(10, 0, 0, 51)]),
        };
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let bytes = packet::encode(
            &advert,
            src,
            IpAddr::V4(GROUP_V4),
            ChecksumForm::PseudoHeader,
        );
        let mut input = vec![0u8, 10, 0, 0, 2];
        input.extend_from_slice(&bytes);
        vrrp_message(&input);
        let decoded = packet::decode(&envelope(&input).unwrap().0).unwrap();
        assert_eq!(decoded.advert, advert);
    }
}
