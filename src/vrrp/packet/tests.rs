use proptest::prelude::*;

use super::*;

fn cs(v: u16) -> Centiseconds {
    Centiseconds::new(v).unwrap()
}

const SRC4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 231, 1, 2));
const DST4: IpAddr = IpAddr::V4(GROUP_V4);

fn v4_advert(version: Version) -> Advertisement {
    Advertisement {
        version,
        vrid: 51,
        priority: 100,
        interval: cs(100),
        auth: Auth::None,
        addresses: AddressList::V4(vec![Ipv4Addr::new(192, 168, 56, 100)]),
    }
}

fn env<'a>(src: IpAddr, dst: IpAddr, payload: &'a [u8]) -> Envelope<'a> {
    Envelope {
        src,
        dst,
        hop_limit: 255,
        payload,
    }
}

#[test]
fn v2_fixed_vector() {
    // Worked by hand from RFC 3768 §5.1: 0x21 = version 2, type 1.
    let bytes = encode(
        &v4_advert(Version::V2),
        SRC4,
        DST4,
        ChecksumForm::PseudoHeader,
    );
    assert_eq!(
        bytes,
        [
            0x21, 51, 100, 1, // version/type, VRID, priority, count
            0, 1, 0x81, 0xbd, // auth type 0, 1 s, checksum
            192, 168, 56, 100, // address
            0, 0, 0, 0, 0, 0, 0, 0, // auth data
        ]
    );
    let d = decode(&env(SRC4, DST4, &bytes)).unwrap();
    assert_eq!(d.advert, v4_advert(Version::V2));
}

#[test]
fn v3_ipv4_both_checksum_forms() {
    let a = v4_advert(Version::V3);
    let pseudo = encode(&a, SRC4, DST4, ChecksumForm::PseudoHeader);
    let plain = encode(&a, SRC4, DST4, ChecksumForm::MessageOnly);
    // Same bytes except the checksum.
    assert_eq!(pseudo[..6], plain[..6]);
    assert_eq!(pseudo[8..], plain[8..]);
    assert_eq!(&plain[..8], &[0x31, 51, 100, 1, 0x00, 100, 0x71, 0x5a]);
    assert_ne!(pseudo[6..8], plain[6..8]);
    let d = decode(&env(SRC4, DST4, &pseudo)).unwrap();
    assert_eq!(d.checksum_form, ChecksumForm::PseudoHeader);
    assert_eq!(d.advert, a);
    let d = decode(&env(SRC4, DST4, &plain)).unwrap();
    assert_eq!(d.checksum_form, ChecksumForm::MessageOnly);
    // The pseudo-header binds the addresses: another destination fails the
    // pseudo-header form (and the message-only form too).
    let other = IpAddr::V4(Ipv4Addr::new(10, 231, 1, 3));
    assert_eq!(
        decode(&env(SRC4, other, &pseudo)),
        Err(DiscardReason::Checksum)
    );
}

#[test]
fn keepalived_v3_ipv4_packet() {
    // Captured with tcpdump from keepalived 2.2.7 (Debian 12) in a netns:
    // `version 3`, vrid 51, priority 100, advert_int 1, VIP 10.231.99.100,
    // sent from 10.231.99.1 to 224.0.0.18 — IP header included.
    let dgram: [u8; 32] = [
        0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x6c, 0xb2, 0x0a, 0xe7, 0x63,
        0x01, //
        0xe0, 0x00, 0x00, 0x12, 0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0xad, 0xa4, 0x0a, 0xe7, 0x63,
        0x64,
    ];
    let e = parse_ipv4_datagram(&dgram).unwrap();
    assert_eq!(e.hop_limit, 255);
    let src = IpAddr::V4(Ipv4Addr::new(10, 231, 99, 1));
    assert_eq!(e.src, src);
    let d = decode(&e).unwrap();
    // keepalived's default v3 IPv4 checksum includes the pseudo-header.
    assert_eq!(d.checksum_form, ChecksumForm::PseudoHeader);
    assert_eq!(d.advert.vrid, 51);
    assert_eq!(d.advert.priority, 100);
    assert_eq!(d.advert.interval, cs(100));
    assert_eq!(
        d.advert.addresses,
        AddressList::V4(vec![Ipv4Addr::new(10, 231, 99, 100)])
    );
    // And we produce the very same bytes.
    assert_eq!(
        encode(&d.advert, src, DST4, ChecksumForm::PseudoHeader),
        e.payload
    );
}

