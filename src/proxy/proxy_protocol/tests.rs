use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v2(command: u8, family_transport: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family_transport);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn v2_inet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&src);
    body.extend_from_slice(&dst);
    body.extend_from_slice(&sport.to_be_bytes());
    body.extend_from_slice(&dport.to_be_bytes());
    body.extend_from_slice(tlvs);
    v2(1, 0x11, &body)
}

#[test]
fn v1_good_headers() {
    let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
    assert_eq!(
        parse(h),
        Ok(Parsed::Complete(
            ProxyHeader::Proxied {
                src: sa("203.0.113.7:56324"),
                dst: sa("10.0.0.1:443")
            },
            43
        ))
    );
    let h = b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n";
    assert!(matches!(
        parse(h),
        Ok(Parsed::Complete(ProxyHeader::Proxied { src, .. }, 36)) if src == sa("[2001:db8::1]:1")
    ));
    assert_eq!(
        parse(b"PROXY UNKNOWN\r\n"),
        Ok(Parsed::Complete(ProxyHeader::Local, 15))
    );
    assert_eq!(
        parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
        Ok(Parsed::Complete(ProxyHeader::Local, 35))
    );
    // The longest legal v1 header: 107 bytes.
    let longest = format!(
        "PROXY TCP6 {0} {0} 65535 65535\r\n",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    );
    assert_eq!(longest.len(), 104);
    assert!(matches!(
        parse(longest.as_bytes()),
        Ok(Parsed::Complete(_, 104))
    ));
}

#[test]
fn prefixes_are_incomplete() {
    let full = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n";
    for n in 0..full.len() {
        assert_eq!(parse(&full[..n]), Ok(Parsed::Incomplete), "{n} bytes");
    }
    let full = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, &[0x04, 0, 1, 0xaa]);
    for n in 0..full.len() {
        assert_eq!(parse(&full[..n]), Ok(Parsed::Incomplete), "{n} bytes");
    }
}

#[test]
fn v2_good_headers() {
    let h = v2_inet([203, 0, 113, 7], [10, 0, 0, 1], 56324, 443, &[]);
    assert_eq!(
        parse(&h),
        Ok(Parsed::Complete(
            ProxyHeader::Proxied {
                src: sa("203.0.113.7:56324"),
                dst: sa("10.0.0.1:443")
            },
            28
        ))
    );
    // TLVs are skipped.
    let h = v2_inet(
        [1, 1, 1, 1],
        [2, 2, 2, 2],
        1,
        2,
        &[0xea, 0, 3, b'v', b'p', b'c'],
    );
    assert!(matches!(parse(&h), Ok(Parsed::Complete(_, 34))));
    let mut body = Vec::new();
    body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&80u16.to_be_bytes());
    body.extend_from_slice(&8080u16.to_be_bytes());
    assert!(matches!(
        parse(&v2(1, 0x21, &body)),
        Ok(Parsed::Complete(ProxyHeader::Proxied { src, dst }, 52))
            if src == sa("[2001:db8::7]:80") && dst == sa("[::1]:8080")
    ));
    // LOCAL (health checks), AF_UNSPEC, AF_UNIX: the connection's addresses.
    assert_eq!(
        parse(&v2(0, 0x00, &[])),
        Ok(Parsed::Complete(ProxyHeader::Local, 16))
    );
    assert_eq!(
        parse(&v2(0, 0x11, &[0; 12])),
        Ok(Parsed::Complete(ProxyHeader::Local, 28))
    );
    assert_eq!(
        parse(&v2(1, 0x00, &[])),
        Ok(Parsed::Complete(ProxyHeader::Local, 16))
    );
    assert_eq!(
        parse(&v2(1, 0x31, &[0; 216])),
        Ok(Parsed::Complete(ProxyHeader::Local, 232))
    );
}