#[test]
fn keepalived_v2_pass_packet() {
    // keepalived 2.2.7, `version 2`, `auth_type PASS`, `auth_pass secret12`,
    // vrid 52, priority 150, advert_int 1, VIP 10.231.99.100 (tcpdump).
    let dgram: [u8; 40] = [
        0x45, 0xc0, 0x00, 0x28, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x6c, 0xaa, 0x0a, 0xe7, 0x63,
        0x01, //
        0xe0, 0x00, 0x00, 0x12, 0x21, 0x34, 0x96, 0x01, 0x01, 0x01, 0x6b, 0xff, 0x0a, 0xe7, 0x63,
        0x64, //
        b's', b'e', b'c', b'r', b'e', b't', b'1', b'2',
    ];
    let e = parse_ipv4_datagram(&dgram).unwrap();
    let a = Advertisement {
        version: Version::V2,
        vrid: 52,
        priority: 150,
        interval: cs(100),
        auth: Auth::Password(*b"secret12"),
        addresses: AddressList::V4(vec![Ipv4Addr::new(10, 231, 99, 100)]),
    };
    assert_eq!(decode(&e).unwrap().advert, a);
    assert_eq!(
        encode(&a, e.src, e.dst, ChecksumForm::PseudoHeader),
        e.payload
    );
}