/// Headers that must be refused, with the error kind each gets.
pub(crate) fn bad_headers() -> Vec<(&'static str, Vec<u8>)> {
    let mut too_big = v2(1, 0x11, &[]);
    too_big[14..16].copy_from_slice(&((V2_MAX_PAYLOAD + 1) as u16).to_be_bytes());
    let mut bad_version = v2_inet([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, &[]);
    bad_version[12] = 0x11;
    vec![
        ("plain HTTP", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("TLS hello", vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01]),
        ("lowercase", b"proxy TCP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec()),
        ("no protocol", b"PROXY \r\n".to_vec()),
        ("UDP4", b"PROXY UDP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec()),
        ("v6 address in TCP4", b"PROXY TCP4 ::1 ::1 1 2\r\n".to_vec()),
        (
            "v4 address in TCP6",
            b"PROXY TCP6 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
        ),
        ("missing port", b"PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n".to_vec()),
        (
            "extra field",
            b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3\r\n".to_vec(),
        ),
        (
            "port too big",
            b"PROXY TCP4 1.1.1.1 2.2.2.2 65536 2\r\n".to_vec(),
        ),
        ("port sign", b"PROXY TCP4 1.1.1.1 2.2.2.2 +1 2\r\n".to_vec()),
        (
            "port leading zero",
            b"PROXY TCP4 1.1.1.1 2.2.2.2 01 2\r\n".to_vec(),
        ),
        (
            "double space",
            b"PROXY TCP4  1.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
        ),
        (
            "octet leading zero",
            b"PROXY TCP4 01.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
        ),
        (
            "octet too big",
            b"PROXY TCP4 256.1.1.1 2.2.2.2 1 2\r\n".to_vec(),
        ),
        (
            "hostname",
            b"PROXY TCP4 example.com 2.2.2.2 1 2\r\n".to_vec(),
        ),
        ("LF only", b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n".to_vec()),
        ("CR only", b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\rX".to_vec()),
        ("LF inside UNKNOWN", b"PROXY UNKNOWN a\nb\r\n".to_vec()),
        (
            "not UTF-8",
            b"PROXY TCP4 1.1.1.1 \xff.2.2.2 1 2\r\n".to_vec(),
        ),
        (
            "no CRLF in 107 bytes",
            [b"PROXY TCP4 ".as_slice(), &[b'1'; 100]].concat(),
        ),
        ("v2 version 1", bad_version),
        ("v2 command 2", v2(2, 0x11, &[0; 12])),
        ("v2 family 4", v2(1, 0x41, &[0; 12])),
        ("v2 transport 3", v2(1, 0x13, &[0; 12])),
        ("v2 datagram", v2(1, 0x12, &[0; 12])),
        ("v2 short inet block", v2(1, 0x11, &[0; 11])),
        ("v2 short inet6 block", v2(1, 0x21, &[0; 35])),
        ("v2 short unix block", v2(1, 0x31, &[0; 215])),
        ("v2 too long", too_big),
        ("v2 bad signature", {
            let mut h = v2_inet([1, 1, 1, 1], [2, 2, 2, 2], 1, 2, &[]);
            h[11] = b'X';
            h
        }),
    ]
}

#[test]
fn the_corpus_of_bad_headers_is_refused() {
    for (name, bytes) in bad_headers() {
        assert!(parse(&bytes).is_err(), "{name}: {:?}", parse(&bytes));
    }
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\n"),
        Err(ProxyHeaderError::NotProxyProtocol)
    );
    assert_eq!(
        parse(&[b"PROXY TCP4 ".as_slice(), &[b'1'; 100]].concat()),
        Err(ProxyHeaderError::TooLong)
    );
}

#[test]
fn v1_header_for_upstreams_parses_back() {
    for (src, dst) in [
        ("203.0.113.7:5000", "10.0.0.1:80"),
        ("[2001:db8::1]:5000", "[::1]:80"),
        ("[2001:db8::1]:5000", "10.0.0.1:80"),
        ("[::ffff:1.2.3.4]:5000", "10.0.0.1:80"),
    ] {
        let text = v1_header(sa(src), sa(dst));
        let Ok(Parsed::Complete(ProxyHeader::Proxied { src: s, .. }, len)) = parse(text.as_bytes())
        else {
            panic!("{text:?}");
        };
        assert_eq!(len, text.len());
        assert_eq!(s.port(), 5000);
        assert_eq!(s.ip().to_canonical(), sa(src).ip().to_canonical(), "{text}");
    }
}

async fn pair() -> (TcpStream, TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (server, _) = l.accept().await.unwrap();
    (client, server)
}

#[tokio::test]
async fn read_header_takes_exactly_the_header_even_when_split() {
    let mut wire = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n".to_vec();
    wire.extend_from_slice(&v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 9, 10, &[1, 0, 0]));
    for split in [1usize, 5, 6, 20, 42, 43] {
        let (mut client, mut server) = pair().await;
        let v1_len = 43;
        let writer = {
            let wire = wire.clone();
            tokio::spawn(async move {
                client.write_all(&wire[..split]).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                client.write_all(&wire[split..]).await.unwrap();
                client.write_all(b"rest").await.unwrap();
                client
            })
        };
        let h = read_header(&mut server).await.unwrap();
        assert_eq!(
            h.source(),
            Some("203.0.113.7".parse().unwrap()),
            "split {split}"
        );
        // What follows is untouched: here, a second (v2) header.
        let h2 = read_header(&mut server).await.unwrap();
        assert_eq!(h2.source(), Some("1.2.3.4".parse().unwrap()));
        let mut rest = [0u8; 4];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"rest");
        let _ = writer.await.unwrap();
        let _ = v1_len;
    }
}

#[tokio::test]
async fn read_header_refuses_bad_and_truncated_headers() {
    for (name, bytes) in bad_headers() {
        let (mut client, mut server) = pair().await;
        client.write_all(&bytes).await.unwrap();
        client.shutdown().await.unwrap();
        let r = read_header(&mut server).await;
        assert!(r.is_err(), "{name}: {r:?}");
    }
    let (mut client, mut server) = pair().await;
    client.write_all(b"PROXY TCP4 1.1.1.1").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_header(&mut server).await, Err(ProxyHeaderError::Eof));
}

proptest! {
    /// Total: any bytes give a verdict, never a panic; a complete
    /// header's length is within the input and each shorter prefix of it
    /// is incomplete (the socket reader never reads past a header).
    #[test]
    fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Parsed::Complete(_, len)) = parse(&bytes) {
            prop_assert!(len <= bytes.len());
            for n in 0..len {
                prop_assert_eq!(parse(&bytes[..n]), Ok(Parsed::Incomplete));
            }
        }
    }

    /// The same for inputs that start as real headers do.
    #[test]
    fn prefixes_of_headers_are_incomplete(a: u32, b: u32, sp: u16, dp: u16, tail in proptest::collection::vec(any::<u8>(), 0..8)) {
        let text = v1_header(SocketAddr::new(IpAddr::V4(a.into()), sp), SocketAddr::new(IpAddr::V4(b.into()), dp));
        let mut bytes = text.into_bytes();
        let len = bytes.len();
        bytes.extend_from_slice(&tail);
        prop_assert!(matches!(parse(&bytes), Ok(Parsed::Complete(_, l)) if l == len));
        for n in 0..len {
            prop_assert_eq!(parse(&bytes[..n]), Ok(Parsed::Incomplete));
        }
    }

    /// Random bytes after a valid prefix never panic either.
    #[test]
    fn parse_is_total_after_signatures(tail in proptest::collection::vec(any::<u8>(), 0..120), v2_sig: bool) {
        let mut bytes = if v2_sig { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
        bytes.extend_from_slice(&tail);
        let _ = parse(&bytes);
    }

    /// Every generated v1 header parses to what was written.
    #[test]
    fn v1_round_trip(a: u32, b: u32, sp: u16, dp: u16) {
        let src = SocketAddr::new(IpAddr::V4(a.into()), sp);
        let dst = SocketAddr::new(IpAddr::V4(b.into()), dp);
        let text = v1_header(src, dst);
        prop_assert_eq!(parse(text.as_bytes()), Ok(Parsed::Complete(ProxyHeader::Proxied { src, dst }, text.len())));
    }
}