#[test]
fn v3_ipv6_uses_the_rfc8200_pseudo_header() {
    let src: IpAddr = "fe80::1".parse().unwrap();
    let dst = IpAddr::V6(GROUP_V6);
    let a = Advertisement {
        version: Version::V3,
        vrid: 7,
        priority: 200,
        interval: cs(10),
        auth: Auth::None,
        addresses: AddressList::V6(vec![
            "fd00::100".parse().unwrap(),
            "fd00::101".parse().unwrap(),
        ]),
    };
    let bytes = encode(&a, src, dst, ChecksumForm::MessageOnly); // form is IPv4-only
    assert_eq!(bytes.len(), 8 + 32);
    let d = decode(&env(src, dst, &bytes)).unwrap();
    assert_eq!(d.advert, a);
    assert_eq!(d.checksum_form, ChecksumForm::PseudoHeader);
    // A message-only checksum is not valid for IPv6.
    let mut plain = bytes.clone();
    plain[6..8].copy_from_slice(&[0, 0]);
    let sum = checksum(&plain, PseudoHeader::None);
    plain[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(decode(&env(src, dst, &plain)), Err(DiscardReason::Checksum));
}

#[test]
fn rejects_each_malformation() {
    let good = encode(
        &v4_advert(Version::V3),
        SRC4,
        DST4,
        ChecksumForm::PseudoHeader,
    );
    let e = |b: &[u8]| decode(&env(SRC4, DST4, b)).unwrap_err();
    assert_eq!(e(&[]), DiscardReason::PacketLength);
    assert_eq!(e(&good[..7]), DiscardReason::PacketLength);
    assert_eq!(e(&good[..11]), DiscardReason::PacketLength);
    let mut long = good.clone();
    long.push(0);
    assert_eq!(e(&long), DiscardReason::PacketLength);
    let mut v = good.clone();
    v[0] = 0x41;
    assert_eq!(e(&v), DiscardReason::Version);
    v[0] = 0x11;
    assert_eq!(e(&v), DiscardReason::Version);
    v[0] = 0x32;
    assert_eq!(e(&v), DiscardReason::InvalidType);
    let mut c = good.clone();
    c[9] ^= 0xff;
    assert_eq!(e(&c), DiscardReason::Checksum);
    // Zero interval (erratum 8301) with a valid checksum.
    let mut z = good.clone();
    z[4] = 0xf0; // reserved bits set: ignored
    z[5] = 0;
    z[6..8].copy_from_slice(&[0, 0]);
    let sum = checksum(&z, PseudoHeader::None);
    z[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(e(&z), DiscardReason::Interval);
    // Zero addresses (erratum 8299).
    let mut none = vec![0x31, 51, 100, 0, 0, 100, 0, 0];
    let sum = checksum(&none, PseudoHeader::None);
    none[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(e(&none), DiscardReason::AddressList);
    // v2 over IPv6 does not exist.
    let v2 = encode(
        &v4_advert(Version::V2),
        SRC4,
        DST4,
        ChecksumForm::PseudoHeader,
    );
    let src6: IpAddr = "fe80::1".parse().unwrap();
    assert_eq!(
        decode(&env(src6, IpAddr::V6(GROUP_V6), &v2)),
        Err(DiscardReason::Version)
    );
}

#[test]
fn reserved_bits_are_ignored_on_receipt() {
    let a = v4_advert(Version::V3);
    let mut b = encode(&a, SRC4, DST4, ChecksumForm::MessageOnly);
    b[4] |= 0xf0;
    b[6..8].copy_from_slice(&[0, 0]);
    let sum = checksum(&b, PseudoHeader::None);
    b[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(decode(&env(SRC4, DST4, &b)).unwrap().advert, a);
}

/// An OpenBSD CARP advertisement (carp(4)): same protocol 112, same group,
/// first octet 0x21 like VRRPv2, 36 octets of another layout.
fn carp_packet() -> Vec<u8> {
    let mut p = vec![
        0x21, // version 2, type 1 (CARP_ADVERTISEMENT)
        1,    // vhid
        0,    // advskew
        7,    // authlen (32-bit words)
        0,    // pad
        1,    // advbase
        0, 0, // checksum
    ];
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 42]); // counter
    p.extend_from_slice(&[0xab; 20]); // SHA1 HMAC
    let sum = checksum(&p, PseudoHeader::None);
    p[6..8].copy_from_slice(&sum.to_be_bytes());
    p
}

#[test]
fn carp_is_rejected_cleanly() {
    let carp = carp_packet();
    assert_eq!(carp.len(), 36);
    assert_eq!(
        decode(&env(SRC4, DST4, &carp)),
        Err(DiscardReason::PacketLength)
    );
}

fn ipv4_datagram(ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut d = vec![0x45, 0xc0];
    d.extend_from_slice(&total.to_be_bytes());
    d.extend_from_slice(&[0, 0, 0, 0, ttl, IPPROTO_VRRP, 0, 0]);
    d.extend_from_slice(&[10, 231, 1, 2, 224, 0, 0, 18]);
    d.extend_from_slice(payload);
    d
}

#[test]
fn ipv4_envelope() {
    let payload = encode(
        &v4_advert(Version::V3),
        SRC4,
        DST4,
        ChecksumForm::PseudoHeader,
    );
    let mut dgram = ipv4_datagram(255, &payload);
    dgram.extend_from_slice(&[0; 6]); // Ethernet padding after the datagram
    let e = parse_ipv4_datagram(&dgram).unwrap();
    assert_eq!(e.src, SRC4);
    assert_eq!(e.dst, DST4);
    assert_eq!(e.hop_limit, 255);
    assert_eq!(e.payload, &payload[..]);
    // Truncated datagram, bad IHL, fragment, wrong protocol.
    assert!(parse_ipv4_datagram(&dgram[..30]).is_err());
    let mut bad = dgram.clone();
    bad[0] = 0x44;
    assert!(parse_ipv4_datagram(&bad).is_err());
    let mut frag = dgram.clone();
    frag[6] = 0x20;
    assert!(parse_ipv4_datagram(&frag).is_err());
    let mut proto = dgram.clone();
    proto[9] = 6;
    assert!(parse_ipv4_datagram(&proto).is_err());
}

fn any_version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V2), Just(Version::V3)]
}

prop_compose! {
    fn any_v4_advert()(
        version in any_version(),
        vrid in any::<u8>(),
        priority in any::<u8>(),
        interval in 1u16..=4095,
        secs in 1u16..=255,
        pass in proptest::option::of(any::<[u8; 8]>()),
        addrs in proptest::collection::vec(any::<[u8; 4]>(), 1..20),
    ) -> Advertisement {
        let (interval, auth) = match version {
            Version::V3 => (cs(interval), Auth::None),
            Version::V2 => (cs(secs * 100), pass.map_or(Auth::None, Auth::Password)),
        };
        Advertisement {
            version, vrid, priority, interval, auth,
            addresses: AddressList::V4(addrs.into_iter().map(Ipv4Addr::from).collect()),
        }
    }
}

proptest! {
    #[test]
    fn v4_round_trip(a in any_v4_advert(), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), plain in any::<bool>()) {
        let (src, dst) = (IpAddr::from(src), IpAddr::from(dst));
        let form = if plain { ChecksumForm::MessageOnly } else { ChecksumForm::PseudoHeader };
        let bytes = encode(&a, src, dst, form);
        let d = decode(&env(src, dst, &bytes)).unwrap();
        prop_assert_eq!(d.advert, a);
    }

    #[test]
    fn v6_round_trip(
        vrid in any::<u8>(), priority in any::<u8>(), interval in 1u16..=4095,
        addrs in proptest::collection::vec(any::<[u8; 16]>(), 1..10),
        src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(),
    ) {
        let a = Advertisement {
            version: Version::V3, vrid, priority, interval: cs(interval), auth: Auth::None,
            addresses: AddressList::V6(addrs.into_iter().map(Ipv6Addr::from).collect()),
        };
        let (src, dst) = (IpAddr::from(src), IpAddr::from(dst));
        let bytes = encode(&a, src, dst, ChecksumForm::PseudoHeader);
        prop_assert_eq!(decode(&env(src, dst, &bytes)).unwrap().advert, a);
    }

    #[test]
    fn a_flipped_bit_is_never_accepted_silently(a in any_v4_advert(), bit in 0usize..64) {
        let bytes = encode(&a, SRC4, DST4, ChecksumForm::PseudoHeader);
        let mut bad = bytes.clone();
        let bit = bit % (bad.len() * 8);
        bad[bit / 8] ^= 1 << (bit % 8);
        // Either rejected, or (reserved bits only) decoded to the same advert.
        if let Ok(d) = decode(&env(SRC4, DST4, &bad)) {
            prop_assert_eq!(d.advert, a);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_payloads(bytes in proptest::collection::vec(any::<u8>(), 0..200), v6 in any::<bool>()) {
        let (src, dst) = if v6 {
            (IpAddr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1u8]), IpAddr::V6(GROUP_V6))
        } else {
            (SRC4, DST4)
        };
        let _ = decode(&env(src, dst, &bytes));
    }

    #[test]
    fn never_panics_on_arbitrary_datagrams(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(e) = parse_ipv4_datagram(&bytes) {
            let _ = decode(&e);
        }
    }

    #[test]
    fn never_panics_on_mutated_carp(pos in 0usize..36, val in any::<u8>(), cut in 0usize..37) {
        let mut carp = carp_packet();
        carp[pos] = val;
        carp.truncate(cut);
        prop_assert!(decode(&env(SRC4, DST4, &carp)).is_err());
    }
}
